"""Training-step time of each technique against plain Keras, and against tfmot.

Builds MobileNetV2 (alpha 0.5, 96x96, weights=None, 10 classes) as a plain
Keras 3 model and once per technique prepared by tfmot-lite (pruning, QAT,
clustering). Where `tensorflow-model-optimization` and `tf_keras` are
installed (`pip install -e ".[bench]"`) the same models are also built with
tf_keras and prepared by tfmot in the same process (tfmot needs
`TF_USE_LEGACY_KERAS=1` before TensorFlow is imported; `import keras` still
gives Keras 3).

The baseline is the plain model on the same fast path as the techniques:
"plain fused" is the plain Keras 3 model with tfmot-lite's training stand-in
for BatchNormalization (`graph.training_layer`: TensorFlow's fused kernel),
which every technique's rewrite puts in. "plain" (Keras' own unfused
BatchNormalization) stays for reference: "technique / plain" below 1 means
"fused BatchNorm", not "the technique is free".

Every round trains every model for `--steps` steps through `model.fit`
(callbacks included, as users run it), in a freshly shuffled order, so slow
phases of a shared machine hit all models alike, once per input mode
(`--inputs`): a `tf.data` pipeline without autotuning, and NumPy arrays as
most users pass them. Two times per fit: "step", the median interval between
consecutive batch ends measured inside `fit` (a callback; per-fit setup and
teardown excluded), and "fit", whole-`fit` wall time per step. Printed per
model and input mode: both times (medians over rounds, with min-max), and
for each comparison the per-round ratios' min / median / max with a
bootstrap 90% interval of the median (the "stable to a few percent" check:
rerun with more rounds when it is wide), on step time and on fit time; then
the load average and the bytes the models' variables hold.

    python benchmarks/training_overhead.py                      # all, 9 rounds
    python benchmarks/training_overhead.py --techniques qat --rounds 5 --steps 10
    python benchmarks/training_overhead.py --no-tfmot
    python benchmarks/training_overhead.py --distill --no-tfmot --techniques prune,qat
    python benchmarks/training_overhead.py --inputs numpy --rounds 5 --steps 10

`--distill` adds, per technique, the same model trained through
`tfmot_lite.distillation.distill` with a float MobileNetV2 teacher, and the
teacher's forward pass alone ("teacher forward": `predict` steps, inference
mode, the same batches). The distillation cost, (distilled step - step)
divided by the teacher's forward pass, is at most 1 when distilling costs
no more than running the teacher.
"""

import argparse
import importlib.util
import os
import random
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tfmot_installed():
    return all(importlib.util.find_spec(m) for m in
               ("tensorflow_model_optimization", "tf_keras"))


# tfmot runs on tf_keras (Keras 2), which tf.keras only resolves to when this
# is set before TensorFlow's first import.
if "--no-tfmot" not in sys.argv and _tfmot_installed():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

# Short fits end before the pruning schedule's first mask update, which
# `UpdatePruningStep` rightly warns about; here it is expected.
warnings.filterwarnings("ignore", message="Training ended after")

from stats import bootstrap_median  # noqa: E402
from tfmot_lite.example_models import mobilenet_v2  # noqa: E402

TECHNIQUES = ("prune", "qat", "cluster")


def _schedule(module):
    return module.PolynomialDecay(0.25, 0.75, 0, 1000, frequency=100)


def lite(technique, model):
    """tfmot-lite's version of `technique` on a Keras 3 model."""
    if technique == "prune":
        from tfmot_lite.sparsity import keras as sparsity

        pruned = sparsity.prune_low_magnitude(model, pruning_schedule=_schedule(sparsity))
        return pruned, [sparsity.UpdatePruningStep()]
    if technique == "qat":
        from tfmot_lite.quantization import keras as quantization

        return quantization.quantize_model(model), []
    from tfmot_lite.clustering import keras as clustering

    return clustering.cluster_weights(model, number_of_clusters=16), []


def reference(technique, model):
    """tfmot's version of `technique` on a tf_keras model."""
    import tensorflow_model_optimization as tfmot

    if technique == "prune":
        sparsity = tfmot.sparsity.keras
        pruned = sparsity.prune_low_magnitude(model, pruning_schedule=_schedule(sparsity))
        return pruned, [sparsity.UpdatePruningStep()]
    if technique == "qat":
        return tfmot.quantization.keras.quantize_model(model), []
    return tfmot.clustering.keras.cluster_weights(model, number_of_clusters=16), []


def state_bytes(model):
    """Bytes held in the model's variables (weights, masks, indices, ranges)."""
    return sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype.name if hasattr(v.dtype, "name")
                                          else v.dtype).itemsize
        for v in model.variables
    )


class _BatchEnds:
    """The median interval between consecutive batch ends: one training (or
    predict) step measured inside `fit`, without its setup and teardown.
    Logs are fetched at each batch end, so the step has finished."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def _end(self, batch, logs=None):
        self.ends.append(time.perf_counter())

    on_train_batch_end = on_predict_batch_end = _end

    def step(self):
        gaps = np.diff(self.ends)
        return float(np.median(gaps)) if len(gaps) else float("nan")


class StepTimer(_BatchEnds, keras.callbacks.Callback):
    """`_BatchEnds` for a Keras 3 model."""


def step_timer(model):
    """A `_BatchEnds` callback of the model's framework (tf_keras models,
    tfmot's, take only tf_keras callbacks)."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return type("TfKerasStepTimer", (_BatchEnds, tf_keras.callbacks.Callback), {})()
    return StepTimer()


def _fit_inputs(data, batch_size):
    """`fit`/`predict` arguments for `data`: a tf.data dataset, or the
    `(x, y)` NumPy arrays (one epoch of `steps` batches)."""
    if isinstance(data, tuple):
        x, y = data
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": False}
    return {"x": data}


def time_steps(model, data, steps, callbacks, batch_size):
    """`(step, fit, cpu)` seconds per step of `model.fit`: the in-fit step
    time (`StepTimer`), whole-fit wall time and process CPU time."""
    timer = step_timer(model)
    inputs = _fit_inputs(data, batch_size)
    if isinstance(data, tuple):
        inputs["x"], inputs["y"] = data[0][: steps * batch_size], data[1][: steps * batch_size]
    else:
        inputs["steps_per_epoch"] = steps
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(epochs=1, callbacks=[*callbacks, timer], verbose=0, **inputs)
    return (timer.step(), (time.perf_counter() - wall) / steps,
            (time.process_time() - cpu) / steps)


def time_forward(model, data, steps, batch_size):
    """The same for `model.predict`: the forward pass in inference mode, as
    a distillation teacher runs it."""
    timer = step_timer(model)
    x = data[0][: steps * batch_size] if isinstance(data, tuple) else data
    kwargs = {"batch_size": batch_size} if isinstance(data, tuple) else {"steps": steps}
    wall, cpu = time.perf_counter(), time.process_time()
    model.predict(x, verbose=0, callbacks=[timer], **kwargs)
    return (timer.step(), (time.perf_counter() - wall) / steps,
            (time.process_time() - cpu) / steps)


def plain_fused(model):
    """The plain model on tfmot-lite's training fast path: each Keras
    BatchNormalization replaced by `FusedBatchNormalization` (same config
    and weights), as every technique's rewrite does."""
    from tfmot_lite.core import graph

    return graph.rewrite(model, graph.training_layer)


def build_models(techniques, with_tfmot, distill=False):
    """`{name: (model, callbacks)}`: 'plain', 'plain fused', each technique, and with tfmot
    'tf_keras plain' and 'tfmot <technique>'; with `distill`, '<technique>
    distilled' (a float MobileNetV2 teacher) and 'teacher forward' (that
    teacher alone, timed by `predict`; its callbacks are None)."""
    from keras import losses

    models = {"plain": (mobilenet_v2(0.5), []),
              "plain fused": (plain_fused(mobilenet_v2(0.5)), [])}
    for t in techniques:
        models[t] = lite(t, mobilenet_v2(0.5))
    if distill:
        from tfmot_lite.distillation import distill as distilled

        teacher = mobilenet_v2(0.5)
        for t in techniques:
            student, callbacks = lite(t, mobilenet_v2(0.5))
            models[f"{t} distilled"] = (distilled(student, teacher), callbacks)
    for model, _ in models.values():
        model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    if distill:
        models["teacher forward"] = (teacher, None)
    if with_tfmot:
        import tf_keras

        ref = {"tf_keras plain": (mobilenet_v2(0.5, tf_keras.applications), [])}
        for t in techniques:
            ref[f"tfmot {t}"] = reference(t, mobilenet_v2(0.5, tf_keras.applications))
        for model, _ in ref.values():
            model.compile(
                optimizer="adam",
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
        models.update(ref)
    return models


def comparisons(techniques, with_tfmot, distill=False):
    """`(label, numerator model, denominator model)` ratios to report."""
    pairs = [(f"{t} / plain fused", t, "plain fused") for t in techniques]
    pairs += [(f"{t} / plain (unfused BatchNorm)", t, "plain") for t in techniques]
    pairs.append(("plain fused / plain", "plain fused", "plain"))
    if distill:
        pairs += [(f"{t} distilled / {t}", f"{t} distilled", t) for t in techniques]
    if with_tfmot:
        pairs += [(f"{t}: tfmot-lite / tfmot", t, f"tfmot {t}") for t in techniques]
        pairs += [(f"tfmot {t} / tf_keras plain", f"tfmot {t}", "tf_keras plain")
                  for t in techniques]
        pairs.append(("plain: Keras 3 / tf_keras", "plain", "tf_keras plain"))
    return pairs


def main(argv=None):
    launched = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--techniques", default=",".join(TECHNIQUES),
                        help="comma-separated subset of " + ",".join(TECHNIQUES))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20, help="training steps per fit call")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="seeds data and round order")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="start no new round once this many seconds have passed since "
                             "launch (setup included); at least 2 rounds run")
    parser.add_argument("--no-tfmot", action="store_true",
                        help="skip tfmot/tf_keras even when installed")
    parser.add_argument("--inputs", default="tfdata,numpy",
                        help="comma-separated input modes: tfdata (no autotuning), "
                             "numpy (arrays passed to fit)")
    parser.add_argument("--distill", action="store_true",
                        help="add each technique trained with a distillation teacher, and "
                             "the teacher's forward pass alone")
    args = parser.parse_args(argv)
    techniques = [t for t in args.techniques.split(",") if t]
    unknown = sorted(set(techniques) - set(TECHNIQUES))
    if unknown or not techniques:
        parser.error(f"--techniques takes a comma-separated subset of {','.join(TECHNIQUES)}; "
                     f"got {args.techniques!r}")
    modes = [m for m in args.inputs.split(",") if m]
    if not modes or set(modes) - {"tfdata", "numpy"}:
        parser.error(f"--inputs takes a comma-separated subset of tfdata,numpy; "
                     f"got {args.inputs!r}")
    with_tfmot = os.environ.get("TF_USE_LEGACY_KERAS") == "1" and not args.no_tfmot
    if not with_tfmot and not args.no_tfmot:
        print("tensorflow-model-optimization / tf_keras not installed: comparing with "
              "plain Keras 3 only (pip install -e '.[bench]').")

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(size=(args.batch_size * max(4, args.steps, args.warmup_steps),
                          96, 96, 3)).astype("float32")
    y = rng.integers(0, 10, size=len(x))

    import tensorflow as tf

    # Four in-memory batches: nothing to prefetch or tune. With tf.data's
    # autotuning on, tearing down each `fit` call's iterator stalled for up
    # to ~1.3 s (measured here), rounding whole `fit` calls up to multiples
    # of ~2.56 s: the 256/512/1024 ms "bins" earlier runs showed.
    options = tf.data.Options()
    options.autotune.enabled = False
    inputs = {
        "tfdata": (
            tf.data.Dataset.from_tensor_slices((x[: args.batch_size * 4], y[: args.batch_size * 4]))
            .batch(args.batch_size, drop_remainder=True)
            .repeat()
            .with_options(options)
        ),
        "numpy": (x, y),
    }
    models = build_models(techniques, with_tfmot, args.distill)
    runs = [(name, mode) for name in models for mode in modes]

    def timed(name, mode, steps):
        model, cbs = models[name]
        if cbs is None:
            return time_forward(model, inputs[mode], steps, args.batch_size)
        return time_steps(model, inputs[mode], steps, cbs, args.batch_size)

    # Warm-up: trace and compile every training step.
    for name, mode in runs:
        timed(name, mode, args.warmup_steps)

    print(f"setup and warm-up: {time.perf_counter() - launched:.0f} s", flush=True)
    load_start = os.getloadavg()
    order_rng = random.Random(args.seed)
    step = {run: [] for run in runs}
    wall = {run: [] for run in runs}
    cpu = {run: [] for run in runs}
    rounds = 0
    for r in range(args.rounds):
        if (args.time_budget is not None and r >= 2
                and time.perf_counter() - launched > args.time_budget):
            print(f"time budget reached: stopping after {r} rounds", flush=True)
            break
        rounds += 1
        order = list(runs)
        order_rng.shuffle(order)
        for run in order:
            s_, w, c = timed(*run, args.steps)
            step[run].append(s_)
            wall[run].append(w)
            cpu[run].append(c)
        print(f"round {r + 1}/{args.rounds} (in-fit ms/step): "
              + ", ".join(f"{n} [{m}] {step[(n, m)][-1] * 1e3:.0f}" for n, m in order),
              flush=True)
    load_end = os.getloadavg()

    print(
        f"\nMobileNetV2 alpha=0.5, 96x96, batch {args.batch_size}, CPU, Keras "
        f"{keras.__version__} ({keras.backend.backend()} backend), {os.cpu_count()} CPUs; "
        f"{rounds} shuffled rounds of {args.steps} steps; load average (1/5/15 min) "
        f"{' '.join(f'{v:.2f}' for v in load_start)} at start, "
        f"{' '.join(f'{v:.2f}' for v in load_end)} at end"
    )
    width = max(16, *(len(name) for name in models)) + 9
    print(f"\n{'model [inputs]':<{width}} {'step ms (median [min-max])':>29} "
          f"{'fit ms/step (median [min-max])':>32} {'cpu ms/step':>12}")
    for run in runs:
        label = f"{run[0]} [{run[1]}]"
        ss = [v * 1e3 for v in step[run]]
        ws = [v * 1e3 for v in wall[run]]
        print(f"{label:<{width}} {statistics.median(ss):>10.1f} [{min(ss):7.1f} - {max(ss):7.1f}]"
              f" {statistics.median(ws):>12.1f} [{min(ws):7.1f} - {max(ws):7.1f}]"
              f" {statistics.median(cpu[run]) * 1e3:>12.1f}")
    boot = np.random.default_rng(args.seed)
    for mode in modes:
        for measure, times in (("in-fit step", step), ("whole fit", wall)):
            print(f"\n[{mode}] {measure}: {'ratio (per round)':<38} {'min':>6} {'median':>7} "
                  f"{'max':>6} {'90% CI of median':>17}")
            for label, a, b in comparisons(techniques, with_tfmot, args.distill):
                ratios = [p / q for p, q in zip(times[(a, mode)], times[(b, mode)])]
                lo, hi = bootstrap_median(ratios, boot)
                print(f"  {label:<50} {min(ratios):6.3f} {statistics.median(ratios):7.3f} "
                      f"{max(ratios):6.3f}   [{lo:5.3f}, {hi:5.3f}]")

    if args.distill:
        print("\ndistillation cost per round, (distilled - undistilled step) / teacher "
              "forward pass (at most 1: no more than the teacher's forward):")
        for t in techniques:
            mode = modes[0]
            costs = [(d - u) / f for d, u, f in zip(
                step[(f"{t} distilled", mode)], step[(t, mode)],
                step[("teacher forward", mode)])]
            lo, hi = bootstrap_median(costs, boot)
            print(f"  {t:<12} min {min(costs):6.3f}  median {statistics.median(costs):6.3f}  "
                  f"max {max(costs):6.3f}  90% CI of median [{lo:5.3f}, {hi:5.3f}]")

    plain_mb = state_bytes(models["plain"][0]) / 2**20
    print("\nmodel state (variables, before optimizer slots): plain "
          f"{plain_mb:.2f} MiB; " + ", ".join(
              f"{t} {state_bytes(models[t][0]) / 2**20:.2f} MiB" for t in techniques))


if __name__ == "__main__":
    main()
