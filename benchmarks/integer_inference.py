"""What integer inference costs a QAT model's Keras `predict`.

In inference the QAT wrappers compute on the integers the int8 ops use
(`tfmot_lite/quantization/integer_inference.py`), so the Keras model lands
on the .tflite's integers, ties included; the float path it replaced
(`fq(conv(x, w) + b)`, one FakeQuant op per range) is cheaper. This times
`predict` both ways on the same QAT model (the integer paths switched off
by `BorrowsInputRange.integer_input` answering None), each way traced once,
in interleaved rounds in shuffled order; ms per image, the median of the
rounds and their min-max. Training is not affected (it computes in float).

    python benchmarks/integer_inference.py --models MobileNetV2,EfficientNetB0 --rounds 7
"""

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmot_lite as tfmot  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite.quantization.input_range import BorrowsInputRange  # noqa: E402

_INTEGER = (BorrowsInputRange.integer_input, BorrowsInputRange.integer_inputs)


def _integer_paths(on):
    """Switches the integer inference paths on (as shipped) or off."""
    if on:
        BorrowsInputRange.integer_input, BorrowsInputRange.integer_inputs = _INTEGER
    else:
        BorrowsInputRange.integer_input = lambda self, training, layer: None
        BorrowsInputRange.integer_inputs = lambda self, training, layer, partial=False: None


def measure(name, size, images, rounds, batch_size=32):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(input_shape=(size, size, 3), weights=None,
                                              classes=10)
    qat = tfmot.quantization.keras.quantize_model(model)
    scale = 255.0 if name.startswith(("MobileNetV3", "EfficientNet", "ConvNeXt")) else 1.0
    x = np.random.default_rng(0).random((images, size, size, 3)).astype("float32") * scale
    qat(x[:batch_size], training=True)  # ranges
    models = {}
    try:
        for way in ("integer", "float"):
            _integer_paths(way == "integer")
            models[way] = keras.Model(qat.input, qat.output)  # its own traced predict
            models[way].predict(x[:batch_size], verbose=0, batch_size=batch_size)
        times = {way: [] for way in models}
        rng = random.Random(0)
        for _ in range(rounds):
            order = list(models)
            rng.shuffle(order)
            for way in order:
                start = time.perf_counter()
                models[way].predict(x, verbose=0, batch_size=batch_size)
                times[way].append((time.perf_counter() - start) * 1000 / images)
    finally:
        _integer_paths(True)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV2,MobileNetV3Small,EfficientNetB0")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print("| model | integer ms/image | float ms/image | integer / float |")
    print("|---|---:|---:|---:|")
    for name in args.models.split(","):
        times = measure(name, args.size, args.images, args.rounds)
        med = {way: statistics.median(v) for way, v in times.items()}
        cells = [f"{med[w]:.2f} [{min(times[w]):.2f}-{max(times[w]):.2f}]"
                 for w in ("integer", "float")]
        print(f"| {name} | {cells[0]} | {cells[1]} | {med['integer'] / med['float']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
