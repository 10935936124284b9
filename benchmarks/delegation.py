"""What XNNPACK runs, and what constant reshapes buy: `keras.applications`
models converted with `to_tflite`'s batch-free reshapes (`static_shapes`)
and without them, side by side.

For each model (`weights=None`, seed 0) and mode (`float32`; `int8`:
post-training, calibrated on random images, int8 input and output) the
model is converted both ways; printed per file: XNNPACK's partitions, the
share of operators it runs and the operators left to LiteRT's built-in
kernels (`TFLiteModel.xnnpack_delegation`), the largest output difference
between the two ways on random images, and LiteRT latency: every file
measured once per round in a new shuffled order, in one process; the
median and min-max of the round medians (`runs` single-example inferences
each, 1 thread).

    python benchmarks/delegation.py --rounds 5
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

WAYS = ("constant", "run-time")  # reshapes with constant shapes / as Keras writes them


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
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(
            input_shape=(args.size, args.size, 3), weights=None, classes=10,
            classifier_activation=None)
        images = rng.uniform(0, 255, size=(16, args.size, args.size, 3)).astype("float32")
        for mode in args.modes.split(","):
            outputs = {}
            for way in WAYS:
                flatbuffer = convert_model(model, mode, images, way)
                runner = TFLiteModel(flatbuffer)
                files[(name, mode, way)] = flatbuffer
                outputs[way] = runner.predict(images[:4])
                rows[(name, mode, way)] = runner.xnnpack_delegation()
            rows[(name, mode, "diff")] = float(np.abs(outputs[WAYS[0]] - outputs[WAYS[1]]).max())
            print(f"{name} {mode}: converted both ways", flush=True)

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

    table = [["model", "mode", "reshapes", "partitions", "XNNPACK ops", "LiteRT built-in kernels",
              "latency ms [min-max]", "max output diff"]]
    for (name, mode, way), flatbuffer in files.items():
        d = rows[(name, mode, way)]
        values = times[(name, mode, way)]
        table.append([
            name, mode, way, str(d.partitions), f"{d.delegated}/{d.operators}",
            d.outside_text() or "-",
            f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]",
            f"{rows[(name, mode, 'diff')]:.3g}" if way == WAYS[0] else "",
        ])
    print(text_table(table))


if __name__ == "__main__":
    main()
