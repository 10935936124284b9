"""Biases as the int8 .tflite adds them, which the QAT model adds so in
inference: a convolution's or fully connected layer's as an int32 in units
of input step times kernel step (`Borrowed.bias_integers`,
`input_range.BorrowsInputRange`); a matmul's over a sequence, which the
converter adds in an ADD after a RESHAPE, and a LayerNormalization's beta,
as an int8 constant on its own range (`quantizers.fake_quant_constant`,
`inside.projection_call`, `layer_norm.layer_norm_call`)."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization.input_range import Borrowed
from tfmot_lite.quantization.integer_grid import symmetric_scale

L = keras.layers


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _random_statistics(model, rng):
    """Biases and BatchNorm statistics a trained model might have (a fresh
    layer's zero bias is on every grid)."""
    for weight in model.weights:
        if weight.path.endswith("bias"):
            weight.assign(rng.normal(0, 0.3, weight.shape))
    for layer in model.layers:
        if isinstance(layer, L.LayerNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.3, layer.beta.shape))
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(0, 0.3, c))
            layer.moving_mean.assign(rng.normal(0, 0.3, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))


def _calibrated_qat(shape, make, seed=0):
    """`make()`: the function of the model's input to quantize; its layers
    are made after seeding (an initializer draws its seed when made)."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    model = keras.Model(inputs, make()(inputs))
    _random_statistics(model, rng)
    x = rng.normal(size=(256,) + shape).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(model)
    for k in range(0, 256, 64):
        qat(x[k:k + 64], training=True)  # the ranges follow the batches
    return qat, x


def _chain(*layers):
    def make(x):
        for layer in layers:
            x = layer(x)
        return x
    return make


# The int32 bias: few inputs per output (1x1 kernels on three channels)
# make its step a sizable part of the output's; the float bias put
# 0.05-0.13% of the outputs a step off XNNPACK's. The int8 ADD bias after a
# matmul over a sequence: 1.6-7% (both measured before the rounding).
@pytest.mark.parametrize("shape,make", [
    ((8, 8, 3), lambda: _chain(L.Conv2D(16, 1))),
    ((8, 8, 3), lambda: _chain(L.Conv2D(16, 1, use_bias=False), L.BatchNormalization())),
    ((8, 8, 3), lambda: _chain(L.DepthwiseConv2D(3, use_bias=False), L.BatchNormalization())),
    ((12, 3), lambda: _chain(L.Conv1D(16, 1))),
    ((8, 8, 3), lambda: _chain(L.SeparableConv2D(16, 3))),
    ((5, 3), lambda: _chain(L.Dense(16))),
    ((5, 16), lambda: _chain(L.Dense(8, activation="gelu"))),
    ((5, 16), lambda: _chain(
        L.EinsumDense("abc,cd->abd", output_shape=(None, 8), bias_axes="d"))),
], ids=["conv", "conv_bn", "depthwise_bn", "conv1d", "separable", "dense_sequence",
        "dense_sequence_gelu", "einsum_dense"])
def test_outputs_land_on_xnnpacks_integers(shape, make, tmp_path):
    # What is left is float32 rounding near a tie (about 3 in 100,000).
    steps = _steps_off_xnnpack(*_calibrated_qat(shape, make), tmp_path)
    assert np.mean(steps > 0.5) < 1e-4 and steps.max() < 1.01, (
        np.sum(steps > 0.5), steps.size)


@pytest.mark.parametrize("shape,make", [
    ((5, 6), lambda: _chain(L.Dense(16), L.LayerNormalization())),
    ((8, 8, 3), lambda: _chain(L.Conv2D(16, 3, padding="same"), L.LayerNormalization())),
], ids=["sequence", "channels"])
def test_layer_norm_adds_beta_as_stored(shape, make, tmp_path):
    """LayerNormalization's last op is an ADD of beta, which the converter
    stores as an int8 constant on its own range: with the float beta, 2.5-3.4%
    of these outputs were a step off XNNPACK's. A tie in a row's variance
    moves its inverse std a step, and the row's outputs up to two."""
    steps = _steps_off_xnnpack(*_calibrated_qat(shape, make), tmp_path)
    assert np.mean(steps > 0.5) < 1e-4 and steps.max() < 2.01, (
        np.sum(steps > 0.5), steps.size)


def _steps_off_xnnpack(qat, x, tmp_path):
    from tfmot_lite.export.runtime import TFLiteModel

    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    xnnpack = TFLiteModel(path.read_bytes())
    return np.abs(np.asarray(qat(x, training=False)) - xnnpack.predict(x)) / (
        xnnpack.output["quantization"][0])


def test_attention_with_trained_biases(tmp_path):
    """Self-attention whose projections have biases: 45% of its outputs
    were off XNNPACK's (up to 3 steps) with float biases, 2.7% (up to 2)
    with the stored ones; the rest is the attention's own arithmetic."""
    steps = _steps_off_xnnpack(*_calibrated_qat(
        (5, 16), lambda: lambda x: L.MultiHeadAttention(2, 8)(x, x)), tmp_path)
    assert np.mean(steps > 0.5) < 0.05 and steps.max() < 2.01, (
        np.mean(steps > 0.5), steps.max())


def test_inference_adds_the_rounded_bias_and_saving_keeps_it(tmp_path, monkeypatch):
    qat, x = _calibrated_qat((8, 8, 3), lambda: L.Conv2D(16, 1, name="conv"))
    wrapper = qat.get_layer("quant_conv")
    assert wrapper.input_source is not None  # the QuantizeLayer's range
    float_bias = _numpy(wrapper.layer.bias)
    out = _numpy(qat(x, training=False))
    np.testing.assert_array_equal(_numpy(wrapper.layer.bias), float_bias)

    # The model computes what it computes holding the rounded bias ...
    _, kernel, quantizer, variables = wrapper._bias
    integers, step = wrapper.input_source.bias_integers(
        float_bias, quantizer.kernel_max_abs(kernel, variables))
    device = _numpy(integers * step)
    assert not np.array_equal(device, float_bias)
    wrapper.layer.bias.assign(device)
    np.testing.assert_array_equal(_numpy(qat(x, training=False)), out)
    wrapper.layer.bias.assign(float_bias)
    # ... and not what it computes adding the float bias (inference adds
    # the integers `bias_integers` rounds it to, test_integer_inference.py).
    def unrounded(self, bias, kernel_max_abs, num_bits=8, bits=32):
        step = self.scale() * symmetric_scale(kernel_max_abs, num_bits)
        return bias / step, step

    with monkeypatch.context() as patch:
        patch.setattr(Borrowed, "bias_integers", unrounded)
        assert not np.array_equal(_numpy(qat(x, training=False)), out)

    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("quant_conv").input_source is not None
    np.testing.assert_array_equal(_numpy(loaded(x, training=False)), out)


def _fresh_qat(shape, make, seed=0):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, make()(inputs)))
    x = rng.normal(size=(256,) + shape).astype("float32")
    for k in range(0, 256, 64):
        qat(x[k:k + 64], training=True)
    return qat, x


@pytest.mark.parametrize("shape,make", [
    ((16, 3), lambda: _chain(L.Dense(8, activation="relu"))),
    ((16, 8), lambda: _chain(L.LayerNormalization(), L.Dense(8, activation="relu"))),
], ids=["dense_sequence_relu", "layer_norm_dense_relu"])
def test_fresh_constants_the_converter_folds_away_round_nowhere(shape, make, tmp_path):
    """A fresh layer's zero bias or beta, or ones gamma: the converter folds
    the add (multiply) away, and with it the range before it, so the matmul
    (normalization) rounds once, into the next range. Inference skips that
    range too; it had rounded there first: 25-27% of the outputs a step or
    two off XNNPACK's."""
    steps = _steps_off_xnnpack(*_fresh_qat(shape, make), tmp_path)
    assert np.mean(steps > 0.5) < 5e-3 and steps.max() < 2.01, (
        np.mean(steps > 0.5), steps.max())


def test_a_traced_inference_rounds_again_once_the_bias_moves():
    """The skip is decided on the bias's value at each call: `predict`,
    traced while the bias was zero, rounds into the matmul's range once
    the bias is not (as the eager call, and the converter, then do)."""
    qat, x = _fresh_qat((16, 3), lambda: _chain(L.Dense(8, activation="relu")))
    dense = qat.layers[-1].layer
    before = qat.predict(x, verbose=0)
    np.testing.assert_allclose(before, _numpy(qat(x, training=False)))
    dense.bias.assign(np.full(8, 0.05, "float32"))
    after = qat.predict(x, verbose=0)
    np.testing.assert_allclose(after, _numpy(qat(x, training=False)), atol=1e-6)


def _keras_int32_biases(qat):
    """Each int32 bias the QAT model adds in inference, in graph order: a
    folded Conv-BatchNorm's and a wrapped kernel layer's, as integers."""
    from tfmot_lite.quantization.conv_bn_folding import QuantizeConvBatchNorm
    from tfmot_lite.quantization.integer_grid import KERNEL_MAX_ABS_FLOOR

    found = []
    for layer in qat.layers:
        if isinstance(layer, QuantizeConvBatchNorm):
            scale, bias = layer._folding()
            folded = layer._kernel(False) * layer._kernel_scale(scale)
            max_abs = keras.ops.maximum(layer._kernel_max_abs(folded), KERNEL_MAX_ABS_FLOOR)
            found.append(layer.input_source.bias_integers(bias, max_abs)[0])
        elif getattr(layer, "_bias", None) is not None:
            _, kernel, quantizer, variables = layer._bias
            found.append(layer.input_source.bias_integers(
                layer.layer.bias, quantizer.kernel_max_abs(kernel, variables))[0])
    return [_numpy(b).astype("int64") for b in found]


def _stored_int32_biases(path):
    """The int32 bias of each CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED of the .tflite at `path`, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [interpreter.get_tensor(op["inputs"][2]).astype("int64")
            for op in interpreter._get_ops_details()
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
            and len(op["inputs"]) > 2 and op["inputs"][2] >= 0
            and details[op["inputs"][2]]["dtype"] == np.int32]


def test_int32_biases_are_the_converters(tmp_path):
    """Every int32 bias the model adds in inference is the one the .tflite
    stores: `round(b / (S_in * S_w))` with the steps in double
    (`integer_grid.bias_integers`). Rounded over the float32 product of
    the float32 steps, 1 of these 712 channels was a step apart (and 1 of
    the 16 of a Conv-BN in another model, 47 of its outputs off
    XNNPACK's)."""
    def make():
        return _chain(
            L.Conv2D(64, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
            L.DepthwiseConv2D(3, padding="same", use_bias=False), L.BatchNormalization(),
            L.ReLU(), L.Conv2D(256, 1, use_bias=False), L.BatchNormalization(), L.ReLU(),
            L.Conv2D(128, 1), L.GlobalAveragePooling2D(), L.Dense(200))

    qat, x = _calibrated_qat((8, 8, 3), make)
    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    ours, stored = _keras_int32_biases(qat), _stored_int32_biases(path)
    assert [b.shape for b in ours] == [b.shape for b in stored]
    differ = sum(int(np.sum(a != b)) for a, b in zip(ours, stored))
    assert differ == 0, (differ, sum(b.size for b in stored))
