"""A folded Conv-BatchNorm computes on integers in inference, as the int8
kernel does (`QuantizeConvBatchNorm._integer_call`, `quantizers.requantize`):
its outputs are XNNPACK's, ties included. The float path (`fq(conv(x, w) +
b)`) lands within a few 10^-4 of a step of a tie, and an input with flat
regions repeats such a tie on every pixel of the region."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.input_range import BorrowsInputRange

L = keras.layers


def test_requantize_rounds_a_tie_to_even_and_clamps_fused_relus():
    # Range [-1, 1.55] over 255 steps: scale 0.01, zero point 100.
    low, high = -1.0, 1.55
    accumulator = np.array([0.5, 1.5, 2.5, -250.0, 1000.0], "float32")
    out = np.asarray(q.requantize(accumulator, 0.01, low, high)) / 0.01
    np.testing.assert_allclose(out, [0, 2, 2, -100, 155], atol=1e-4)
    relu = np.asarray(q.requantize(accumulator, 0.01, low, high, activation="relu")) / 0.01
    np.testing.assert_allclose(relu, [0, 2, 2, 0, 155], atol=1e-4)
    # ReLU6 caps at 6.0 where the range reaches past it.
    capped = np.asarray(q.requantize(np.array([900.0], "float32"), 0.01, 0.0, 10.0,
                                     activation="relu6"))
    assert abs(float(capped[0]) - 6.0) < 0.02, capped


def _flat_regions(rng, count, size, channels):
    """Images of 4x4 blocks of equal pixels (an upsampled low-resolution
    image): each block repeats its outputs, and with them any near tie. The
    pixels lie in [4, 5]: the BatchNorm subtracts a mean larger than what is
    left, and the float sums round the more for it."""
    small = 4.0 + rng.integers(0, 8, size=(count, size // 4, size // 4, channels)) / 7.0
    return np.repeat(np.repeat(small, 4, axis=1), 4, axis=2).astype("float32")


def _qat(make, shape, x, seed=0):
    """A QAT model of `make`, its BatchNorm statistics those of `x` under
    drawn gamma and beta (as a trained model's)."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    model = keras.Model(inputs, make(inputs))
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(0, 0.3, c))
            before = keras.Model(model.input, layer.input)(x)
            layer.moving_mean.assign(np.mean(before, axis=(0, 1, 2)))
            layer.moving_variance.assign(np.var(before, axis=(0, 1, 2)))
    qat = tfmot.quantization.keras.quantize_model(model)
    for k in range(0, len(x), 64):
        qat(x[k:k + 64], training=True)
    return qat


def _conv_bn(x, **kwargs):
    return L.BatchNormalization()(L.Conv2D(16, 3, use_bias=False, **kwargs)(x))


CASES = {
    "conv_bn": lambda x: _conv_bn(x, padding="same"),
    "strided_conv_bn": lambda x: _conv_bn(x, strides=2, padding="same"),
    "conv_bn_relu6": lambda x: L.ReLU(6.0)(_conv_bn(x, padding="same")),
    "depthwise_bn": lambda x: L.BatchNormalization()(
        L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)),
    # keras.applications' EfficientNets: a Normalization (its statistics
    # not adapted) becomes a Sequential, whose last range the conv reads.
    "normalization_then_conv_bn": lambda x: _conv_bn(
        L.Normalization(mean=0.0, variance=1.0)(x), padding="same"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_conv_batchnorm_outputs_are_xnnpacks_integers(name, tmp_path):
    from tfmot_lite.export.runtime import TFLiteModel

    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    qat = _qat(CASES[name], (16, 16, 3), x)
    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    xnnpack = TFLiteModel(path.read_bytes())
    steps = np.abs(np.asarray(qat(x, training=False)) - xnnpack.predict(x)) / (
        xnnpack.output["quantization"][0])
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def test_integer_path_differs_from_the_float_path_only_at_ties(monkeypatch):
    x = _flat_regions(np.random.default_rng(2), 128, 16, 3)
    qat = _qat(CASES["conv_bn"], (16, 16, 3), x)
    conv = [layer for layer in qat.layers if isinstance(layer, BorrowsInputRange)][0]
    assert conv.input_source is not None
    integer = np.asarray(qat(x, training=False))
    with monkeypatch.context() as patch:
        patch.setattr(BorrowsInputRange, "integer_input", lambda self, training: None)
        floating = np.asarray(qat(x, training=False))
    step = float(np.min(np.diff(np.unique(integer))))
    off = np.abs(integer - floating) / step
    assert off.max() < 1.01 and np.mean(off > 0.5) < 1e-3, (off.max(), np.mean(off > 0.5))
    # Training computes in float (the gradient's path), as before.
    np.testing.assert_allclose(np.asarray(qat(x[:8], training=True)).shape, integer[:8].shape)
