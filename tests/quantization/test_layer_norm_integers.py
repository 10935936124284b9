"""A QAT LayerNormalization computes, in inference, on the integers its
int8 ops compute with (`layer_norm._integer_chain`): MEAN, SUB and MUL as
XNNPACK computes them, RSQRT as LiteRT's own kernel
(`kernel_arithmetic.rsqrt_integers`). Its outputs are the .tflite's, ties
included."""

import keras
import numpy as np
import pytest

from tfmot_lite.quantization.kernel_arithmetic import rsqrt_integers
from test_integer_inference import _conv_bn, _flat_regions, _qat, _steps_off_xnnpack

L = keras.layers


def _rsqrt_model(low_in, high_in, low_out, high_out):
    """A .tflite of one int8 RSQRT from `[low_in, high_in]` into
    `[low_out, high_out]`, as the converter writes it."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 256], tf.float32)])
    def rsqrt(x):
        x = tf.quantization.fake_quant_with_min_max_args(x, low_in, high_in)
        return tf.quantization.fake_quant_with_min_max_args(tf.math.rsqrt(x), low_out, high_out)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [rsqrt.get_concrete_function()], rsqrt)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _rsqrt_on_the_wheel(ranges):
    """`(input less zero point, output step, output zero point, outputs)`
    of LiteRT's int8 RSQRT over every int8 input, run by the wheel."""
    from tfmot_lite.export.runtime import TFLiteModel

    interpreter = TFLiteModel(_rsqrt_model(*ranges), xnnpack=False).interpreter
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    in_step, in_zero = source["quantization"]
    out_step, out_zero = target["quantization"]
    stored = np.arange(-128, 128).clip(in_zero, 127).astype("int8")[None]
    interpreter.set_tensor(source["index"], stored)
    interpreter.invoke()
    value = stored[0].astype("int32") - in_zero
    return value, in_step, out_step, out_zero, interpreter.get_tensor(target["index"])[0]


def test_rsqrt_integers_are_litert_kernels():
    """Every int8 input of LiteRT's RSQRT kernel, run by the wheel, against
    `rsqrt_integers`. The last range is a LayerNorm's on flat patches: the
    inverse's range ends at the inverse of one variance step, so
    `255 / sqrt(v)` is a tie at v = 4, 36 and 100, which the kernel's
    fixed point sends up and exact rounding of `1 / sqrt(x)` here down."""
    float_misses = 0
    one_step = float(1 / np.sqrt(np.float32(7.0) / 255))
    for ranges in [(0.0, 9.0, 0.0, 1.6), (0.0, 0.02, 0.0, 40.0), (0.0, 250.0, 0.05, 0.9),
                   (0.0, 7.0, 0.0, one_step)]:
        value, in_step, out_step, out_zero, device = _rsqrt_on_the_wheel(ranges)
        ours = keras.ops.convert_to_numpy(rsqrt_integers(value.astype("float32"), in_step,
                                                         out_step))
        np.testing.assert_array_equal(np.clip(ours + out_zero, -128, 127), device, str(ranges))
        with np.errstate(divide="ignore"):
            exact = np.round(1 / np.sqrt(value * np.float64(in_step)) / out_step)
        float_misses += int(np.sum(np.clip(exact + out_zero, -128, 127) != device))
    assert float_misses > 0


def _after_residual(**options):
    """A LayerNormalization of a residual sum (ConvNeXt's downsampling
    blocks read one): the sum of flat regions lands on the ties."""
    def make(x):
        x = _conv_bn(x, padding="same")
        x = L.Add()([x, L.Conv2D(16, 1)(x)])
        return L.LayerNormalization(epsilon=1e-6, name="norm", **options)(x)
    return make


def _convnext_downsampling(x):
    """ConvNeXt's stage end: the block's raw `inputs + x` (a
    `QuantizeOperation`), then the downsampling block, a Sequential of a
    LayerNormalization and a strided Conv2D, then the next stage's
    depthwise convolution."""
    x = _conv_bn(x, padding="same")
    x = x + L.Activation("linear")(L.Conv2D(16, 1)(x))
    down = keras.Sequential([L.LayerNormalization(epsilon=1e-6, name="norm"),
                             L.Conv2D(8, 2, strides=2)], name="downsampling")
    return L.DepthwiseConv2D(3, padding="same")(down(x))


# name: (layers, seed, whether gamma and beta are drawn as a trained layer's)
_CASES = {
    # Fresh gamma and beta (ones, zeros): the converter folds their MUL and
    # ADD away, and the normalized product rounds into the output's range.
    "fresh": (_after_residual(), 1, False),
    "trained": (_after_residual(), 3, True),
    "trained_no_beta": (_after_residual(center=False), 3, True),
    "trained_no_gamma": (_after_residual(scale=False), 1, True),
    "before_a_strided_conv": (lambda x: L.Conv2D(8, 2, strides=2)(_after_residual()(x)), 3, True),
    # The LayerNorm finds its input's range through the raw add's
    # (`QuantizeOperation.output_range`) and the nested model's link.
    "convnext_downsampling": (_convnext_downsampling, 1, False),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_a_layer_norm_computes_on_the_devices_integers(case, tmp_path):
    """Before it computed on integers the float chain put a step off the
    .tflite's (XNNPACK, LiteRT's RSQRT): 22,624 of 1,048,576 outputs
    (fresh: the RSQRT's ties), 181 up to 10 steps off (trained, and with no
    beta: the SUB's ties, which the division by a small deviation
    multiplies), 22,763 (no gamma), 77 of 131,072 (before a strided
    conv), and, once it did, 12,442 of 131,072 where the LayerNorm's input
    is a raw add's, whose range it did not find (ConvNeXt's downsampling
    blocks)."""
    make, seed, trained = _CASES[case]
    x = _flat_regions(np.random.default_rng(seed), 256, 16, 3)
    qat = _qat(make, (16, 16, 3), x, seed=seed)
    if trained:
        norm = qat.get_layer("quant_norm").layer
        rng = np.random.default_rng(seed)
        for weight in norm.weights:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape) if weight is norm.gamma
                          else rng.normal(0, 0.3, weight.shape))
        for k in range(0, len(x), 64):
            qat(x[k:k + 64], training=True)
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size, float(steps.max()))
