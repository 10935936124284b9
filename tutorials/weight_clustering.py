"""Weight clustering, end to end: cluster, fine-tune, strip, export, compare.

Trains a small CNN on the bundled handwritten digits (scikit-learn's 8x8
digits upsampled to 32x32x3, no download), clusters every kernel to 16
shared values with `tfmot_lite.clustering.keras`, fine-tunes, strips the
wrappers and exports both models to .tflite. Clustering leaves the float
graph unchanged, so the raw .tflite is as large as before; its kernels now
repeat a few values, which is what a compressor (here gzip, as for an
over-the-air download) exploits.

    python tutorials/weight_clustering.py            # about a minute on CPU
    python tutorials/weight_clustering.py --quick    # a few seconds' training

The fine-tune runs twice: as in the guide, and "distilled", against the
float model's soft targets (`tfmot.distillation.distill(clustered, model)`,
the same epochs and learning rate); the table has both rows.

This is the tfmot "weight clustering" guide with one changed import:
`import tfmot_lite as tfmot`.
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402


def digits_cnn(input_shape=(32, 32, 3), classes=10):
    """Conv-pool x2, then a dense head that holds most of the weights.

    No BatchNormalization after the convolutions: the TFLite converter folds
    it into the kernels (a per-channel rescale), which would spread each
    kernel's 16 values over 16 x channels (tfmot's guide warns about this).
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def max_unique_values(model):
    """The most unique values in any kernel of `model`."""
    counts = [
        len(np.unique(keras.ops.convert_to_numpy(layer.kernel)))
        for layer in model.layers
        if hasattr(layer, "kernel")
    ]
    return max(counts)


def run(
    epochs=8,
    fine_tune_epochs=3,
    number_of_clusters=16,
    init="KMEANS_PLUS_PLUS",
    batch_size=32,
    output_dir=None,
    seed=0,
):
    """Runs the tutorial; returns a dict of the measured figures."""
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=32)

    # 1. A trained float model: clustering starts from its weights.
    model = compile_model(digits_cnn(), 1e-3)
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    _, float_accuracy = model.evaluate(x_test, y_test, verbose=0)

    # 2. Cluster every kernel to `number_of_clusters` shared values and
    #    fine-tune (a lower learning rate, as in tfmot's guide). No callback
    #    is needed: centroids train, and weights move between clusters.
    #    Then the same, distilled from the float model.
    cluster = tfmot.clustering.keras

    def clustered_and_fine_tuned(teacher=None):
        clustered = cluster.cluster_weights(
            model,
            number_of_clusters=number_of_clusters,
            cluster_centroids_init=cluster.CentroidInitialization[init],
        )
        trained = clustered if teacher is None else tfmot.distillation.distill(clustered, teacher)
        compile_model(trained, 1e-4)
        trained.fit(x_train, y_train, batch_size=batch_size, epochs=fine_tune_epochs, verbose=0)
        return clustered

    clustered = clustered_and_fine_tuned()
    distilled = clustered_and_fine_tuned(teacher=model)

    # 3. Strip the wrappers: a plain Keras model with clustered kernels that
    #    predicts exactly as the clustered one.
    stripped = compile_model(cluster.strip_clustering(clustered), 1e-4)
    _, clustered_accuracy = stripped.evaluate(x_test, y_test, verbose=0)
    exact = bool(
        np.array_equal(
            clustered.predict(x_test, verbose=0), stripped.predict(x_test, verbose=0)
        )
    )
    stripped_distilled = compile_model(cluster.strip_clustering(distilled), 1e-4)
    _, distilled_accuracy = stripped_distilled.evaluate(x_test, y_test, verbose=0)

    # 4. Export them and compare sizes, raw and gzipped.
    output_dir = output_dir or tempfile.mkdtemp(prefix="weight_clustering_")
    os.makedirs(output_dir, exist_ok=True)
    float_tflite = export.to_tflite(model, path=os.path.join(output_dir, "float.tflite"))
    clustered_tflite = export.to_tflite(
        stripped, path=os.path.join(output_dir, "clustered.tflite")
    )
    distilled_tflite = export.to_tflite(
        stripped_distilled, path=os.path.join(output_dir, "clustered_distilled.tflite")
    )
    tflite_accuracy = export.TFLiteModel(clustered_tflite).accuracy(x_test, y_test)

    return {
        "float_accuracy": float(float_accuracy),
        "clustered_accuracy": float(clustered_accuracy),
        "clustered_tflite_accuracy": float(tflite_accuracy),
        "distilled_accuracy": float(distilled_accuracy),
        "distilled_tflite_accuracy": export.TFLiteModel(distilled_tflite).accuracy(
            x_test, y_test),
        "distilled_bytes": len(distilled_tflite),
        "distilled_gzipped": export.gzipped_size(distilled_tflite),
        "max_unique_values": max(max_unique_values(stripped),
                                 max_unique_values(stripped_distilled)),
        "strip_is_exact": exact,
        "float_bytes": len(float_tflite),
        "clustered_bytes": len(clustered_tflite),
        "float_gzipped": export.gzipped_size(float_tflite),
        "clustered_gzipped": export.gzipped_size(clustered_tflite),
        "number_of_clusters": number_of_clusters,
        "output_dir": output_dir,
    }


def format_table(results):
    r = results
    rows = [
        ("model", "test accuracy", ".tflite bytes", "gzipped bytes"),
        (
            "float",
            f"{r['float_accuracy']:.4f}",
            f"{r['float_bytes']:,}",
            f"{r['float_gzipped']:,}",
        ),
        (
            f"clustered ({r['number_of_clusters']})",
            f"{r['clustered_accuracy']:.4f}",
            f"{r['clustered_bytes']:,}",
            f"{r['clustered_gzipped']:,}",
        ),
        (
            f"clustered ({r['number_of_clusters']}) distilled",
            f"{r['distilled_accuracy']:.4f}",
            f"{r['distilled_bytes']:,}",
            f"{r['distilled_gzipped']:,}",
        ),
        (
            "ratio (clustered / float)",
            f"{r['clustered_accuracy'] - r['float_accuracy']:+.4f}",
            f"{r['float_bytes'] / r['clustered_bytes']:.2f}x",
            f"{r['float_gzipped'] / r['clustered_gzipped']:.2f}x",
        ),
    ]
    lines = export.text_table(rows).split("\n")
    lines.append(
        f"at most {r['max_unique_values']} unique values per kernel; strip exact: "
        f"{r['strip_is_exact']}; clustered .tflite accuracy (LiteRT): "
        f"{r['clustered_tflite_accuracy']:.4f}, distilled "
        f"{r['distilled_tflite_accuracy']:.4f}; files in {r['output_dir']}"
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="float training epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument(
        "--init",
        default="KMEANS_PLUS_PLUS",
        choices=[m.name for m in tfmot.clustering.keras.CentroidInitialization],
    )
    parser.add_argument("--output-dir", default=None, help="where the .tflite files go")
    parser.add_argument(
        "--quick", action="store_true", help="2 + 1 epochs: a smoke run, not a result"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.fine_tune_epochs = 2, 1
    results = run(
        epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        number_of_clusters=args.clusters,
        init=args.init,
        output_dir=args.output_dir,
    )
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
