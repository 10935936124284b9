"""`graph_memo`: a traced QAT inference derives each range's scalars once,
and computes what it computed before, also where the same graph trains
the ranges between two inference calls."""

import keras
import numpy as np
import pytest

from tfmot_lite.quantization import graph_memo, integer_grid
from tfmot_lite.quantization import keras as quantization

L = keras.layers

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="a TensorFlow graph's memo")


def _residual_model():
    """A residual block whose ranges several layers read: the Add reads
    both convolutions', the last convolution the Add's."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = L.Conv2D(8, 1)(x)
    x = L.Conv2D(8, 1)(L.ReLU()(L.Add()([x, y])))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(x)))


def _data(seed, n=16):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 8, 8, 3)).astype("float32")


def test_a_graph_reuses_what_it_computed_and_eager_calls_do_not():
    import tensorflow as tf

    made = []

    def compute():
        made.append(1)
        return tf.constant(1.0) + 1.0

    @tf.function
    def twice(v):
        first = graph_memo.memoized("x", (v, 3), compute)
        second = graph_memo.memoized("x", (v, 3), compute)
        other = graph_memo.memoized("x", (v, 4), compute)
        assert first is second and other is not first
        return first + other

    twice(tf.constant(0.0))
    assert len(made) == 2
    graph_memo.memoized("x", (1.0,), compute)
    graph_memo.memoized("x", (1.0,), compute)
    assert len(made) == 4  # eager: every call computes


def test_each_range_grid_is_derived_once_per_traced_inference(monkeypatch):
    import tensorflow as tf

    x = _data(0)
    qat = quantization.quantize_model(_residual_model())
    qat(x, training=True)
    ranges = []
    original = integer_grid._integer_grid_of

    def counted(min_val, max_val, *args):
        ranges.append((min_val, max_val))
        return original(min_val, max_val, *args)

    monkeypatch.setattr(integer_grid, "_integer_grid_of", counted)

    @tf.function
    def one_step_on_data(v):  # named as Keras' predict step
        return qat(v, training=False)

    graph_out = one_step_on_data(x).numpy()
    assert ranges, "the integer paths derived no grid"
    # Each range once: no two derivations read the same pair of tensors.
    assert len({(id(a), id(b)) for a, b in ranges}) == len(ranges)
    np.testing.assert_array_equal(graph_out, keras.ops.convert_to_numpy(qat(x, training=False)))


@pytest.mark.slow  # over 5 s in the fast tier
def test_a_graph_that_trains_between_two_inferences_reads_the_new_ranges():
    """A custom step calling the model in inference, then in training
    (which assigns the ranges), then in inference again: the second call
    computes on the assigned ranges, as the same calls made eagerly do."""
    import tensorflow as tf

    x, batch = _data(0), _data(1) * 4.0
    model = _residual_model()
    graph_qat = quantization.quantize_model(model)
    eager_qat = quantization.quantize_model(model)
    for qat in (graph_qat, eager_qat):
        qat(x, training=True)

    @tf.function
    def one_step_on_data(v, b):
        before = graph_qat(v, training=False)
        graph_qat(b, training=True)
        return before, graph_qat(v, training=False)

    before, after = (t.numpy() for t in one_step_on_data(x, batch))
    expected_before = keras.ops.convert_to_numpy(eager_qat(x, training=False))
    eager_qat(batch, training=True)
    expected_after = keras.ops.convert_to_numpy(eager_qat(x, training=False))
    assert np.abs(expected_after - expected_before).max() > 0  # the ranges moved
    np.testing.assert_array_equal(before, expected_before)
    np.testing.assert_array_equal(after, expected_after)
