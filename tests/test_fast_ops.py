"""`fast_ops` computes what its `keras.ops` form computes: the fused
training-time BatchNormalization (outputs, gradients, moving statistics; used
by QAT's folded Conv-BN and by `FusedBatchNormalization`), when it applies,
and the gather of non-negative indices."""

import keras
import numpy as np
import pytest

from tfmot_lite.fast import ops as fast_ops
from tfmot_lite.fast.ops import batch_norm_train


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_batch_norm_train_matches_keras(center, scale):
    rng = np.random.default_rng(0)
    layers = []
    for _ in range(2):
        bn = keras.layers.BatchNormalization(center=center, scale=scale, momentum=0.9)
        bn.build((None, 5, 5, 4))
        layers.append(bn)
    for a, b in zip(layers[0].weights, layers[1].weights):
        value = rng.uniform(0.5, 2.0, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    x = rng.normal(2.0, 3.0, (3, 5, 5, 4)).astype("float32")
    expected = layers[0](x, training=True)
    got = batch_norm_train(layers[1], keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
    for a, b in zip(layers[0].non_trainable_weights, layers[1].non_trainable_weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)
    # The update moved the statistics away from their initial values.
    assert not np.allclose(layers[1].moving_mean.numpy(), 0.0)


def test_batch_norm_train_gradients_match_keras():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    import tensorflow as tf

    rng = np.random.default_rng(1)
    layers = [keras.layers.BatchNormalization() for _ in range(2)]
    for bn in layers:
        bn.build((None, 4, 4, 3))
    for a, b in zip(layers[0].weights, layers[1].weights):
        value = rng.uniform(0.5, 2.0, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    x = tf.constant(rng.normal(size=(2, 4, 4, 3)).astype("float32"))
    w = tf.constant(rng.normal(size=(2, 4, 4, 3)).astype("float32"))
    grads = []
    for fn, bn in ((lambda bn, x: bn(x, training=True), layers[0]), (batch_norm_train, layers[1])):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(bn, x) * w)
        grads.append(tape.gradient(loss, [x] + bn.trainable_weights))
    for a, b in zip(*grads):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4)


def _bn(**kwargs):
    bn = keras.layers.BatchNormalization(**kwargs)
    bn.build((None, 4, 4, 3))
    return bn


@pytest.mark.parametrize("kwargs,rank,fused", [
    ({}, 4, True),
    ({"axis": 3}, 4, True),
    ({}, 2, False),                        # Dense outputs: the layer's own path
    ({"axis": 1}, 4, False),               # channels-first
    ({"renorm": True}, 4, False),
    ({"synchronized": True}, 4, False),
    ({"epsilon": 1e-6}, 4, False),         # below FusedBatchNormV3's minimum
])
def test_fused_kernel_only_where_it_computes_the_same(kwargs, rank, fused):
    on_tf = keras.backend.backend() == "tensorflow"
    if kwargs.get("synchronized") and not on_tf:
        pytest.skip("Keras offers synchronized BatchNormalization on TensorFlow only")
    assert fast_ops.can_fuse_batch_norm(_bn(**kwargs), rank) is (fused and on_tf)


def test_batch_norm_train_falls_back_to_the_layer_with_the_same_result():
    rng = np.random.default_rng(2)
    layers = [_bn(renorm=True) for _ in range(2)]
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    expected = layers[0](x, training=True)
    got = batch_norm_train(layers[1], keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)


def test_take_nonnegative_is_take():
    table = keras.ops.convert_to_tensor(np.array([-1.5, 0.0, 2.0, 7.0], "float32"))
    indices = np.random.default_rng(3).integers(0, 4, size=(5, 6)).astype("int32")
    got = fast_ops.take_nonnegative(table, keras.ops.convert_to_tensor(indices))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(table)[indices]
    )


@pytest.mark.parametrize("size", [100, fast_ops.XLA_SEARCH_MIN_SIZE + 7])
def test_searchsorted_left_is_searchsorted(size):
    """Small inputs take `ops.searchsorted`, large ones the compiled search
    (TensorFlow) or the fused comparison (JAX): the same integers, ties at
    a boundary included (they stay left of it)."""
    rng = np.random.default_rng(1)
    boundaries = np.sort(rng.normal(size=15)).astype("float32")
    values = rng.normal(size=size).astype("float32")
    values[:15] = boundaries  # exact ties
    values[15:17] = (-50.0, 50.0)  # beyond either end
    got = fast_ops.searchsorted_left(keras.ops.convert_to_tensor(boundaries),
                                     keras.ops.convert_to_tensor(values))
    assert keras.ops.convert_to_numpy(got).dtype == np.int32
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(got), np.searchsorted(boundaries, values, side="left"))


def test_clustered_training_step_uses_the_same_clusters_as_inference():
    """`ClusterWeights` assigns with the fast search in training and with
    `ops.searchsorted` otherwise: a kernel above the size threshold gets the
    same clustered values either way."""
    from tfmot_lite.clustering.keras import cluster_weights

    dense = keras.layers.Dense(fast_ops.XLA_SEARCH_MIN_SIZE // 64 + 1)
    model = keras.Sequential([keras.Input((64,)), dense])
    clustered = cluster_weights(model, number_of_clusters=16)
    wrapper = clustered.layers[0]
    trained, inferred = wrapper.transformed_weights(True), wrapper.transformed_weights(False)
    for a, b in zip(trained, inferred):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert len(np.unique(keras.ops.convert_to_numpy(trained[0]))) <= 16


# Ranges a tracked activation quantizer meets: around 0, one end at 0, the
# empty range of a tensor that was 0 so far, and ranges whose nudging moves
# an end by a fraction of a step.
_FAKE_QUANT_RANGES = [(-3.0, 2.5), (-7.158589, 0.0), (0.0, 5.3), (0.0, 0.0),
                      (-0.0123, 0.0971), (-6.0, 6.0)]


@pytest.mark.parametrize("num_bits,narrow_range", [(8, False), (8, True), (4, False), (16, False)])
def test_fake_quant_input_gradient_is_the_op_and_its_gradient(num_bits, narrow_range):
    """Values bit for bit the FakeQuant op's, and the gradient bit for bit
    the input gradient of its gradient op, on values at, inside and just
    outside each nudged range."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow fast path")
    import tensorflow as tf

    rng = np.random.default_rng(num_bits)
    for lo, hi in _FAKE_QUANT_RANGES:
        x = rng.normal(0.0, 4.0, (2, 40, 40, 21)).astype("float32")
        edges = np.array([lo, hi, 0.0, -0.0, 1e-9, -1e-9], "float32")
        x.flat[:24] = np.concatenate([edges, np.nextafter(edges, 100), np.nextafter(edges, -100),
                                      edges * 1.0000001])
        x = tf.constant(x)
        upstream = tf.constant(rng.normal(size=x.shape).astype("float32"))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            expected = tf.quantization.fake_quant_with_min_max_vars(
                x, lo, hi, num_bits=num_bits, narrow_range=narrow_range)
            got = fast_ops.fake_quant_input_gradient(x, lo, hi, num_bits, narrow_range)
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
        np.testing.assert_array_equal(
            tape.gradient(got, x, output_gradients=upstream).numpy(),
            tape.gradient(expected, x, output_gradients=upstream).numpy())


def test_tracked_activation_ranges_train_through_the_fast_path():
    """A MovingAverageQuantizer in training takes the fast path on a tensor
    of any size (no FakeQuant gradient op in the backward graph); the
    gradient and the stored ranges are the op's."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow fast path")
    import tensorflow as tf

    from tfmot_lite.quantization.quantizers import MovingAverageQuantizer

    quantizer = MovingAverageQuantizer()
    for size in (8, 1 << 16):
        layer = keras.layers.Layer()
        weights = quantizer.build((size,), "act", layer)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = quantizer(x, True, weights)
            return tape.gradient(y, x)

        x = tf.constant(np.linspace(-3.0, 2.0, size, dtype="float32"))
        ops_run = {op.type for op in step.get_concrete_function(x).graph.get_operations()}
        assert "FakeQuantWithMinMaxVarsGradient" not in ops_run
        assert "QuantizeAndDequantizeV4Grad" in ops_run
        gradient = step(x).numpy()
        np.testing.assert_array_equal(gradient, np.ones(size, "float32"))
        assert weights["min_var"].numpy() == -3.0 and weights["max_var"].numpy() == 2.0


def test_high_mul_in_int64_is_gemmlowps_and_the_int32_form(monkeypatch):
    """TensorFlow's int64 `SaturatingRoundingDoublingHighMul` gives the
    integers of gemmlowp's (Python ints) and of the int32-limb form the
    other backends run, at the ends of both ranges and where the nudge
    decides. (The int32 form takes `|a|`, so not `a = -2**31`, whose
    magnitude int32 cannot hold: no kernel's operand reaches it.)"""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow fast path")
    from tfmot_lite.quantization import kernel_arithmetic

    rng = np.random.default_rng(0)
    ends = [0, 1, -1, 2 ** 31 - 1, -2 ** 31, -(2 ** 31 - 1), 2 ** 30, -2 ** 30, 2 ** 16, -2 ** 16]
    a = np.concatenate([ends, rng.integers(-2 ** 31, 2 ** 31, 4000)]).astype("int32")
    for b in [0, 1, 2 ** 30, 2 ** 31 - 1, 1518500250, *rng.integers(0, 2 ** 31, 6)]:
        expected = [kernel_arithmetic._high_mul_reference(int(v), int(b)) for v in a]
        fast = keras.ops.convert_to_numpy(kernel_arithmetic._high_mul(a, np.int32(b)))
        with monkeypatch.context() as patch:
            patch.setattr(fast_ops, "high_mul_int64", lambda *args: None)
            limbs = keras.ops.convert_to_numpy(kernel_arithmetic._high_mul(a, np.int32(b)))
        np.testing.assert_array_equal(fast, expected)
        held = a != -2 ** 31
        np.testing.assert_array_equal(limbs[held], np.asarray(expected)[held])
