"""What a QAT model costs before its first step: the ops TensorFlow traces.

Keras traces a model's training step on the first `fit` (and its predict
step on the first `predict`); on TensorFlow each op of the graph costs
about half a millisecond of Python to trace, and a QAT model's graphs are
mostly its quantizers' scalar arithmetic (range tracking in training, the
device's integer arithmetic in inference). Per model: the ops of the
training step's forward and backward pass and of the inference step, and
the seconds to trace each (the first `train_on_batch` / `predict_on_batch`
less a second one), interleaved rounds in shuffled order, each round on a
fresh QAT model; medians with their min-max.

`--first-fit` also times each model's first `fit` (2 batches of 8) as Keras
runs it, where TensorFlow builds the optimizer inside the first traced step
and so traces the step twice, and with `tfmot_lite.fast.BuildOptimizerFirst`
(the optimizer built first, the step traced once), on fresh QAT models in
the same rounds, in shuffled order.

    python benchmarks/trace_time.py --models transformer,mobilenet_v2 --rounds 5
    python benchmarks/trace_time.py --rounds 3 --first-fit
"""

import argparse
import os
import random
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite.example_models import mobilenet_v2  # noqa: E402

_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
sys.path[:0] = [_TESTS, os.path.join(_TESTS, "quantization")]


def _transformer():
    """The test suite's transformer block on 8 patches of 12 values
    (Dense and EinsumDense embedding, LayerNorms, attention, GELU MLP)."""
    from test_transformer_qat import SEQ, patch_model

    assert SEQ == 8
    return patch_model()


MODELS = {
    "transformer": (_transformer, (8, 12)),
    "mobilenet_v2": (lambda: mobilenet_v2(0.5), (96, 96, 3)),
}


def _ops(qat, shape, training):
    """Ops of the training step's forward and backward pass, or of the
    inference call, as Keras' steps trace them."""

    @tf.function
    def one_step_on_data(v):  # named as Keras' steps
        if not training:
            return qat(v, training=False)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(qat(v, training=True))
        return tape.gradient(loss, qat.trainable_variables)

    graph = one_step_on_data.get_concrete_function(tf.TensorSpec((8,) + shape)).graph
    return len(graph.get_operations())


def _first_step_seconds(step, x, y):
    start = time.perf_counter()
    step(x, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    step(x, y)
    return first - (time.perf_counter() - start)


def one_round(name, batch=8):
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (batch,) + shape).astype("float32")
    y = np.zeros(batch, "int32")
    qat = tfmot.quantization.keras.quantize_model(build())
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = _first_step_seconds(qat.train_on_batch, x, y)
    predict = _first_step_seconds(lambda a, _: qat.predict_on_batch(a), x, y)
    return train, predict


FIT_WAYS = ("as Keras", "BuildOptimizerFirst")


def first_fit_seconds(name, way, batch=8):
    """Seconds of a fresh QAT model's first `fit` on 2 batches, `way`
    being one of FIT_WAYS."""
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (2 * batch,) + shape).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(build())
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [tfmot.fast.BuildOptimizerFirst()] if way == "BuildOptimizerFirst" else []
    start = time.perf_counter()
    qat.fit(x, np.zeros(2 * batch, "int32"), batch_size=batch, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--first-fit", action="store_true",
                        help="also time the first fit as Keras runs it and with BuildOptimizerFirst")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    for name in names:
        build, shape = MODELS[name]
        qat = tfmot.quantization.keras.quantize_model(build())
        qat(np.zeros((2,) + shape, "float32"), training=True)
        print(f"{name}: ops traced, training step (forward and backward) "
              f"{_ops(qat, shape, True):,}, inference {_ops(qat, shape, False):,}", flush=True)
    seconds = {name: ([], []) for name in names}
    fits = {(name, way): [] for name in names for way in FIT_WAYS} if args.first_fit else {}
    rng = random.Random(0)
    for r in range(args.rounds):
        jobs = [(name, None) for name in names] + list(fits)
        rng.shuffle(jobs)
        for name, way in jobs:
            if way is None:
                train, predict = one_round(name)
                seconds[name][0].append(train)
                seconds[name][1].append(predict)
            else:
                fits[name, way].append(first_fit_seconds(name, way))
            keras.backend.clear_session()
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    for name, (train, predict) in seconds.items():
        print(f"{name}: trace seconds, training step {statistics.median(train):.2f} "
              f"({min(train):.2f}-{max(train):.2f}), predict step "
              f"{statistics.median(predict):.2f} ({min(predict):.2f}-{max(predict):.2f})")
    for (name, way), values in fits.items():
        print(f"{name}: first fit, {way}: {statistics.median(values):.2f} s "
              f"({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
