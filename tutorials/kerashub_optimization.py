"""Pruning and clustering a KerasHub model.

A small KerasHub Vision Transformer (`keras_hub.models.ViTBackbone`, 2
encoder blocks) with a pooled Dense head is trained on the bundled
handwritten digits (scikit-learn's 8x8 digits upsampled to 32x32x3, no
download), then optimized twice with the tfmot API:

* pruned to 50% zeros (`prune_low_magnitude`, a `PolynomialDecay` schedule,
  the `UpdatePruningStep` callback), fine-tuned and stripped;
* clustered to 16 shared values per kernel (`cluster_weights`), fine-tuned
  and stripped.

The backbone is one Keras layer whose Dense, EinsumDense and
MultiHeadAttention layers sit inside subclassed layers (the encoder blocks).
tfmot-lite wraps those inner layers in place (paths such as
`vi_t_backbone/vit_encoder/encoder_layers/0/mha`), and stripping gives the
KerasHub classes back: the stripped model holds a `ViTBackbone` again. The
pruned model is saved as `.keras` and reloaded with no `custom_objects`; all
three models are exported to .tflite with `tfmot_lite.export.export_model`
and measured with LiteRT in one table.

    python tutorials/kerashub_optimization.py            # about 70 s on 2 CPU cores
    python tutorials/kerashub_optimization.py --quick    # about 45 s: a smoke run, not a result

(Most of the quick run is fixed cost: tracing each training step once and
converting each model through a SavedModel.)

The backbone is built from a config with randomly initialised weights, so
that the tutorial runs without a download. Real use would start from a
pretrained checkpoint instead, for example

    backbone = keras_hub.models.ViTBackbone.from_preset(
        "vit_base_patch16_224_imagenet")

and the rest (head, fine-tune, prune or cluster, strip, export) is the same.

Read the latency column honestly: the x86 LiteRT wheel this runs on shows
no speedup from sparsity (XNNPACK's sparse kernels engage on ARM builds, and
only for some operators). Here pruning's win is size: half the kernel
weights are zeros, which the export stores in TFLite's sparse format and
which gzip compresses. Clustering keeps the float graph and its raw size;
its kernels repeat at most 16 values per channel, which gzip compresses far
better (and int8 quantization would keep those few values). Kernels and
the position embedding are pruned and clustered; biases, LayerNormalization
and the class token stay dense. The table's "weight zeros" and "max
unique/channel" count the kernels of the FULLY_CONNECTED and CONV_2D
operators (the position embedding becomes a constant ADD, not counted).

QAT of a KerasHub transformer (LayerNormalization, attention) is not
supported yet, so this tutorial covers pruning and clustering only.
"""

import argparse
import math
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.core import graph  # noqa: E402


def vit_digits_classifier(patch_size=8, classes=10):
    """A 2-block ViT backbone (random weights) with a pooled Dense head: a
    Functional model around the KerasHub backbone, as one would build around
    `ViTBackbone.from_preset(...)`."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=patch_size,
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        dropout_rate=0.0,
        attention_dropout=0.0,
    )
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="vit_digits")


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def pruning_schedule(steps_per_epoch, prune_epochs, target_sparsity):
    """0% -> `target_sparsity` over the first two thirds of the fine-tuning;
    the last third trains at the target. Masks update a few times an epoch,
    and the end step is a multiple of the update frequency so that the last
    update applies the full target."""
    frequency = max(1, steps_per_epoch // 3)
    total = steps_per_epoch * prune_epochs
    end_step = max(frequency, (2 * total // 3) // frequency * frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=target_sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )


def wrapped_paths(model, wrapper):
    """Paths (from `graph.iter_layers`) of the layers wrapped by `wrapper`,
    e.g. "vi_t_backbone/vit_encoder/encoder_layers/0/mha"."""
    return [path for path, layer in graph.iter_layers(model) if isinstance(layer, wrapper)]


def backbone_class(model):
    """The class name of the model's backbone layer (the KerasHub one)."""
    (backbone,) = [layer for layer in model.layers if "backbone" in layer.name]
    return f"{type(backbone).__module__}.{type(backbone).__name__}"


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def run(
    epochs=20,
    prune_epochs=4,
    cluster_epochs=3,
    target_sparsity=0.5,
    number_of_clusters=16,
    patch_size=8,
    batch_size=32,
    fine_tune_examples=None,
    latency_runs=100,
    output_dir=None,
    seed=0,
):
    """Runs the tutorial; returns a dict of the measured figures.

    `fine_tune_examples` limits the pruning and clustering fine-tunes to the
    first that many training examples (all by default).
    """
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=32)
    x_tune, y_tune = x_train[:fine_tune_examples], y_train[:fine_tune_examples]
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    tune_steps_per_epoch = math.ceil(len(x_tune) / batch_size)
    output_dir = output_dir or tempfile.mkdtemp(prefix="kerashub_optimization_")
    os.makedirs(output_dir, exist_ok=True)
    seconds = {}

    # 1. A trained float model: a KerasHub ViTBackbone inside a Functional
    #    model. Adam with a cosine-decayed learning rate.
    start = time.perf_counter()
    model = vit_digits_classifier(patch_size)
    compile_model(model, keras.optimizers.schedules.CosineDecay(
        1e-3, decay_steps=steps_per_epoch * epochs, alpha=0.05))
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    seconds["train"] = time.perf_counter() - start

    # 2. Prune to `target_sparsity`: `prune_low_magnitude` wraps the Dense,
    #    EinsumDense and MultiHeadAttention layers inside the encoder blocks
    #    (and the head). `UpdatePruningStep` advances the schedule.
    start = time.perf_counter()
    sparsity = tfmot.sparsity.keras
    schedule = pruning_schedule(tune_steps_per_epoch, prune_epochs, target_sparsity)
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned_paths = wrapped_paths(pruned, sparsity.PruneLowMagnitude)
    compile_model(pruned, 1e-4)
    pruned.fit(x_tune, y_tune, batch_size=batch_size, epochs=prune_epochs, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    stripped_pruned = sparsity.strip_pruning(pruned)
    seconds["prune"] = time.perf_counter() - start

    # 3. Cluster every kernel to `number_of_clusters` shared values, from the
    #    float model, and fine-tune; centroids train, no callback needed.
    start = time.perf_counter()
    cluster = tfmot.clustering.keras
    clustered = cluster.cluster_weights(
        model,
        number_of_clusters=number_of_clusters,
        cluster_centroids_init=cluster.CentroidInitialization.KMEANS_PLUS_PLUS,
    )
    clustered_paths = wrapped_paths(clustered, cluster.ClusterWeights)
    compile_model(clustered, 1e-4)
    clustered.fit(x_tune, y_tune, batch_size=batch_size, epochs=cluster_epochs, verbose=0)
    stripped_clustered = cluster.strip_clustering(clustered)
    seconds["cluster"] = time.perf_counter() - start

    # 4. The pruned model as .keras: it reloads with no custom_objects (the
    #    wrappers and KerasHub classes are registered), ready to resume
    #    fine-tuning; the stripped one reloads as plain KerasHub.
    pruned_path = os.path.join(output_dir, "pruned.keras")
    pruned.save(pruned_path)
    reloaded = keras.models.load_model(pruned_path)
    stripped_path = os.path.join(output_dir, "pruned_stripped.keras")
    stripped_pruned.save(stripped_path)
    reloaded_stripped = keras.models.load_model(stripped_path)
    sample = x_test[:64]
    reload_difference = max(
        float(np.max(np.abs(predict(reloaded, sample) - predict(pruned, sample)))),
        float(np.max(np.abs(predict(reloaded_stripped, sample) - predict(pruned, sample)))),
    )

    # 5. Export all three (export_model strips the wrappers, converts through
    #    a SavedModel, writes the .tflite and measures it with LiteRT).
    start = time.perf_counter()
    reports = {}
    for name, keras_model in (("float", model), ("pruned", pruned), ("clustered", clustered)):
        reports[name] = export.export_model(
            keras_model,
            "float32",
            path=os.path.join(output_dir, f"{name}.tflite"),
            data=x_test,
            labels=y_test,
            name=name,
            latency_runs=latency_runs,
        )
    seconds["export"] = time.perf_counter() - start

    return {
        "reports": reports,
        "models": {
            "float": backbone_class(model),
            "pruned (stripped)": backbone_class(stripped_pruned),
            "clustered (stripped)": backbone_class(stripped_clustered),
            "pruned (reloaded .keras)": backbone_class(reloaded_stripped),
        },
        "stripped_pruned": stripped_pruned,
        "stripped_clustered": stripped_clustered,
        "pruned_paths": pruned_paths,
        "clustered_paths": clustered_paths,
        "pruned_keras_path": pruned_path,
        "pruned_keras_bytes": os.path.getsize(pruned_path),
        "reload_max_difference": reload_difference,
        "reload_equal": reload_difference == 0.0,
        "target_sparsity": target_sparsity,
        "number_of_clusters": number_of_clusters,
        "seconds": seconds,
        "output_dir": output_dir,
    }


def format_table(results):
    r = results
    labels = {
        "float": "float",
        "pruned": f"pruned ({r['target_sparsity']:.0%})",
        "clustered": f"clustered ({r['number_of_clusters']})",
    }
    rows = [(
        "model", "Keras accuracy", ".tflite accuracy", "agreement", ".tflite bytes",
        "gzipped bytes", "weight zeros", "max unique/channel", "latency us",
    )]
    for key, report in r["reports"].items():
        rows.append((
            labels[key],
            f"{report.keras_accuracy:.4f}",
            f"{report.accuracy:.4f}",
            f"{report.agreement:.4f}",
            f"{report.bytes:,}",
            f"{report.gzip_bytes:,}",
            f"{report.sparsity:.1%}",
            str(report.max_unique_per_channel),
            f"{report.latency_us:.0f}",
        ))
    lines = [export.text_table(rows)]
    lines.append(
        "weight zeros and max unique/channel: over the kernels of the .tflite's "
        "FULLY_CONNECTED/CONV_2D operators; latency: LiteRT median, 1 thread; "
        f"pruned kernels stored sparse: {r['reports']['pruned'].sparse_storage}"
    )
    lines.append("")
    for name, cls in r["models"].items():
        lines.append(f"{name}: backbone is {cls}")
    shown = [p for p in r["pruned_paths"] if "/" in p]
    lines.append(
        f"pruned {len(r['pruned_paths'])} layers ({len(shown)} inside the backbone), e.g. "
        + ", ".join(shown[:4])
    )
    lines.append(f"clustered {len(r['clustered_paths'])} layers")
    lines.append(
        f"pruned.keras reloaded without custom_objects: predictions equal: "
        f"{r['reload_equal']} (max difference {r['reload_max_difference']:.1e})"
    )
    lines.append(
        "seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items())
        + f"; files in {r['output_dir']}"
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="float training epochs")
    parser.add_argument("--prune-epochs", type=int, default=4)
    parser.add_argument("--cluster-epochs", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=8, choices=(4, 8))
    parser.add_argument("--output-dir", default=None, help="where the .tflite and .keras files go")
    parser.add_argument(
        "--quick", action="store_true",
        help="3 + 1 + 1 epochs, fine-tunes on 320 examples, 10 latency runs: a "
        "smoke run, not a result",
    )
    args = parser.parse_args(argv)
    latency_runs, fine_tune_examples = 100, None
    if args.quick:
        args.epochs, args.prune_epochs, args.cluster_epochs = 3, 1, 1
        latency_runs, fine_tune_examples = 10, 320
    results = run(
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        cluster_epochs=args.cluster_epochs,
        target_sparsity=args.sparsity,
        number_of_clusters=args.clusters,
        patch_size=args.patch_size,
        fine_tune_examples=fine_tune_examples,
        latency_runs=latency_runs,
        output_dir=args.output_dir,
    )
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
