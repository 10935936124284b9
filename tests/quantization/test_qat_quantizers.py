"""Quantizer arithmetic against the formulas in their docstrings."""

import keras
import numpy as np
import pytest

from tfmot_lite.quantization.keras import quantizers


class Holder(keras.layers.Layer):
    pass


def _build(quantizer, shape):
    holder = Holder()
    return holder, quantizer.build(shape, "t", holder)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _reference(x, lo, hi, bits, narrow):
    """TF's FakeQuantWithMinMaxVars, with nudging, in numpy."""
    qmin, qmax = (1 if narrow else 0), 2**bits - 1
    scale = (hi - lo) / (qmax - qmin)
    zero = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    nlo, nhi = (qmin - zero) * scale, (qmax - zero) * scale
    return np.round((np.clip(x, nlo, nhi) - nlo) / scale) * scale + nlo


def test_last_value_symmetric_per_axis():
    x = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
    q = quantizers.LastValueQuantizer(8, per_axis=True, symmetric=True, narrow_range=True)
    _, w = _build(q, x.shape)
    out = _np(q(keras.ops.convert_to_tensor(x), True, w))
    m = np.abs(x).max(axis=(0, 1, 2))
    np.testing.assert_allclose(_np(w["max_var"]), m, rtol=1e-6)
    np.testing.assert_allclose(_np(w["min_var"]), -m, rtol=1e-6)
    levels = out / (m / 127)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    np.testing.assert_allclose(out, _reference(x, -m, m, 8, True), atol=1e-5)


def test_moving_average_starts_at_first_batch_then_averages():
    q = quantizers.MovingAverageQuantizer(8, decay=0.9)
    _, w = _build(q, (4,))
    q(keras.ops.convert_to_tensor(np.array([0.5, 1.0, 2.0, 3.0], "float32")), True, w)
    assert _np(w["min_var"]) == 0.0  # widened to include 0
    assert _np(w["max_var"]) == pytest.approx(3.0)
    q(keras.ops.convert_to_tensor(np.array([-1.0, 1.0, 2.0, 13.0], "float32")), True, w)
    assert _np(w["max_var"]) == pytest.approx(0.9 * 3.0 + 0.1 * 13.0)
    assert _np(w["min_var"]) == pytest.approx(-0.1)
    x = np.linspace(-2, 6, 50).astype("float32")
    out = _np(q(keras.ops.convert_to_tensor(x), False, w))
    np.testing.assert_allclose(
        out, _reference(x, _np(w["min_var"]), _np(w["max_var"]), 8, False), atol=1e-5
    )


def test_all_values_and_fixed():
    q = quantizers.AllValuesQuantizer(8)
    _, w = _build(q, (3,))
    q(keras.ops.convert_to_tensor(np.array([-1.0, 0.0, 2.0], "float32")), True, w)
    q(keras.ops.convert_to_tensor(np.array([-0.5, 0.0, 4.0], "float32")), True, w)
    assert _np(w["min_var"]) == pytest.approx(-1.0)
    assert _np(w["max_var"]) == pytest.approx(4.0)
    fixed = quantizers.FixedQuantizer(num_bits=8, init_min=0.0, init_max=6.0)
    x = np.array([-1.0, 0.01, 3.0, 7.0], "float32")
    out = _np(fixed(keras.ops.convert_to_tensor(x), False, fixed.build(x.shape, "f", Holder())))
    np.testing.assert_allclose(out, _reference(x, 0.0, 6.0, 8, False), atol=1e-6)
    with pytest.raises(ValueError, match="contain 0"):
        quantizers.FixedQuantizer(init_min=1.0, init_max=2.0)


def test_quantizers_serialize():
    for q in [
        quantizers.LastValueQuantizer(4, True, True, True),
        quantizers.MovingAverageQuantizer(8, decay=0.99),
        quantizers.AllValuesQuantizer(7),
        quantizers.FixedQuantizer(8, -1.0, 1.0),
    ]:
        config = keras.saving.serialize_keras_object(q)
        assert keras.saving.deserialize_keras_object(config) == q


def test_straight_through_gradient():
    import tensorflow as tf

    q = quantizers.LastValueQuantizer(8, False, True, True)
    _, w = _build(q, (4,))
    x = tf.Variable([0.1, -0.2, 0.3, 0.05])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(q(x, True, w) * tf.constant([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [1.0, 2.0, 3.0, 4.0])


def test_nonnegative_hint_keeps_the_range_of_relu_outputs():
    """`nonnegative=True` (a ReLU's output) skips the minimum's reduction;
    ranges and outputs equal the unhinted quantizer's."""
    rng = np.random.default_rng(4)
    hinted, plain = (quantizers.MovingAverageQuantizer(8, decay=0.9) for _ in range(2))
    (_, wh), (_, wp) = _build(hinted, (2, 6)), _build(plain, (2, 6))
    for _ in range(3):
        x = keras.ops.convert_to_tensor(np.maximum(rng.normal(size=(2, 6)), 0).astype("float32"))
        out_h = hinted(x, True, wh, nonnegative=True)
        out_p = plain(x, True, wp)
        np.testing.assert_array_equal(_np(out_h), _np(out_p))
    for key in ("min_var", "max_var"):
        np.testing.assert_array_equal(_np(wh[key]), _np(wp[key]))


def test_relu_layers_quantize_their_output_with_the_hint(monkeypatch):
    from tfmot_lite.quantization.keras import quantize_model

    seen = []
    batch_range = quantizers.MovingAverageQuantizer._batch_range

    def spy(self, x, nonnegative=False, **kwargs):
        seen.append(nonnegative)
        return batch_range(self, x, nonnegative=nonnegative, **kwargs)

    monkeypatch.setattr(quantizers.MovingAverageQuantizer, "_batch_range", spy)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, activation="relu")(inputs)
    model = quantize_model(keras.Model(inputs, keras.layers.Dense(2)(x)))
    seen.clear()
    model(np.ones((1, 4), "float32"), training=True)
    # The input QuantizeLayer and the last Dense may be negative; the ReLU not.
    assert seen == [False, True, False]


@pytest.mark.parametrize("relu6", [False, True])
def test_quantize_relu_folds_the_relu_exactly(relu6):
    """Training: `quantize_relu(q, x)` skips the ReLU yet gives the values,
    input gradients and stored ranges of `q(relu(x))`, step after step
    (including batches whose maximum passes 6)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients compared with tf.GradientTape")
    import tensorflow as tf

    from tfmot_lite.quantization import quantizers as impl

    rng = np.random.default_rng(5)
    folded, plain = (quantizers.MovingAverageQuantizer(8, decay=0.5) for _ in range(2))
    (_, wf), (_, wp) = _build(folded, (4, 16)), _build(plain, (4, 16))
    act = tf.nn.relu6 if relu6 else tf.nn.relu
    for step in range(4):
        x = tf.constant(rng.normal(scale=2.0 + 2 * step, size=(4, 16)).astype("float32"))
        weights = tf.constant(rng.normal(size=(4, 16)).astype("float32"))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            out_f = impl.quantize_relu(folded, x, True, wf, relu6=relu6)
            out_p = plain(act(x), True, wp, nonnegative=True)
            loss_f, loss_p = (tf.reduce_sum(o * weights) for o in (out_f, out_p))
        np.testing.assert_array_equal(_np(out_f), _np(out_p))
        np.testing.assert_array_equal(_np(tape.gradient(loss_f, x)), _np(tape.gradient(loss_p, x)))
        for key in ("min_var", "max_var"):
            np.testing.assert_array_equal(_np(wf[key]), _np(wp[key]))
    # Inference runs the ReLU as written.
    x = tf.constant(rng.normal(scale=8.0, size=(4, 16)).astype("float32"))
    np.testing.assert_array_equal(
        _np(impl.quantize_relu(folded, x, False, wf, relu6=relu6)),
        _np(plain(act(x), False, wp)),
    )


@pytest.mark.parametrize("per_axis", [True, False])
def test_weight_quantized_over_its_own_range_has_the_identity_gradient(per_axis):
    """Training a symmetric narrow-range weight quantizer skips FakeQuant's
    gradient op: the values are FakeQuant's bit for bit and the gradient is
    FakeQuant's, which is the identity (no value lies outside `max|x|`)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients compared with tf.GradientTape")
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(6).normal(size=(3, 3, 4, 5)).astype("float32"))
    upstream = tf.constant(np.random.default_rng(7).normal(size=(3, 3, 4, 5)).astype("float32"))
    q = quantizers.LastValueQuantizer(8, per_axis=per_axis, symmetric=True, narrow_range=True)
    _, w = _build(q, x.shape)
    m = np.abs(x.numpy()).max(axis=(0, 1, 2) if per_axis else None)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got = q(x, True, w)
        op = (tf.quantization.fake_quant_with_min_max_vars_per_channel if per_axis
              else tf.quantization.fake_quant_with_min_max_vars)(
            x, -m, m, num_bits=8, narrow_range=True)
        losses = [tf.reduce_sum(t * upstream) for t in (got, op)]
    np.testing.assert_array_equal(got.numpy(), op.numpy())
    np.testing.assert_array_equal(tape.gradient(losses[0], x).numpy(),
                                  tape.gradient(losses[1], x).numpy())
    backward = tf.function(lambda v: tf.gradients(tf.reduce_sum(q(v, True, w)), v))
    types = {op.type for op in backward.get_concrete_function(tf.TensorSpec(x.shape))
             .graph.get_operations()}
    assert any(t.startswith("FakeQuant") for t in types)
    assert not any(t.startswith("FakeQuant") and t.endswith("Gradient") for t in types)
