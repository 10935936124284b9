"""End-to-end pruning demo on the bundled handwritten digits.

    python -m tfmot_lite.demo            # or: tfmot-lite demo
    python -m tfmot_lite.demo --quick    # a few seconds, for smoke tests

Trains a small Conv-BN-ReLU CNN, prunes it from 25% to 75% sparsity with
`PolynomialDecay` while fine-tuning, strips the wrappers, exports both models
to .tflite and prints one table: accuracy in Keras and in LiteRT, kernel
sparsity, and file sizes raw and gzipped (zeros compress, which is where
pruning pays off in download size).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.sparsity import keras as sparsity  # noqa: E402


def build_cnn(input_shape=(32, 32, 3), classes=10):
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same")(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def kernel_sparsity(model):
    """Fraction of zeros over every Conv/Dense kernel of a plain model."""
    zeros = total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = np.asarray(layer.kernel)
            zeros += int((kernel == 0).sum())
            total += kernel.size
    return zeros / total


def run(epochs=10, prune_epochs=6, batch_size=32, log_dir=None, seed=0, verbose=0):
    """Runs the workflow; returns a list of result rows (dicts)."""
    keras.utils.set_random_seed(seed)
    (x, y), (xt, yt) = data.digits(image_size=32)

    dense = _compile(build_cnn(), 3e-3)
    dense.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)

    steps_per_epoch = int(np.ceil(len(x) / batch_size))
    end_step = steps_per_epoch * max(prune_epochs - 1, 1)
    pruned = sparsity.prune_low_magnitude(
        dense,
        pruning_schedule=sparsity.PolynomialDecay(
            initial_sparsity=0.25, final_sparsity=0.75, begin_step=0,
            end_step=end_step, frequency=max(steps_per_epoch // 4, 1),
        ),
    )
    callbacks = [sparsity.UpdatePruningStep()]
    if log_dir:
        callbacks.append(sparsity.PruningSummaries(log_dir))
    _compile(pruned, 1e-3).fit(
        x, y, batch_size=batch_size, epochs=prune_epochs, callbacks=callbacks,
        verbose=verbose,
    )
    stripped = sparsity.strip_pruning(pruned)
    _compile(stripped, 1e-3)

    import tensorflow as tf

    rows = []
    for name, model, optimizations in (
        ("dense", dense, []),
        ("pruned 75%", stripped, [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]),
    ):
        flatbuffer = export.to_tflite(model, optimizations=optimizations)
        rows.append(
            {
                "model": name,
                "keras_acc": model.evaluate(xt, yt, verbose=0)[1],
                "tflite_acc": export.TFLiteModel(flatbuffer).accuracy(xt, yt),
                "sparsity": kernel_sparsity(model),
                "tflite_bytes": len(flatbuffer),
                "gzip_bytes": export.gzipped_size(flatbuffer),
            }
        )
    max_diff = float(
        np.abs(stripped.predict(xt, verbose=0) - pruned.predict(xt, verbose=0)).max()
    )
    return rows, max_diff


def format_table(rows):
    header = (
        f"{'model':<12}{'Keras acc':>10}{'LiteRT acc':>12}{'sparsity':>10}"
        f"{'.tflite B':>11}{'gzip B':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model']:<12}{r['keras_acc']:>10.4f}{r['tflite_acc']:>12.4f}"
            f"{r['sparsity']:>10.3f}{r['tflite_bytes']:>11,}{r['gzip_bytes']:>9,}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tfmot-lite demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--epochs", type=int, default=10, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=6, help="pruning fine-tune epochs")
    parser.add_argument("--quick", action="store_true", help="2 + 2 epochs: a smoke test")
    parser.add_argument("--log-dir", default=None, help="write PruningSummaries here")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.prune_epochs = 2, 2
    print(
        f"tfmot-lite demo: digits 32x32x3, dense {args.epochs} epochs, "
        f"pruning 25% -> 75% over {args.prune_epochs} epochs "
        f"(Keras backend: {keras.backend.backend()})"
    )
    rows, max_diff = run(args.epochs, args.prune_epochs, log_dir=args.log_dir)
    print(format_table(rows))
    print(f"strip_pruning: max |pruned - stripped| prediction difference = {max_diff:.2e}")
    gz_dense, gz_pruned = rows[0]["gzip_bytes"], rows[1]["gzip_bytes"]
    print(f"gzipped .tflite: {gz_dense / gz_pruned:.2f}x smaller after pruning")
    return rows


if __name__ == "__main__":
    main()
