"""Training-step time of each technique against plain Keras, and against tfmot.

Builds MobileNetV2 (alpha 0.5, 96x96, weights=None, 10 classes) as a plain
Keras 3 model and once per technique prepared by tfmot-lite (pruning, QAT,
clustering). Where `tensorflow-model-optimization` and `tf_keras` are
installed (`pip install -e ".[bench]"`) the same models are also built with
tf_keras and prepared by tfmot in the same process (tfmot needs
`TF_USE_LEGACY_KERAS=1` before TensorFlow is imported; `import keras` still
gives Keras 3).

Every round trains every model for `--steps` steps through `model.fit`
(callbacks included, as users run it), in a freshly shuffled order, so slow
phases of a shared machine hit all models alike. Printed: wall-clock ms/step
per model (median over rounds), and for each comparison the per-round ratios'
min / median / max with a bootstrap 90% interval of the median (the
"stable to a few percent" check: rerun with more rounds when it is wide),
beside the median ratio of process CPU time; then the load average and the
bytes the models' variables hold.

    python benchmarks/training_overhead.py                      # all, 9 rounds
    python benchmarks/training_overhead.py --techniques qat --rounds 5 --steps 10
    python benchmarks/training_overhead.py --no-tfmot
    python benchmarks/training_overhead.py --distill --no-tfmot --techniques prune,qat

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

import keras  # noqa: E402
import numpy as np  # noqa: E402

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


def time_steps(model, dataset, steps, callbacks):
    """Wall-clock and process CPU seconds per step of `model.fit`."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def time_forward(model, dataset, steps):
    """Wall-clock and process CPU seconds per batch of `model.predict`: the
    forward pass in inference mode, as a distillation teacher runs it."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.predict(dataset, steps=steps, verbose=0)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def build_models(techniques, with_tfmot, distill=False):
    """`{name: (model, callbacks)}`: 'plain', each technique, and with tfmot
    'tf_keras plain' and 'tfmot <technique>'; with `distill`, '<technique>
    distilled' (a float MobileNetV2 teacher) and 'teacher forward' (that
    teacher alone, timed by `predict`; its callbacks are None)."""
    from keras import losses

    models = {"plain": (mobilenet_v2(0.5), [])}
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
    pairs = [(f"{t} / plain (tfmot-lite, Keras 3)", t, "plain") for t in techniques]
    if distill:
        pairs += [(f"{t} distilled / {t}", f"{t} distilled", t) for t in techniques]
    if with_tfmot:
        pairs += [(f"{t}: tfmot-lite / tfmot", t, f"tfmot {t}") for t in techniques]
        pairs += [(f"tfmot {t} / tf_keras plain", f"tfmot {t}", "tf_keras plain")
                  for t in techniques]
        pairs.append(("plain: Keras 3 / tf_keras", "plain", "tf_keras plain"))
    return pairs


def bootstrap_median(values, rng, n=2000, level=0.90):
    """`(low, high)` bootstrap interval of the median of `values`."""
    values = np.asarray(values)
    meds = np.median(rng.choice(values, size=(n, len(values)), replace=True), axis=1)
    return tuple(np.quantile(meds, [(1 - level) / 2, (1 + level) / 2]))


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
    parser.add_argument("--distill", action="store_true",
                        help="add each technique trained with a distillation teacher, and "
                             "the teacher's forward pass alone")
    args = parser.parse_args(argv)
    techniques = [t for t in args.techniques.split(",") if t]
    unknown = sorted(set(techniques) - set(TECHNIQUES))
    if unknown or not techniques:
        parser.error(f"--techniques takes a comma-separated subset of {','.join(TECHNIQUES)}; "
                     f"got {args.techniques!r}")
    with_tfmot = os.environ.get("TF_USE_LEGACY_KERAS") == "1" and not args.no_tfmot
    if not with_tfmot and not args.no_tfmot:
        print("tensorflow-model-optimization / tf_keras not installed: comparing with "
              "plain Keras 3 only (pip install -e '.[bench]').")

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(size=(args.batch_size * 4, 96, 96, 3)).astype("float32")
    y = rng.integers(0, 10, size=len(x))

    import tensorflow as tf

    # Four in-memory batches: nothing to prefetch or tune. With tf.data's
    # autotuning on, tearing down each `fit` call's iterator stalled for up
    # to ~1.3 s (measured here), rounding whole `fit` calls up to multiples
    # of ~2.56 s: the 256/512/1024 ms "bins" earlier runs showed.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size, drop_remainder=True)
        .repeat()
        .with_options(options)
    )
    models = build_models(techniques, with_tfmot, args.distill)

    def timed(name, steps):
        model, cbs = models[name]
        if cbs is None:
            return time_forward(model, dataset, steps)
        return time_steps(model, dataset, steps, cbs)

    # Warm-up: trace and compile every training step.
    for name in models:
        timed(name, args.warmup_steps)

    print(f"setup and warm-up: {time.perf_counter() - launched:.0f} s", flush=True)
    load_start = os.getloadavg()
    order_rng = random.Random(args.seed)
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    rounds = 0
    for r in range(args.rounds):
        if (args.time_budget is not None and r >= 2
                and time.perf_counter() - launched > args.time_budget):
            print(f"time budget reached: stopping after {r} rounds", flush=True)
            break
        rounds += 1
        order = list(models)
        order_rng.shuffle(order)
        for name in order:
            w, c = timed(name, args.steps)
            wall[name].append(w)
            cpu[name].append(c)
        print(f"round {r + 1}/{args.rounds} (wall ms/step): "
              + ", ".join(f"{n} {wall[n][-1] * 1e3:.0f}" for n in order), flush=True)
    load_end = os.getloadavg()

    print(
        f"\nMobileNetV2 alpha=0.5, 96x96, batch {args.batch_size}, CPU, Keras "
        f"{keras.__version__} ({keras.backend.backend()} backend), {os.cpu_count()} CPUs; "
        f"{rounds} shuffled rounds of {args.steps} steps; load average (1/5/15 min) "
        f"{' '.join(f'{v:.2f}' for v in load_start)} at start, "
        f"{' '.join(f'{v:.2f}' for v in load_end)} at end"
    )
    width = max(16, *(len(name) for name in models))
    print(f"\n{'model':<{width}} {'wall ms/step (median [min-max])':>34} {'cpu ms/step':>12}")
    for name in models:
        ws = [v * 1e3 for v in wall[name]]
        print(f"{name:<{width}} {statistics.median(ws):>12.1f} [{min(ws):7.1f} - {max(ws):7.1f}]"
              f" {statistics.median(cpu[name]) * 1e3:>12.1f}")
    boot = np.random.default_rng(args.seed)
    print(f"\n{'ratio (per round)':<40} {'min':>6} {'median':>7} {'max':>6} "
          f"{'90% CI of median':>17} {'cpu median':>10}")
    for label, a, b in comparisons(techniques, with_tfmot, args.distill):
        ratios = [p / q for p, q in zip(wall[a], wall[b])]
        cpu_ratios = [p / q for p, q in zip(cpu[a], cpu[b])]
        lo, hi = bootstrap_median(ratios, boot)
        print(f"{label:<40} {min(ratios):6.3f} {statistics.median(ratios):7.3f} "
              f"{max(ratios):6.3f}   [{lo:5.3f}, {hi:5.3f}] {statistics.median(cpu_ratios):10.3f}")

    if args.distill:
        print("\ndistillation cost per round, (distilled - undistilled step) / teacher "
              "forward pass (at most 1: no more than the teacher's forward):")
        for t in techniques:
            costs = [(d - u) / f for d, u, f in zip(
                wall[f"{t} distilled"], wall[t], wall["teacher forward"])]
            lo, hi = bootstrap_median(costs, boot)
            print(f"  {t:<12} min {min(costs):6.3f}  median {statistics.median(costs):6.3f}  "
                  f"max {max(costs):6.3f}  90% CI of median [{lo:5.3f}, {hi:5.3f}]")

    plain_mb = state_bytes(models["plain"][0]) / 2**20
    print("\nmodel state (variables, before optimizer slots): plain "
          f"{plain_mb:.2f} MiB; " + ", ".join(
              f"{t} {state_bytes(models[t][0]) / 2**20:.2f} MiB" for t in techniques))


if __name__ == "__main__":
    main()
