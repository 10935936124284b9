"""What XNNPACK runs, and what constant shapes buy: `keras.applications`
models converted with `to_tflite`'s batch-free reshapes (`static_shapes`),
without them, and built on a fixed batch size of 1, side by side.

For each model (`weights=None`, seed 0; `decoder`: three Conv2DTranspose
upsamplings, each followed by a Conv2D, a segmentation model's decoder) and
mode (`float32`; `int8`: post-training, calibrated on random images, int8
input and output) the model is converted three ways (the same weights);
printed per file: XNNPACK's partitions, the
share of operators it runs and the operators left to LiteRT's built-in
kernels (`TFLiteModel.xnnpack_delegation`), the largest output difference
from the first way on random images, and LiteRT latency: every file
measured once per round in a new shuffled order, in one process; the
median and min-max of the round medians (`runs` single-example inferences
each, 1 thread).

    python benchmarks/delegation.py --rounds 5
    python benchmarks/delegation.py --models decoder --size 16 --rounds 12

A fixed batch size matters where a shape reads it that `static_shapes`
cannot write as -1: a Conv2DTranspose's output shape (XNNPACK takes no
TRANSPOSE_CONV without a constant one).
"""

import argparse
import contextlib
import os
import random
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite.export import convert, static_shapes  # noqa: E402
from tfmot_lite.export.report import text_table  # noqa: E402
from tfmot_lite.export.runtime import TFLiteModel, measure_latency  # noqa: E402

# Reshapes with constant shapes / as Keras writes them / the model rebuilt
# on keras.Input(batch_size=1), its every shape a constant.
WAYS = ("constant", "run-time", "batch 1")


def build(name, size, batch_size=None):
    """`keras.applications.<name>` (`weights=None`, 10 logits), or the
    `decoder`, on inputs of `size` x `size` with the given batch size."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    if name == "decoder":
        inputs = keras.Input((size, size, 64), batch_size=batch_size)
        x = inputs
        for filters in (64, 32, 16):
            x = L.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(x)
            x = L.Conv2D(filters, 3, padding="same", activation="relu")(x)
        return keras.Model(inputs, L.Conv2D(3, 1)(x), name="decoder")
    return getattr(keras.applications, name)(
        input_tensor=keras.Input((size, size, 3), batch_size=batch_size), weights=None,
        classes=10, classifier_activation=None)


def convert_model(model, mode, images, way):
    import tensorflow as tf

    settings = {}
    if mode == "int8":
        settings = dict(optimizations=[tf.lite.Optimize.DEFAULT], representative_data=images,
                        inference_input_type=tf.int8, inference_output_type=tf.int8)
    with contextlib.ExitStack() as stack:
        if way == "run-time":
            original = static_shapes.batch_free_shapes
            static_shapes.batch_free_shapes = lambda tf: contextlib.nullcontext()
            stack.callback(setattr, static_shapes, "batch_free_shapes", original)
        return convert.to_tflite(model, **settings)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="EfficientNetB0,ConvNeXtTiny,MobileNetV3Small,NASNetMobile")
    parser.add_argument("--modes", default="float32,int8")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    files, rows = {}, {}
    for name in args.models.split(","):
        model = build(name, args.size)
        fixed = build(name, args.size, batch_size=1)
        fixed.set_weights(model.get_weights())
        images = rng.uniform(0, 255, size=(16, *model.input_shape[1:])).astype("float32")
        for mode in args.modes.split(","):
            outputs = {}
            for way in WAYS:
                flatbuffer = convert_model(fixed if way == "batch 1" else model,
                                           mode, images, way)
                runner = TFLiteModel(flatbuffer)
                files[(name, mode, way)] = flatbuffer
                outputs[way] = runner.predict(images[:4])
                rows[(name, mode, way)] = runner.xnnpack_delegation()
            for way in WAYS[1:]:
                rows[(name, mode, way, "diff")] = float(
                    np.abs(outputs[WAYS[0]] - outputs[way]).max())
            print(f"{name} {mode}: converted {len(WAYS)} ways", flush=True)

    times = {key: [] for key in files}
    sample = {key: None for key in files}
    order = list(files)
    shuffle = random.Random(0)
    for _ in range(args.rounds):
        shuffle.shuffle(order)
        for key in order:
            if sample[key] is None:
                shape = TFLiteModel(files[key]).input["shape"][1:]
                sample[key] = rng.uniform(0, 255, size=shape).astype("float32")
            times[key].append(measure_latency(files[key], sample[key], runs=args.runs,
                                              warmup=5) / 1000)

    table = [["model", "mode", "shapes", "partitions", "XNNPACK ops", "LiteRT built-in kernels",
              "latency ms [min-max]", "max output diff"]]
    for (name, mode, way), flatbuffer in files.items():
        d = rows[(name, mode, way)]
        values = times[(name, mode, way)]
        table.append([
            name, mode, way, str(d.partitions), f"{d.delegated}/{d.operators}",
            d.outside_text() or "-",
            f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]",
            f"{rows[(name, mode, way, 'diff')]:.3g}" if way != WAYS[0] else "",
        ])
    print(text_table(table))


if __name__ == "__main__":
    main()
