"""Deployment benchmark: what each technique does to the exported .tflite.

For two models,

* the digits CNN (the demo's XNNPACK-shaped CNN, trained on the bundled
  digits), and
* MobileNetV2 (alpha 0.35, 96x96x3, `weights=None`, 10 classes: untrained,
  so accuracy means nothing; its rows report top-1 agreement with the Keras
  float model on the digits upsampled to 96x96 instead),

it exports float32, post-training int8, pruned (75%, stored sparse) and
clustered (16 clusters) variants with `tfmot_lite.export.export_model` and
reports bytes raw and gzipped, LiteRT latency and accuracy (or agreement).

Latency: every variant's median single-inference time (XNNPACK, `--threads`)
measured in `--rounds` interleaved rounds, the variants shuffled in each
round; the table gives the median over rounds.

Where tensorflow-model-optimization and tf_keras are importable, the same
architectures are also pruned and clustered by tfmot in a subprocess
(`TF_USE_LEGACY_KERAS=1`) and the size ratios are printed side by side;
otherwise the benchmark says that part was skipped.

    python benchmarks/deployment.py                  # a few minutes
    python benchmarks/deployment.py --quick          # smoke run
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmot_lite as tfmot  # noqa: E402  (first: TensorFlow's banner silenced)

import keras  # noqa: E402

from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.example_models import build_xnnpack_cnn, mobilenet_v2  # noqa: E402

sk = tfmot.sparsity.keras
ck = tfmot.clustering.keras


def _compile(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    return model


def variants(name, model, x, y, epochs):
    """`(label, trained model, mode)` for each technique. With `epochs=0`
    nothing is fine-tuned (masks and centroids are set on the model as is)."""
    yield "float", model, "float32"
    yield "int8", model, "int8"
    pruned = _compile(sk.prune_low_magnitude(
        model, pruning_schedule=sk.ConstantSparsity(0.75, 0, frequency=1)), 1e-3 if epochs else 0.0)
    # One pass with UpdatePruningStep sets the masks (lr 0 leaves weights as is).
    pruned.fit(x, y, batch_size=32, epochs=max(epochs, 1), verbose=0,
               steps_per_epoch=None if epochs else 1, callbacks=[sk.UpdatePruningStep()])
    yield "pruned 75%", pruned, "float32"
    clustered = ck.cluster_weights(
        model, number_of_clusters=16,
        cluster_centroids_init=ck.CentroidInitialization.KMEANS_PLUS_PLUS)
    if epochs:
        _compile(clustered, 1e-4).fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    yield "clustered 16", clustered, "float32"


def benchmark_model(name, model, x, y, xt, yt, epochs, args):
    reports = []
    labels = yt if epochs else None
    for label, variant, mode in variants(name, model, x, y, epochs):
        print(f"  {name}: {label}", flush=True)
        report = export.export_model(
            variant, mode, data=xt, labels=labels, representative_data=x[:200],
            threads=args.threads, latency_runs=5, name=f"{name} {label}",
            path=os.path.join(args.output, f"{name}_{label.split()[0]}.tflite"),
        )
        reports.append(report)
    return reports


def interleaved_latency(reports, args, sample_for):
    """Median over `rounds` of each variant's median latency, the variants
    measured in a new random order every round."""
    times = {r.name: [] for r in reports}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(reports)
        rng.shuffle(order)
        for r in order:
            times[r.name].append(export.measure_latency(
                r.path, sample_for(r), runs=args.runs, warmup=10,
                num_threads=args.threads))
    for r in reports:
        r.latency_us = statistics.median(times[r.name])
        r.latency_runs = args.runs


TFMOT_SCRIPT = textwrap.dedent("""
    import gzip, json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot

    def size(model, sparse=False):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if sparse:
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        data = converter.convert()
        return len(data), len(gzip.compress(data, 9))

    def digits_cnn():
        L = keras.layers
        def bn_relu(x):
            return L.ReLU()(L.BatchNormalization(momentum=0.9)(x))
        inputs = keras.Input((32, 32, 3))
        x = L.ZeroPadding2D(1)(inputs)
        x = bn_relu(L.Conv2D(16, 3, strides=2, padding="valid")(x))
        x = bn_relu(L.DepthwiseConv2D(3, padding="same")(x))
        x = bn_relu(L.Conv2D(32, 1)(x))
        x = L.ZeroPadding2D(1)(x)
        x = bn_relu(L.DepthwiseConv2D(3, strides=2, padding="valid")(x))
        x = bn_relu(L.Conv2D(64, 1)(x))
        x = L.GlobalAveragePooling2D(keepdims=True)(x)
        return keras.Model(inputs, L.Dense(10)(L.Flatten()(x)))

    out = {}
    for name, build, shape in (
        ("digits", digits_cnn, (32, 32, 3)),
        ("mobilenet_v2", lambda: keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10,
            classifier_activation=None), (96, 96, 3)),
    ):
        model = build()
        # tfmot's wrappers change the layers they wrap: convert the float
        # model first and give each technique its own copy.
        sizes = {"float": size(model)}

        def copy():
            clone = keras.models.clone_model(model)
            clone.set_weights(model.get_weights())
            return clone

        x = np.random.default_rng(0).random((32,) + shape).astype("float32")
        y = np.zeros(32, "int32")
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            copy(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.75, 0, frequency=1))
        pruned.compile(optimizer=keras.optimizers.SGD(0.0),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
                   callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        clustered = tfmot.clustering.keras.cluster_weights(
            copy(), number_of_clusters=16,
            cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS)
        out[name] = {
            **sizes,
            "pruned 75%": size(tfmot.sparsity.keras.strip_pruning(pruned), sparse=True),
            "clustered 16": size(tfmot.clustering.keras.strip_clustering(clustered)),
        }
    print(json.dumps(out))
""")


def run_tfmot():
    """tfmot's sizes for the same models, or `(None, why)` when unavailable."""
    import importlib.util

    missing = [name for name in ("tf_keras", "tensorflow_model_optimization")
               if importlib.util.find_spec(name) is None]
    if missing:
        return None, "not installed: " + ", ".join(missing)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    probe = subprocess.run(
        [sys.executable, "-c", "import tf_keras, tensorflow_model_optimization"],
        capture_output=True, text=True, env=env)
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return None, last
    result = subprocess.run([sys.executable, "-c", TFMOT_SCRIPT], capture_output=True,
                            text=True, env=env, timeout=1800)
    if result.returncode:
        return None, (result.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(result.stdout.strip().splitlines()[-1]), ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/deployment")
    parser.add_argument("--epochs", type=int, default=10, help="digits CNN training epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100, help="inferences per round")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-tfmot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.runs = 1, 2, 10
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(0)

    print("digits CNN: training the float baseline", flush=True)
    (x, y), (xt, yt) = data.digits(image_size=32)
    cnn = _compile(build_xnnpack_cnn(), 3e-3)
    cnn.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0)
    reports = benchmark_model("digits", cnn, x, y, xt, yt, max(1, args.epochs // 4), args)

    print("MobileNetV2 0.35 96x96 (untrained)", flush=True)
    (x96, y96), (xt96, _) = data.digits(image_size=96)
    n = 64 if args.quick else 200
    mobile = mobilenet_v2(0.35)
    reports += benchmark_model("mobilenet_v2", mobile, x96[:n], y96[:n], xt96[:n], None,
                               0, args)

    inputs = {"digits": xt[0], "mobilenet_v2": xt96[0]}
    interleaved_latency(reports, args, lambda r: inputs[r.name.split()[0]])

    title = (f"Deployment benchmark: LiteRT latency median of {args.rounds} interleaved "
             f"rounds x {args.runs} runs, {args.threads} thread(s)")
    table = export.format_reports(reports)
    print("\n" + title)
    print(table)
    print("(MobileNetV2 is untrained: its 'agreement' column is top-1 agreement with "
          "the Keras float model; it has no accuracy.)")
    for model_name in ("digits", "mobilenet_v2"):
        rows = [r for r in reports if r.name.startswith(model_name)]
        base = rows[0]
        print(f"\n{model_name}: vs float  " + "  ".join(
            f"{r.name.split(' ', 1)[1]}: gzip x{base.gzip_bytes / r.gzip_bytes:.2f}, "
            f"latency x{base.latency_us / r.latency_us:.2f}" for r in rows[1:]))
    export.save_json(reports, os.path.join(args.output, "deployment.json"))
    export.save_markdown(reports, os.path.join(args.output, "deployment.md"), title)
    export.plot_reports(reports, os.path.join(args.output, "deployment.png"), "deployment")

    if args.skip_tfmot:
        print("\ntfmot comparison: skipped (--skip-tfmot)")
        return reports
    tfmot_sizes, why = run_tfmot()
    if tfmot_sizes is None:
        print(f"\ntfmot comparison: skipped, tensorflow-model-optimization/tf_keras not "
              f"importable here ({why})")
        return reports
    print("\ngzipped size vs float, tfmot-lite | tfmot:")
    for model_name, sizes in tfmot_sizes.items():
        rows = {r.name.split(" ", 1)[1]: r for r in reports if r.name.startswith(model_name)}
        for label in ("pruned 75%", "clustered 16"):
            ours = rows["float"].gzip_bytes / rows[label].gzip_bytes
            theirs = sizes["float"][1] / sizes[label][1]
            print(f"  {model_name} {label}: x{ours:.2f} | x{theirs:.2f}")
    return reports


if __name__ == "__main__":
    main()
