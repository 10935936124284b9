"""Pruning for on-device inference with XNNPACK, on tfmot-lite.

The TensorFlow guide "Pruning for on-device inference w/ XNNPACK", step by
step, with `import tfmot_lite as tfmot` in place of
`tensorflow_model_optimization`:

1. Train a small dense CNN (the guide's architecture).
2. Ask `prune_low_magnitude` to prune it with the
   `PruneForLatencyOnXNNPack` policy: the policy refuses, naming the
   `GlobalAveragePooling2D` that drops the spatial axes.
3. Rebuild the model with `GlobalAveragePooling2D(keepdims=True)`, copy the
   trained weights, and check it again.
4. Prune the 1x1 convolutions from 25% to 75% sparsity while fine-tuning,
   with `UpdatePruningStep` and `PruningSummaries` (TensorBoard).
5. Strip the wrappers and export with `EXPERIMENTAL_SPARSITY`, which stores
   the pruned weights sparse; inspect the .tflite file.
6. Compare the dense and pruned .tflite models: accuracy, size (raw and
   gzipped), LiteRT latency with XNNPACK on one thread, and whether the file
   meets XNNPACK's sparse-inference preconditions.

Step 4 also runs "distilled": the same pruning fine-tune against the dense
model's soft targets (`tfmot.distillation.distill(pruned, dense)`); the
table has its row beside the pruned one.

By default it trains on the digits bundled with scikit-learn (upsampled to
32x32x3, no download, a few minutes on a laptop CPU); `--dataset cifar10`
loads CIFAR-10 through TensorFlow Datasets exactly as the guide does (the
machine must be able to download it). `--quick` is a smoke run.

    python tutorials/pruning_for_xnnpack.py
    python tutorials/pruning_for_xnnpack.py --dataset cifar10
    python tutorials/pruning_for_xnnpack.py --quick

About latency: XNNPACK's sparse kernels target ARM (the guide measured 17 us
dense against 12 us pruned on a Pixel 4). On x86 the LiteRT build runs the
pruned model with the same dense kernels, so expect no speedup there; the
table reports what this machine measured and the verdict column says
whether a device with sparse kernels could use them.
"""

import argparse
import contextlib
import dataclasses
import io
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402

L = keras.layers


def build_model(keepdims):
    """The guide's CNN; only the GlobalAveragePooling2D differs."""
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.ZeroPadding2D(padding=1),
            L.Conv2D(filters=8, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            L.BatchNormalization(),
            L.ReLU(),
            L.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2D(filters=16, kernel_size=(1, 1)),
            L.BatchNormalization(),
            L.ReLU(),
            L.ZeroPadding2D(padding=1),
            L.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2D(filters=32, kernel_size=(1, 1)),
            L.BatchNormalization(),
            L.ReLU(),
            L.GlobalAveragePooling2D(keepdims=keepdims),
            L.Flatten(),
            L.Dense(10),
        ],
        name="fixed_dense_model" if keepdims else "dense_model",
    )


@dataclasses.dataclass
class Splits:
    """Training and validation data for `fit`, test data as arrays."""

    fit_args: tuple
    fit_kwargs: dict
    validation: object
    x_test: np.ndarray
    y_test: np.ndarray
    steps_per_epoch: int


def load_splits(name, batch_size):
    """90% / 10% train / validation split and the test set, as the guide."""
    if name == "cifar10":
        (train, val, test), _ = data.cifar10(batch_size=batch_size)
        x_test, y_test = data.to_numpy(test)
        # The training pipeline is shuffled already (as in the guide).
        return Splits((train,), {"shuffle": False}, val, x_test, y_test, len(train))
    (x, y), (x_test, y_test) = data.digits(image_size=32)
    n_train = int(round(len(x) * 0.9))
    return Splits(
        (x[:n_train], y[:n_train]),
        {"batch_size": batch_size},
        (x[n_train:], y[n_train:]),
        x_test,
        y_test,
        -(-n_train // batch_size),
    )


def compile_model(model):
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )


def fit(model, splits, epochs, callbacks=(), verbose=2):
    model.fit(
        *splits.fit_args,
        **splits.fit_kwargs,
        epochs=epochs,
        validation_data=splits.validation,
        callbacks=list(callbacks),
        verbose=verbose,
    )


def keras_accuracy(model, splits):
    _, accuracy = model.evaluate(splits.x_test, splits.y_test, verbose=0)
    return float(accuracy)


@contextlib.contextmanager
def quiet():
    """Hides the converter's SavedModel chatter on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def step(number, title):
    print(f"\n== {number}. {title} ==")


def pruning_schedule(steps_per_epoch, prune_epochs):
    """25% -> 75%, reached after a third of the fine-tuning (5 of 15 epochs
    in the guide). Masks update every `frequency` steps (100, as tfmot's
    default, or once an epoch on small data), and the end step is a multiple
    of it so that the last update applies the final 75%."""
    end_epoch = max(1, prune_epochs // 3)
    frequency = min(100, steps_per_epoch)
    end_step = steps_per_epoch * end_epoch // frequency * frequency
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.25,
        final_sparsity=0.75,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )


def measure(name, flatbuffer, splits, latency_runs):
    report = export.inspect_tflite(flatbuffer)
    return {
        "model": name,
        "accuracy": export.TFLiteModel(flatbuffer).accuracy(splits.x_test, splits.y_test),
        "bytes": len(flatbuffer),
        "gzipped": export.gzipped_size(flatbuffer),
        "latency_us": export.measure_latency(
            flatbuffer, splits.x_test[0], runs=latency_runs,
            warmup=max(1, latency_runs // 10), num_threads=1,
        ),
        "sparse_ready": report.sparse_ready,
        "report": report,
    }


def comparison_table(rows):
    header = ("model", "test acc (TFLite)", ".tflite bytes", "gzipped bytes",
              "latency us (XNNPACK, 1 thread)", "XNNPACK sparse-ready")
    lines = [header] + [
        (
            r["model"],
            f"{r['accuracy']:.2%}",
            str(r["bytes"]),
            str(r["gzipped"]),
            f"{r['latency_us']:.1f}",
            "yes" if r["sparse_ready"] else "no",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(line):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(lines[0]), rule] + [fmt(line) for line in lines[1:]])


def latency_note():
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        return (
            f"Latency was measured on {platform.machine()}: XNNPACK's sparse "
            "kernels engage on ARM, so this x86 LiteRT build runs the pruned "
            "model with dense kernels and shows no sparse speedup. The guide "
            "measured 17 us dense against 12 us pruned on a Pixel 4 "
            "(benchmark_model --use_xnnpack=true --num_threads=1)."
        )
    return (
        f"Latency was measured on {platform.machine()} with LiteRT's default "
        "XNNPACK delegate; whether XNNPACK chose its sparse kernels is "
        "decided at run time (the verdict column says the file allows it)."
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--epochs", type=int, default=10, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=15,
                        help="fine-tuning epochs with pruning (at least 2)")
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="128 for cifar10 (the guide); 32 for digits, whose 1,300 training "
        "images would otherwise give too few steps for BatchNormalization's "
        "moving statistics to settle",
    )
    parser.add_argument("--log-dir", default=None, help="PruningSummaries directory")
    parser.add_argument("--out-dir", default=None, help="where the .tflite files go")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 dense epoch, 2 pruning epochs, 20 latency runs")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 128 if args.dataset == "cifar10" else 32
    if args.quick:
        args.epochs, args.prune_epochs, args.latency_runs = 1, 2, 20
    if args.prune_epochs < 2:
        parser.error("--prune-epochs must be at least 2: the final sparsity is "
                     "applied after the first third of fine-tuning")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    keras.utils.set_random_seed(0)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="xnnpack_pruning_logs_")
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="xnnpack_pruning_")
    os.makedirs(out_dir, exist_ok=True)
    sk = tfmot.sparsity.keras

    step(1, f"Train a dense baseline on {args.dataset}")
    splits = load_splits(args.dataset, args.batch_size)
    dense_model = build_model(keepdims=False)
    compile_model(dense_model)
    fit(dense_model, splits, args.epochs, verbose=args.verbose)
    dense_accuracy = keras_accuracy(dense_model, splits)
    print(f"Dense model test accuracy: {dense_accuracy:.4f}")

    step(2, "Prune with the PruneForLatencyOnXNNPack policy")
    schedule = pruning_schedule(splits.steps_per_epoch, args.prune_epochs)
    pruning_params = {
        "pruning_schedule": schedule,
        "pruning_policy": sk.PruneForLatencyOnXNNPack(),
    }
    try:
        sk.prune_low_magnitude(dense_model, **pruning_params)
    except ValueError as error:
        policy_error = str(error)
        print(policy_error)
    else:
        raise RuntimeError("The policy accepted GlobalAveragePooling2D(keepdims=False).")

    step(3, "Fix the model: GlobalAveragePooling2D(keepdims=True), same weights")
    fixed_dense_model = build_model(keepdims=True)
    fixed_dense_model.set_weights(dense_model.get_weights())
    print(sk.xnnpack_sparsity_report(fixed_dense_model))
    model_for_pruning = sk.prune_low_magnitude(fixed_dense_model, **pruning_params)
    pruned_layers = [
        layer.layer.name for layer in model_for_pruning.layers
        if isinstance(layer, sk.PruneLowMagnitude)
    ]
    print(f"Wrapped for pruning: {', '.join(pruned_layers)}; {schedule}")

    step(4, f"Fine-tune with pruning for {args.prune_epochs} epochs")
    compile_model(model_for_pruning)
    callbacks = [sk.UpdatePruningStep(), sk.PruningSummaries(log_dir=log_dir)]
    fit(model_for_pruning, splits, args.prune_epochs, callbacks, verbose=args.verbose)
    pruned_accuracy = keras_accuracy(model_for_pruning, splits)
    print(f"Dense model test accuracy:  {dense_accuracy:.4f}")
    print(f"Pruned model test accuracy: {pruned_accuracy:.4f}")
    print(
        f"(The pruned model has trained {args.epochs + args.prune_epochs} epochs "
        f"in all, the dense one {args.epochs}: part of any gap is training time.)"
    )
    print(f"Per-layer sparsity in TensorBoard: tensorboard --logdir {log_dir}")
    print("The same fine-tune, distilled from the dense model:")
    distiller = tfmot.distillation.distill(
        sk.prune_low_magnitude(fixed_dense_model, **pruning_params), teacher=fixed_dense_model)
    compile_model(distiller)
    fit(distiller, splits, args.prune_epochs, [sk.UpdatePruningStep()], verbose=args.verbose)
    distilled_accuracy = keras_accuracy(distiller, splits)
    print(f"Pruned and distilled model test accuracy: {distilled_accuracy:.4f}")

    step(5, "Strip, export with EXPERIMENTAL_SPARSITY, inspect")
    dense_path = os.path.join(out_dir, "dense_model.tflite")
    pruned_path = os.path.join(out_dir, "pruned_model.tflite")
    distilled_path = os.path.join(out_dir, "pruned_distilled_model.tflite")
    with quiet():
        dense_tflite = export.to_tflite(dense_model, path=dense_path)
        pruned_tflite = export.to_sparse_tflite(model_for_pruning, path=pruned_path)
        distilled_tflite = export.to_sparse_tflite(distiller.student, path=distilled_path)
    print(f"Wrote {dense_path}, {pruned_path} and {distilled_path}")
    print(export.inspect_tflite(pruned_tflite))

    step(6, "Compare the .tflite models")
    rows = [
        measure("dense", dense_tflite, splits, args.latency_runs),
        measure("pruned (sparse)", pruned_tflite, splits, args.latency_runs),
        measure("pruned, distilled (sparse)", distilled_tflite, splits, args.latency_runs),
    ]
    table = comparison_table(rows)
    print(table)
    for row in rows:
        if not row["sparse_ready"]:
            print(f"{row['model']}: not sparse-ready: " + "; ".join(row["report"].reasons))
    dense_data, pruned_data = (row["report"].constant_bytes for row in rows[:2])
    if rows[1]["bytes"] > rows[0]["bytes"]:
        print(
            f"The pruned file is larger raw although its constant data shrank "
            f"from {dense_data} to {pruned_data} bytes: this model has so few "
            "weights that tensor names and the extra tensors of DENSIFY and of "
            "Flatten after keepdims=True outweigh the zeros left out. Gzipped: "
            f"{rows[1]['gzipped']} bytes pruned against {rows[0]['gzipped']} "
            "dense."
        )
    print(latency_note())
    return {
        "dense_accuracy": dense_accuracy,
        "pruned_accuracy": pruned_accuracy,
        "distilled_accuracy": distilled_accuracy,
        "policy_error": policy_error,
        "pruned_layers": pruned_layers,
        "rows": rows,
        "table": table,
        "log_dir": log_dir,
        "paths": (dense_path, pruned_path, distilled_path),
    }


if __name__ == "__main__":
    main()
