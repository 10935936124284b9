"""The whole tfmot-lite workflow in one command: train, optimize, export, report.

    python -m tfmot_lite.demo                  # or: tfmot-lite demo
    python -m tfmot_lite.demo --quick          # under a minute, for CI
    python -m tfmot_lite.demo --dataset cifar10 --output runs/cifar

1. Trains a float CNN built for XNNPACK's sparse inference (3x3 stride-2
   stem on a padded input, depthwise + 1x1 blocks, a spatial mean with
   keepdims) on the digits bundled with scikit-learn (32x32x3, no download),
   or on CIFAR-10 through TensorFlow Datasets.
2. Optimizes it, one variant at a time (`VARIANTS`): post-training int8;
   pruning to 75% with the `PruneForLatencyOnXNNPack` policy; quantization-
   aware training; pruning-preserving QAT of the pruned model (PQAT);
   weight clustering (16 clusters), exported float and int8. Each technique
   runs twice: as is, and "distilled", fine-tuned against the float
   model's soft targets (`tfmot_lite.distillation.distill`); `--quick`
   distills only QAT (`QUICK_VARIANTS`).
3. Exports each with `tfmot_lite.export.export_model` and writes to the
   output folder: the .tflite files, `report.txt` (the table), `report.json`,
   `report.md` and `report.png` (size, latency, accuracy side by side).

A variant is a name, an export mode and a function that returns the trained
(possibly wrapped) Keras model from the float baseline; adding one to
`VARIANTS` is a few lines.
"""

import dataclasses
import os
import re
import sys
import time
from typing import Callable

from tfmot_lite.quiet import quiet_environment

quiet_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.atomic_file import write_text_atomic  # noqa: E402
from tfmot_lite.example_models import build_xnnpack_cnn  # noqa: E402
from tfmot_lite.fast import BuildOptimizerFirst  # noqa: E402

# -- data and training ------------------------------------------------------


@dataclasses.dataclass
class Splits:
    """Training pipeline (arrays or tf.data), test arrays, calibration inputs."""

    name: str
    fit_args: tuple
    fit_kwargs: dict
    validation: object
    x_test: np.ndarray
    y_test: np.ndarray
    x_calibrate: np.ndarray
    steps_per_epoch: int


def load_splits(name, batch_size=32):
    if name == "cifar10":
        (train, val, test), _ = data.cifar10(batch_size=batch_size)
        x_test, y_test = data.to_numpy(test)
        x_calibrate, _ = data.to_numpy(train.take(max(1, 200 // batch_size)))
        return Splits("CIFAR-10", (train,), {}, val, x_test, y_test, x_calibrate,
                      len(train))
    (x, y), (x_test, y_test) = data.digits(image_size=32)
    n_train = int(round(len(x) * 0.9))
    return Splits(
        "digits (scikit-learn, 32x32x3)",
        (x[:n_train], y[:n_train]),
        {"batch_size": batch_size},
        (x[n_train:], y[n_train:]),
        x_test, y_test,
        export.ptq.calibration_samples(x[:n_train], 200),
        -(-n_train // batch_size),
    )


class Progress(keras.callbacks.Callback):
    """One line per epoch: what a person watching the demo needs."""

    def __init__(self, label, epochs):
        super().__init__()
        self.label, self.epochs = label, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"{k} {v:.4f}" for k, v in logs.items()
                 if k in ("loss", "accuracy", "val_accuracy")]
        print(f"    {self.label} epoch {epoch + 1}/{self.epochs}: " + ", ".join(parts)
              + f" ({time.perf_counter() - self.start:.1f} s)", flush=True)


# The name suffix of a variant fine-tuned against the float model.
DISTILLED = " distilled"


@dataclasses.dataclass
class Context:
    """What a variant's `build` function gets: data, settings, trained models."""

    splits: Splits
    epochs: dict
    models: dict = dataclasses.field(default_factory=dict)
    # Quick runs skip validation (one traced function less per model).
    quick: bool = False
    # The float model, for the distilled variants: `fit` trains against it.
    teacher: object = None
    # A constant rate for the pruning fine-tune instead of
    # `pruning_learning_rate` (benchmarks compare the two).
    pruning_rate: float = None

    def trained(self, name):
        """The model variant `name` trained (its distilled twin for a
        distilled variant), as the student: ready to strip."""
        from tfmot_lite.distillation import student_of

        return student_of(self.models[name + DISTILLED if self.teacher is not None else name])

    def fit(self, model, label, epochs, learning_rate, callbacks=()):
        """Compiles and trains `model` (through a `Distiller` when there is a
        teacher); returns what was trained."""
        if self.teacher is not None:
            from tfmot_lite.distillation import distill

            model, label = distill(model, self.teacher), label + DISTILLED
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            # XLA compilation costs more than it saves on these small models.
            jit_compile=False,
        )
        model.fit(
            *self.splits.fit_args, **self.splits.fit_kwargs, epochs=epochs,
            validation_data=None if self.quick else self.splits.validation, verbose=0,
            # BuildOptimizerFirst: on TensorFlow the first step is traced once.
            callbacks=[*callbacks, BuildOptimizerFirst(), Progress(label, epochs)],
        )
        return model


def float_learning_rate(ctx, initial=3e-3):
    """The float model's learning rate: `initial`, decayed to 0 along a
    cosine over its epochs. At a constant 3e-3 the model ends wherever its
    last steps left it: 0.919 to 0.989 test accuracy over 5 seeds on the
    digits (mean 0.957), a teacher weaker than the students fine-tuned from
    it; decayed, 0.972 to 0.981 (mean 0.977)."""
    return keras.optimizers.schedules.CosineDecay(
        initial, decay_steps=ctx.epochs["base"] * ctx.splits.steps_per_epoch)


# -- variants ----------------------------------------------------------------


@dataclasses.dataclass
class Variant:
    """One optimized model: `build(baseline, context)` returns it trained
    (wrapped or stripped); `export_model(..., mode)` exports it."""

    name: str
    mode: str
    build: Callable
    note: str = ""


def _baseline(baseline, ctx):
    return baseline


# Steps between two updates of the pruning masks. tfmot's default (100) is
# one update per epoch or less at the digits' 45 steps per epoch, so the
# sparsity would rise in two or three jumps; small steps let the remaining
# weights follow. Measured on 4 seeds (`benchmarks/distillation_seeds.py`,
# a constant rate of 1e-3): masks every 5 steps up to half the fine-tune
# gave pruned 75% -1.7 points against the float model on average (distilled
# -1.4), masks once per epoch up to a third of it -2.5 (distilled -1.7).
PRUNING_FREQUENCY = 5


def pruning_learning_rate(ctx, end_step, initial=3e-3):
    """The pruning fine-tune's learning rate: the float model's initial
    rate, held while the masks change (`end_step` steps), then decayed to 0
    along a cosine over the rest (`CosineDecay` with a flat warm-up).

    A pruned model has lost capacity and needs the steps: at 75% and a
    constant 1e-3 its training accuracy was still 1.5 and 3.7 points below
    the float model's after the fine-tune (two seeds), its test accuracy
    still climbing. Held high while pruning, then annealed, distilled pruned
    75% went from -2.14 to -0.42 points against the float model on average
    over 12 seeds the recipe was not chosen on (the README's
    "Distillation" section has the search)."""
    total = ctx.epochs["prune"] * ctx.splits.steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial, decay_steps=max(1, total - end_step),
        warmup_target=initial, warmup_steps=end_step)


def prune_for_xnnpack(baseline, ctx):
    """25% -> 75% sparsity on the 1x1 convolutions XNNPACK runs sparse,
    reached halfway through the fine-tuning (masks every
    `PRUNING_FREQUENCY` steps), the second half left to recover at a
    learning rate decaying to 0 (`pruning_learning_rate`)."""
    import tfmot_lite as tfmot

    sk = tfmot.sparsity.keras
    total = ctx.epochs["prune"] * ctx.splits.steps_per_epoch
    frequency = min(PRUNING_FREQUENCY, total)
    end_step = max(frequency, total // 2 // frequency * frequency)
    pruned = sk.prune_low_magnitude(
        baseline,
        pruning_schedule=sk.PolynomialDecay(0.25, 0.75, 0, end_step, frequency=frequency),
        pruning_policy=sk.PruneForLatencyOnXNNPack(),
    )
    rate = ctx.pruning_rate or pruning_learning_rate(ctx, end_step)
    return ctx.fit(pruned, "pruning", ctx.epochs["prune"], rate, [sk.UpdatePruningStep()])


def quantization_aware(baseline, ctx):
    import tfmot_lite as tfmot

    qat = tfmot.quantization.keras.quantize_model(baseline)
    return ctx.fit(qat, "QAT", ctx.epochs["qat"], 1e-4)


def cluster(baseline, ctx):
    import tfmot_lite as tfmot

    ck = tfmot.clustering.keras
    clustered = ck.cluster_weights(
        baseline, number_of_clusters=16,
        cluster_centroids_init=ck.CentroidInitialization.KMEANS_PLUS_PLUS,
    )
    return ctx.fit(clustered, "clustering", ctx.epochs["cluster"], 1e-4)


def prune_preserving_qat(baseline, ctx):
    """PQAT: quantization-aware training of the pruned model that keeps its
    zeros (`tfmot.experimental.combine`), exported int8 and sparse."""
    import tfmot_lite as tfmot

    qk = tfmot.quantization.keras
    stripped = tfmot.sparsity.keras.strip_pruning(ctx.trained("pruned 75%"))
    pqat = qk.quantize_apply(
        qk.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(),
    )
    return ctx.fit(pqat, "PQAT", ctx.epochs["qat"], 1e-4)


def _trained(name):
    """Reuses the model another variant trained (export it another way)."""
    return lambda baseline, ctx: ctx.models[name + DISTILLED if ctx.teacher else name]


def distilled(variant):
    """`variant` fine-tuned against the float baseline as teacher: the same
    technique, epochs and learning rate, through `distill` (defaults)."""
    def build(baseline, ctx):
        return variant.build(baseline, dataclasses.replace(ctx, teacher=baseline))

    return Variant(variant.name + DISTILLED, variant.mode, build,
                   variant.note + ", distilled from the float model")


def _with_distilled(variants):
    """Each optimized variant followed by its distilled twin."""
    return [twin for v in variants
            for twin in ((v,) if v.build is _baseline else (v, distilled(v)))]


VARIANTS = _with_distilled([
    Variant("float", "float32", _baseline, "the trained float baseline"),
    Variant("int8 PTQ", "int8", _baseline, "post-training full-integer quantization"),
    Variant("pruned 75%", "float32", prune_for_xnnpack,
            "PruneForLatencyOnXNNPack, stored sparse"),
    Variant("QAT int8", "int8", quantization_aware, "quantization-aware training"),
    Variant("PQAT int8", "int8", prune_preserving_qat,
            "QAT of the pruned model that keeps its zeros"),
    Variant("clustered 16", "float32", cluster, "16 clusters per kernel"),
    Variant("clustered 16 int8", "int8", _trained("clustered 16"),
            "the clustered model, post-training int8"),
])


# `--quick` (a smoke run, for CI) keeps one distilled twin: the QAT one
# (distillation plus an int8 export); the full run has one per technique.
QUICK_VARIANTS = [v for v in VARIANTS
                  if not v.name.endswith(DISTILLED) or v.name == "QAT int8" + DISTILLED]


# Epochs of the float model ("base") and of each technique's fine-tune.
FULL_EPOCHS = {"base": 15, "prune": 6, "qat": 3, "cluster": 3}
QUICK_EPOCHS = {"base": 2, "prune": 2, "qat": 1, "cluster": 1}


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def run(dataset="digits", output="tfmot_lite_demo", quick=False, epochs=None,
        threads=1, latency_runs=None, variants=None, seed=0):
    """Runs the workflow; returns `{"reports", "files", "baseline_accuracy"}`."""
    keras.utils.set_random_seed(seed)
    epochs = dict(epochs or (QUICK_EPOCHS if quick else FULL_EPOCHS))
    latency_runs = latency_runs or (20 if quick else 200)
    if variants is None:
        variants = QUICK_VARIANTS if quick else VARIANTS
    os.makedirs(output, exist_ok=True)

    splits = load_splits(dataset)
    ctx = Context(splits, epochs, quick=quick)
    print(f"[1/{len(variants) + 2}] float baseline on {splits.name}, "
          f"{epochs['base']} epochs (Keras backend: {keras.backend.backend()})", flush=True)
    baseline = ctx.fit(build_xnnpack_cnn(), "float", epochs["base"], float_learning_rate(ctx))

    reports, files = [], {}
    for step, variant in enumerate(variants, start=2):
        print(f"[{step}/{len(variants) + 2}] {variant.name}: {variant.note}", flush=True)
        model = variant.build(baseline, ctx)
        ctx.models[variant.name] = model
        path = os.path.join(output, slug(variant.name) + ".tflite")
        report = export.export_model(
            model, variant.mode, path=path, data=splits.x_test, labels=splits.y_test,
            representative_data=splits.x_calibrate, threads=threads,
            latency_runs=latency_runs, name=variant.name,
        )
        reports.append(report)
        files[variant.name] = path
        print(f"    exported {path}: {report.bytes:,} bytes, LiteRT accuracy "
              f"{report.accuracy:.4f}, agreement with Keras {report.agreement:.4f}",
              flush=True)

    print(f"[{len(variants) + 2}/{len(variants) + 2}] reports", flush=True)
    title = f"tfmot-lite demo: {splits.name}"
    table = export.format_reports(reports)
    files["report.txt"] = write_text_atomic(
        os.path.join(output, "report.txt"), title + "\n" + table + "\n")
    files["report.json"] = export.save_json(reports, os.path.join(output, "report.json"))
    files["report.md"] = export.save_markdown(
        reports, os.path.join(output, "report.md"), title=title)
    try:
        files["report.png"] = export.plot_reports(
            reports, os.path.join(output, "report.png"), title=title)
    except ImportError:
        print("    report.png skipped: matplotlib is not installed "
              "(pip install matplotlib)", flush=True)
    return {"reports": reports, "files": files, "table": table, "title": title}


def parse_args(argv):
    from tfmot_lite.command_line import Parser

    parser = Parser(prog="tfmot-lite demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["digits", "cifar10"], default="digits")
    parser.add_argument("--output", default="tfmot_lite_demo", metavar="DIR",
                        help="where the .tflite files and reports go")
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument("--epochs", type=int, default=None, help="float training epochs")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    epochs = None
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError("--epochs must be at least 1.")
        epochs = {"base": args.epochs, "prune": max(3, args.epochs // 2),
                  "qat": max(1, args.epochs // 5), "cluster": max(1, args.epochs // 5)}
    start = time.perf_counter()
    result = run(args.dataset, args.output, args.quick, epochs, threads=args.threads)
    print()
    print(result["title"])
    print(result["table"])
    print(
        "\nint8 ops: share of operators running integer; zeros / max uniq/ch: kernel "
        "weights as stored in the .tflite; sparse-ready: XNNPACK's sparse-inference "
        "preconditions hold (sparse kernels engage on ARM; the x86 LiteRT build "
        "runs them dense, so expect no speedup here)."
    )
    print(f"\nwrote {len(result['files'])} files to {args.output}/ "
          f"in {time.perf_counter() - start:.0f} s")
    return result


def _main_returning_status(argv):
    main(argv)
    return 0


if __name__ == "__main__":
    from tfmot_lite.command_line import run as run_command

    sys.exit(run_command(_main_returning_status))
