"""Export time: `tfmot_lite.export.to_tflite` against the converter's own
`TFLiteConverter.from_keras_model`, on the same Keras models.

`to_tflite` writes a Sequential or Functional model's inference call, its
variables frozen into constants, as a SavedModel with no variables;
`from_keras_model` saves and restores every variable through Keras'
`ExportArchive` first (what `to_tflite` did before, and what tfmot's guides
call). Both give the converter the same graph: the benchmark checks that the
two .tflite files list the same operators and predict the same outputs.

A third path, "model.export", is `to_tflite` writing the SavedModel through
Keras' `model.export` (`convert.FREEZE_MAX_BYTES` set to 0): what it does
for models over that size, and did for models that hold a KerasHub
backbone or a user's subclassed block, or take dict inputs, until those
were frozen too.

Models: the digits CNN (`example_models.build_cnn`) float and QAT,
`keras.applications.MobileNetV3Small` (32x32, weights=None) float and QAT,
and where keras-hub is installed a small KerasHub ViT classifier (a
`ViTBackbone` from config, random weights, 32x32 patches of 8; its QAT
model holds the backbone as a `SublayerHost`), which `from_keras_model`
cannot trace; QAT models convert with `Optimize.DEFAULT` (int8). Each round
converts every (model, path) pair once in a new shuffled order, in one
process; printed: the median and min-max seconds per pair, and per model
the per-round ratio of to_tflite to each other path as min / median / max
with a bootstrap 90% interval of the median, and whether the two files
list the same operators and predict the same outputs.

    python benchmarks/export_speed.py --rounds 3

`--live-objects N` first makes N million small objects that stay alive (as
a notebook or a test run holds the graphs of every model it has traced)
and adds a third path, "to_tflite, full gc": `to_tflite` without
`convert.objects_before_frozen`, so that the converter's own
`gc.collect()` walks all of them.

    python benchmarks/export_speed.py --rounds 3 --live-objects 3
"""

import argparse
import contextlib
import io
import os
import random
import statistics
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from stats import bootstrap_median  # noqa: E402


def _kerashub_vit():
    """A KerasHub ViT backbone (2 layers of width 64 on 32x32 images,
    patches of 8) under a pooling and a Dense head, random weights."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
        hidden_dim=64, mlp_dim=128, dropout_rate=0.0, attention_dropout=0.0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


# Models `from_keras_model` cannot trace (a KerasHub backbone inside).
UNTRACEABLE = ("KerasHub ViT",)


def models():
    """{name: (Keras model, quantized?)}: float and QAT versions of the digits
    CNN, of MobileNetV3Small and (keras-hub installed) of a KerasHub ViT
    classifier, QAT ones trained one step (real ranges)."""
    import importlib.util

    import tfmot_lite as tfmot
    from tfmot_lite.example_models import build_cnn

    keras.utils.set_random_seed(0)
    built = {
        "digits CNN": build_cnn(),
        "MobileNetV3Small": keras.applications.MobileNetV3Small(
            input_shape=(32, 32, 3), weights=None, classes=10),
    }
    if importlib.util.find_spec("keras_hub"):
        built["KerasHub ViT"] = _kerashub_vit()
    out = {}
    for name, model in built.items():
        qat = tfmot.quantization.keras.quantize_model(model)
        x = np.random.default_rng(0).uniform(0, 1, (16,) + model.input_shape[1:]).astype("float32")
        qat.compile("adam", "sparse_categorical_crossentropy")
        qat.fit(x, np.arange(16) % 10, epochs=1, batch_size=16, verbose=0)
        out[f"{name} float"] = (model, False)
        out[f"{name} QAT"] = (qat, True)
    return out


def convert(path, model, quantized):
    import tensorflow as tf

    from tfmot_lite.export import convert as convert_module
    from tfmot_lite.export import to_tflite
    from tfmot_lite.quiet import silenced_stderr

    optimizations = [tf.lite.Optimize.DEFAULT] if quantized else []
    if path == "to_tflite":
        return to_tflite(model, optimizations=optimizations)
    if path == "model.export":
        with mock.patch.object(convert_module, "FREEZE_MAX_BYTES", 0):
            return to_tflite(model, optimizations=optimizations)
    if path == "to_tflite, full gc":
        with mock.patch.object(convert_module, "objects_before_frozen", contextlib.nullcontext):
            return to_tflite(model, optimizations=optimizations)
    with silenced_stderr(), contextlib.redirect_stdout(io.StringIO()):  # its signature print
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = optimizations
        return converter.convert()


def same_model(a, b, sample):
    """(same operator list, max |output difference| on `sample`)."""
    from tfmot_lite.export import TFLiteModel, inspect_tflite

    ops = [[op.op_type for op in inspect_tflite(f).operators] for f in (a, b)]
    diff = np.abs(TFLiteModel(a).predict(sample) - TFLiteModel(b).predict(sample)).max()
    return ops[0] == ops[1], float(diff)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seeds the round order")
    parser.add_argument("--live-objects", type=float, default=0,
                        help="millions of objects kept alive during the rounds")
    args = parser.parse_args(argv)

    built = models()
    live = [{"self": None} for _ in range(int(args.live_objects * 1e6))]
    for item in live:
        item["self"] = item  # a cycle: only the collector could free it
    paths = ("to_tflite", "model.export", "from_keras_model") + (
        ("to_tflite, full gc",) if live else ())
    pairs = [(name, path) for name in built for path in paths
             if not (path == "from_keras_model" and name.startswith(UNTRACEABLE))]
    seconds = {pair: [] for pair in pairs}
    order = random.Random(args.seed)
    last = {}
    for round_index in range(args.rounds):
        order.shuffle(pairs)
        for name, path in pairs:
            model, quantized = built[name]
            start = time.perf_counter()
            last[name, path] = convert(path, model, quantized)
            seconds[name, path].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{n} [{p}] {seconds[n, p][-1]:.1f} s" for n, p in pairs), flush=True)

    print(f"\n{'model':<24} {'path':<19} {'median s':>9} {'min-max s':>14}")
    for name in built:
        for path in paths:
            if (name, path) not in seconds:
                continue
            values = seconds[name, path]
            print(f"{name:<24} {path:<19} {statistics.median(values):9.2f} "
                  f"{min(values):6.2f}-{max(values):6.2f}")
    boot = np.random.default_rng(args.seed)
    for other in ("model.export", "from_keras_model"):
        print(f"\n{'to_tflite / ' + other:<32} {'min':>6} {'median':>7} {'max':>6} "
              f"{'90% CI of median':>17}  same operators, max |output diff|")
        for name, (model, _) in built.items():
            if (name, other) not in seconds:
                continue
            ratios = [a / b for a, b in zip(seconds[name, "to_tflite"], seconds[name, other])]
            lo, hi = bootstrap_median(ratios, boot)
            sample = np.random.default_rng(1).uniform(
                0, 1, (8,) + model.input_shape[1:]).astype("float32")
            same, diff = same_model(last[name, "to_tflite"], last[name, other], sample)
            print(f"{name:<32} {min(ratios):6.3f} {statistics.median(ratios):7.3f} "
                  f"{max(ratios):6.3f}   [{lo:5.3f}, {hi:5.3f}]  {same}, {diff:.2e}")
    if live:
        print(f"\n{'to_tflite / full gc':<24} {'min':>6} {'median':>7} {'max':>6} "
              f"{'90% CI of median':>17}  ({len(live):,} live objects)")
        for name in built:
            ratios = [a / b for a, b in zip(seconds[name, "to_tflite"],
                                            seconds[name, "to_tflite, full gc"])]
            lo, hi = bootstrap_median(ratios, boot)
            print(f"{name:<24} {min(ratios):6.3f} {statistics.median(ratios):7.3f} "
                  f"{max(ratios):6.3f}   [{lo:5.3f}, {hi:5.3f}]")


if __name__ == "__main__":
    main()
