"""Convolutions and fully connected layers compute on integers in
inference, as their int8 kernels do (`QuantizeConvBatchNorm._integer_call`,
`QuantizeWrapper._integer_call`, `kernel_arithmetic.requantize`), with the scales
and int32 biases the converter stores (`integer_grid.range_scale`,
`integer_grid.range_bias_integers`): their outputs are XNNPACK's, ties included.
The float path (`fq(conv(x, w) + b)`) lands within a few 10^-4 of a step of
a tie, and an input with flat regions repeats such a tie on every pixel of
the region."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization.integer_grid import (
    bias_integers, integer_grid, range_bias_integers, range_scale, range_scale_error,
    stored_constant,
    symmetric_scale, symmetric_scale_error,
)
from tfmot_lite.quantization.kernel_arithmetic import hard_swish_integers, requantize
from tfmot_lite.quantization.input_range import BorrowsInputRange
from tflite_helpers import output_steps

L = keras.layers


def test_requantize_rounds_a_tie_to_even_and_clamps_fused_relus():
    # Range [-1, 1.55] over 255 steps: scale 0.01, zero point 100.
    low, high = -1.0, 1.55
    accumulator = np.array([0.5, 1.5, 2.5, -250.0, 1000.0], "float32")
    out = np.asarray(requantize(accumulator, 0.01, low, high)) / 0.01
    np.testing.assert_allclose(out, [0, 2, 2, -100, 155], atol=1e-4)
    relu = np.asarray(requantize(accumulator, 0.01, low, high, activation="relu")) / 0.01
    np.testing.assert_allclose(relu, [0, 2, 2, 0, 155], atol=1e-4)
    # ReLU6 caps at 6.0 where the range reaches past it.
    capped = np.asarray(requantize(np.array([900.0], "float32"), 0.01, 0.0, 10.0,
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
    drawn gamma and beta, its biases near minus the mean they are added to
    (as a trained model's)."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    model = keras.Model(inputs, make(inputs))
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None and not isinstance(
                layer, L.BatchNormalization):
            # A trained bias: near minus the mean of what it is added to.
            layer.bias.assign(np.zeros(layer.bias.shape))
            before = keras.ops.convert_to_numpy(keras.Model(model.input, layer.output)(x))
            axes = tuple(range(before.ndim - 1))
            layer.bias.assign(-np.mean(before, axis=axes) + rng.normal(0, 0.1, layer.bias.shape))
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


def _convnext_block(x):
    from keras.src.applications.convnext import LayerScale

    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.LayerNormalization(epsilon=1e-6)(y)
    y = L.Dense(32, activation="gelu")(y)
    y = L.Dense(16)(y)
    scale = LayerScale(1e-6, 16)
    y = scale(y)
    scale.gamma.assign(np.random.default_rng(7).uniform(-0.5, 0.5, 16))
    return x + L.Activation("linear")(y)


def _scaled_residual(x, scale, then=lambda y: y):
    """Inception-ResNet's residual, `CustomScaleLayer(scale)([x, up])`, up
    a biased 1x1 convolution of `x`, `then` applied, read by a 1x1
    convolution."""
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    x = L.ReLU()(_conv_bn(x, padding="same"))
    up = L.Conv2D(16, 1)(x)
    return L.Conv2D(8, 1)(then(CustomScaleLayer(scale)([x, up])))


CASES = {
    "conv_bn": lambda x: _conv_bn(x, padding="same"),
    "strided_conv_bn": lambda x: _conv_bn(x, strides=2, padding="same"),
    "conv_bn_relu6": lambda x: L.ReLU(6.0)(_conv_bn(x, padding="same")),
    "depthwise_bn": lambda x: L.BatchNormalization()(
        L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)),
    # keras.applications' EfficientNets: a Normalization (its statistics
    # not adapted) becomes a MUL and an ADD layer; the conv reads the ADD's range.
    "normalization_then_conv_bn": lambda x: _conv_bn(
        L.Normalization(mean=0.0, variance=1.0)(x), padding="same"),
    # The plain wrapper: a fused ReLU, a linear output, an activation
    # TFLite runs as its own op after a requantized input.
    "conv_relu": lambda x: L.Conv2D(16, 3, padding="same", activation="relu")(x),
    "conv_linear_conv_swish": lambda x: L.Conv2D(8, 1, activation="swish")(
        L.Conv2D(16, 3, padding="same")(x)),
    "conv_sigmoid": lambda x: L.Conv2D(16, 3, padding="same", activation="sigmoid")(x),
    "depthwise_relu6": lambda x: L.DepthwiseConv2D(3, padding="same", activation="relu6")(x),
    "conv1d_over_rows": lambda x: L.Conv1D(16, 3, padding="same")(
        L.Reshape((16, 48))(x)),
    # A RESHAPE comes between a Conv1D's CONV_2D and a ReLU layer after it:
    # no fused activation (`layer_kinds`' `fuses_relu`), the RELU on the
    # Conv1D's output range into its own.
    "conv1d_then_relu": lambda x: L.Conv1D(8, 1)(L.ReLU()(L.Conv1D(16, 3, padding="same")(
        L.Reshape((16, 48))(x)))),
    "dense_after_pooling": lambda x: L.Dense(10)(L.Dense(32, activation="relu")(
        L.Flatten()(L.AveragePooling2D(4)(x)))),
    # MobileNetV3's hard-swish, as LiteRT's int8 HARD_SWISH computes it.
    "conv_hard_swish": lambda x: L.Activation("hard_swish")(
        L.Conv2D(16, 3, padding="same")(x)),
    # An Inception-style Concatenate: the pooled input moved into the
    # output's range by the QUANTIZE the converter puts before it, as
    # XNNPACK's 8-bit fixed-point convert computes it (1049 of 2,560
    # logits a step or more off before); the convolutions' outputs have no
    # range of their own and are rounded straight into the output's.
    "inception_concat": lambda x: L.Dense(10)(L.GlobalAveragePooling2D()(L.Concatenate()([
        L.ReLU()(_conv_bn(x, padding="same")),
        L.AveragePooling2D(3, strides=1, padding="same")(x)]))),
    # MobileNetV3's hard sigmoid, `ReLU(6.0)(x + 3.0)`: TFLite's ADD fuses
    # the ReLU6 and rounds once, into its range; the raw `+ 3.0` had
    # rounded first into a wide range of its own.
    "hard_sigmoid": lambda x: L.ReLU(6.0)(L.Conv2D(
        16, 3, padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(x) + 3.0),
    # A residual Add, as XNNPACK's fixed-point ADD sums (a tie up).
    "residual_add": lambda x: L.Add()([
        L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(_conv_bn(x, padding="same"))),
        _conv_bn(x, padding="same")]),
    # A Dense over pixels (ConvNeXt's pointwise layers): FULLY_CONNECTED
    # without its bias, then an int8 ADD of the bias as stored
    # (`inside._integer_projection`); the second Dense reads a GELU.
    "dense_over_pixels": lambda x: L.Dense(16)(L.ReLU()(_conv_bn(x, padding="same"))),
    "dense_gelu_dense_over_pixels": lambda x: L.Dense(8)(L.Dense(32, activation="gelu")(
        L.ReLU()(_conv_bn(x, padding="same")))),
    # Inception-ResNet's scaled residual: MUL by the constant, then ADD;
    # with a scale of one (its last block) the converter folds the MUL
    # away and the convolution writes into one range, where the Keras model
    # had rounded it into a second (the product's).
    "scaled_residual": lambda x: _scaled_residual(x, 0.17),
    "scaled_residual_of_one": lambda x: _scaled_residual(x, 1.0),
    # Ops that own no range and write that of the one layer reading them
    # (`BorrowsInputRange.reader_range`): a ReLU layer after a linear
    # convolution or an Add, whose op fuses it; convolutions joined by a
    # Concatenate, whose scale they write (DenseNet's and Inception's
    # branches).
    "conv_then_relu_layer": lambda x: L.Conv2D(8, 1)(L.ReLU()(
        L.Conv2D(16, 3, padding="same")(x))),
    "add_then_relu6": lambda x: L.Conv2D(8, 1)(L.ReLU(6.0)(L.Add()([
        L.ReLU()(_conv_bn(x, padding="same")), _conv_bn(x, padding="same")]))),
    "convolutions_into_a_concatenation": lambda x: L.Concatenate()([
        L.Conv2D(8, 1)(L.ReLU()(_conv_bn(x, padding="same"))),
        L.ReLU()(_conv_bn(x, padding="same"))]),
    # A Dense over pixels: its bias's ADD takes the ReLU layer after it
    # (220,073 of these 524,288 outputs had been off, the ReLU's rounded
    # twice), or writes the scale of the Concatenate it feeds.
    "dense_then_relu_layer_over_pixels": lambda x: L.Dense(8)(L.ReLU()(L.Dense(32)(
        L.ReLU()(_conv_bn(x, padding="same"))))),
    "dense_over_pixels_into_a_concatenation": lambda x: L.Concatenate()([
        L.Dense(8)(L.ReLU()(_conv_bn(x, padding="same"))),
        L.ReLU()(_conv_bn(x, padding="same"))]),
}




@pytest.mark.parametrize("name", list(CASES))
def test_outputs_are_xnnpacks_integers(name, tmp_path):
    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    steps = _steps_off_xnnpack(_qat(CASES[name], (16, 16, 3), x), x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def test_an_inception_resnet_block_sums_into_its_relus_range(tmp_path):
    """Inception-ResNet's `Activation("relu")(CustomScaleLayer(0.17)(...))`:
    the ADD fuses the ReLU, so the scaled residual owns no range and sums
    into the ReLU's (`BorrowsInputRange.reader_range`). It had summed in
    float: 12 of these outputs a step off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    make = lambda t: _scaled_residual(t, 0.17, L.Activation("relu"))  # noqa: E731
    qat = _qat(make, (16, 16, 3), x, seed=1)
    (block,) = [layer for layer in qat.layers if "custom_scale" in layer.name]
    assert block.output_range() is None and block.reader_range() is not None
    loaded = _on_xnnpack_and_saved(qat, x, tmp_path)
    assert loaded.get_layer(block.name).reader_range() is not None


def _batch_norm_alone(activation):
    """A standalone BatchNormalization (DenseNet's after a concatenation:
    a MUL and an ADD, no convolution before it to fold into) on 64
    channels of a DepthwiseConv-ReLU, then `activation`."""

    def make(x):
        x = L.ReLU()(L.DepthwiseConv2D(1)(x))
        y = L.BatchNormalization(epsilon=1.001e-5)(x)
        return y if activation is None else L.Activation(activation)(y)

    return make


@pytest.mark.parametrize("activation", ["relu", None])
def test_a_standalone_batch_norm_computes_its_mul_and_add_on_integers(activation, tmp_path):
    """The MUL by the folded scale into its own range, then XNNPACK's ADD
    of the folded offset into the output's, or the ReLU's the ADD fuses
    (`integer_inference.batch_norm_call`). In float, 440 of these
    1,048,576 outputs with the ReLU (in three channels) and 1,031 without
    had been up to three steps off XNNPACK's."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.2, 3.0, (256, 8, 8, 64)).astype("float32")
    qat = _qat(_batch_norm_alone(activation), (8, 8, 64), x, seed=2)
    # The inputs on the input's int8 grid: how a float input rounds at the
    # model's edge is not this layer's.
    x = np.asarray(keras.Model(qat.input, qat.layers[1].output)(x))
    (bn,) = [layer for layer in qat.layers if "batch_norm" in layer.name]
    assert bn.input_source is not None
    assert (bn.output_range() is None) == (activation == "relu")
    _on_xnnpack_and_saved(qat, x, tmp_path)


def _squeeze_excite(x):
    """EfficientNet's squeeze-and-excite after a Conv-BN-swish, then its
    projection: a MEAN, two 1x1 convolutions, a MUL by the sigmoid gate."""
    x = L.Activation("swish")(_conv_bn(x, padding="same"))
    gate = L.Reshape((1, 1, 16))(L.GlobalAveragePooling2D()(x))
    gate = L.Conv2D(16, 1, activation="sigmoid")(L.Conv2D(4, 1, activation="swish")(gate))
    return L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(L.Multiply()([x, gate])))


def test_a_squeeze_and_excite_block_computes_on_integers(tmp_path):
    """Every output XNNPACK's, through the MEAN, the gate and the MUL on
    integers. (With the float MEAN, a probe that had built three other
    models in the same process first put 106 of these outputs a step off:
    0.02% of the mean's outputs, spread by the gate; in a fresh process this
    seed lands on XNNPACK's either way.)"""
    x = _flat_regions(np.random.default_rng(2), 256, 16, 3)
    steps = _steps_off_xnnpack(_qat(_squeeze_excite, (16, 16, 3), x, seed=2), x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def test_a_layer_scale_multiplies_by_gamma_as_stored(tmp_path):
    """ConvNeXt's LayerScale, `x * gamma`: the .tflite's MUL reads gamma
    as the int8 constant the converter stores. The float `gamma` had put
    26,028 of these 1,048,576 outputs a step off XNNPACK's."""
    from keras.src.applications.convnext import LayerScale

    def make(x):
        scale = LayerScale(1e-6, 16)
        y = scale(_conv_bn(x, padding="same"))
        scale.gamma.assign(np.random.default_rng(7).uniform(-0.5, 1.0, 16))
        return y

    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    steps = _steps_off_xnnpack(_qat(make, (16, 16, 3), x, seed=1), x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def test_a_convnext_block_computes_on_integers(tmp_path):
    """A ConvNeXt block after a Conv-BN: depthwise, LayerNorm, Dense-GELU,
    Dense, LayerScale, then `x + Activation("linear")(y)`. The linear
    identity is no op in the .tflite (the converter folds a range after it
    into the LayerScale's MUL, which rounds once); it had a range of its
    own, and the Keras model rounded twice: 220 of 1,048,576 outputs a
    step off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    make = lambda t: _convnext_block(_conv_bn(t, padding="same"))  # noqa: E731
    steps = _steps_off_xnnpack(_qat(make, (16, 16, 3), x, seed=1), x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def test_a_separable_convolution_computes_both_halves_on_integers(tmp_path):
    """Xception's SeparableConv2D-BatchNorm-ReLU: the layout splits it into
    the DEPTHWISE_CONV_2D and 1x1 CONV_2D the converter emits, as layers of
    the graph itself, so the depthwise half finds the range of the tensor
    it reads. Inside a nested Sequential it saw that model's own Input,
    found none and kept the float simulation: 29 of these outputs a step
    or two off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(2), 256, 16, 3)
    qat = _qat(lambda x: L.ReLU()(L.BatchNormalization()(L.SeparableConv2D(
        24, 3, padding="same", use_bias=False, name="sep")(L.ReLU()(
            _conv_bn(x, padding="same"))))), (16, 16, 3), x)
    depthwise = qat.get_layer("quant_sep_depthwise")
    assert depthwise.input_source is not None
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def _nested_stem(x):
    """A Conv-BN-ReLU nested as a Sequential (as ConvNeXt's stem is), read
    by a 1x1 convolution."""
    x = L.ReLU()(_conv_bn(x, padding="same"))
    rng = np.random.default_rng(5)
    bn = L.BatchNormalization(name="inner_bn")
    stem = keras.Sequential([keras.Input(x.shape[1:]), L.Conv2D(
        24, 3, padding="same", use_bias=False, name="inner_conv"), bn, L.ReLU()], name="stem")
    bn.gamma.assign(rng.uniform(0.5, 1.5, 24))
    bn.beta.assign(rng.normal(0, 0.3, 24))
    bn.moving_mean.assign(rng.normal(0, 1.0, 24))
    bn.moving_variance.assign(rng.uniform(0.5, 3.0, 24))
    return L.Conv2D(8, 1)(stem(x))


def test_a_model_the_user_nested_reads_the_range_it_is_called_on(tmp_path):
    """The first layer of a nested model sees that model's own Input when
    the model is built; it borrows the range of the tensor the outer graph
    passes in (`input_range.link_nested_inputs`), also after loading. It had
    kept the float simulation: 194 of these outputs a step off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(2), 256, 16, 3)
    qat = _qat(_nested_stem, (16, 16, 3), x)
    assert qat.get_layer("stem").get_layer("quant_inner_conv").input_source is not None
    loaded = _on_xnnpack_and_saved(qat, x, tmp_path)
    assert loaded.get_layer("stem").get_layer("quant_inner_conv").input_source is not None


def _nested_residual(x):
    """A residual block nested as a Functional model (its Add reads the
    block's own Input), read by a 1x1 convolution."""
    x = L.ReLU()(_conv_bn(x, padding="same"))
    inner = keras.Input(x.shape[1:])
    y = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(inner))
    block = keras.Model(inner, L.Add(name="inner_add")([inner, y]), name="block")
    return L.Conv2D(8, 1)(block(x))


def test_a_merge_inside_a_nested_model_reads_the_range_it_is_called_on(tmp_path):
    """The Add of a nested residual block finds the range of the tensor
    the outer graph passes in for the operand that is the block's Input,
    also after loading. It had kept the float sum: 15 of these outputs a
    step off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    qat = _qat(_nested_residual, (16, 16, 3), x, seed=1)
    assert None not in qat.get_layer("block").get_layer("quant_inner_add").input_sources
    loaded = _on_xnnpack_and_saved(qat, x, tmp_path)
    assert None not in loaded.get_layer("block").get_layer("quant_inner_add").input_sources


def _nested_at_the_end(x):
    """ConvNeXt's downsampling (a LayerNorm and a strided convolution, nested)
    as the last layer of the graph, after a residual Add."""
    x = _conv_bn(x, padding="same")
    x = L.Add()([x, L.Conv2D(16, 1)(x)])
    down = keras.Sequential([L.LayerNormalization(epsilon=1e-6, name="inner_norm"),
                             L.Conv2D(8, 2, strides=2)], name="down")
    return down(x)


@pytest.mark.slow  # over 5 s: a predict and a save, load and predict
def test_a_nested_model_that_ends_the_graph_reads_the_range_it_is_called_on(tmp_path):
    """No layer after the nested model walks back into it, so its
    LayerNorm is linked on the first call (`input_range.link_models_in_call`),
    also after loading. It had kept the float chain: 8,978 of these outputs
    up to 3 steps off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(1), 256, 16, 3)
    qat = _qat(_nested_at_the_end, (16, 16, 3), x, seed=1)
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)
    assert qat.get_layer("down").get_layer("quant_inner_norm").input_source is not None
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(loaded.predict(x, verbose=0)),
                                  np.asarray(qat.predict(x, verbose=0)))


def _nested_two_inputs(x):
    """A block nested as a Functional model of two inputs on two ranges
    and two outputs: its Add reads the first input, its convolution the
    second; a convolution after it reads each output."""
    a = L.ReLU()(_conv_bn(x, padding="same"))
    b = _conv_bn(x, padding="same")
    first, second = keras.Input(a.shape[1:]), keras.Input(b.shape[1:])
    y = L.Conv2D(16, 1, name="inner_conv")(second)
    block = keras.Model([first, second], [L.Add(name="inner_add")([first, y]), y],
                        name="block")
    total, y = block([a, b])
    return L.Add()([L.Conv2D(8, 1, name="after_add")(total),
                    L.Conv2D(8, 1, name="after_conv")(y)])


def test_a_nested_model_of_two_inputs_reads_the_range_of_each(tmp_path):
    """Each of the nested model's inputs is linked to the range the outer
    graph passes in at its place, and a layer after it reads the range of
    the output it takes, also after loading. Neither had been: 671 of these
    outputs up to 2 steps off XNNPACK's."""
    x = _flat_regions(np.random.default_rng(4), 256, 16, 3)
    qat = _qat(_nested_two_inputs, (16, 16, 3), x, seed=4)
    block = qat.get_layer("block")
    add_sources = block.get_layer("quant_inner_add").input_sources
    conv_source = block.get_layer("quant_inner_conv").input_source
    assert None not in add_sources and conv_source is not None
    assert conv_source.weights["min_var"] is not add_sources[0].weights["min_var"]
    after_add = qat.get_layer("quant_after_add").input_source
    after_conv = qat.get_layer("quant_after_conv").input_source
    assert after_add is not None and after_conv is not None
    assert after_add.weights["min_var"] is not after_conv.weights["min_var"]
    loaded = _on_xnnpack_and_saved(qat, x, tmp_path)
    assert loaded.get_layer("block").get_layer("quant_inner_conv").input_source is not None


def test_a_nested_model_called_on_two_ranges_borrows_neither():
    inputs = keras.Input((8, 8, 3))
    shared = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(4, 1, name="inner")],
                              name="shared")
    a = shared(L.Conv2D(4, 1, name="a")(inputs))
    b = shared(L.ReLU(name="relu")(L.Conv2D(4, 1, name="b")(inputs)))
    model = keras.Model(inputs, L.Conv2D(2, 1, name="out")(L.Add()([a, b])))
    qat = tfmot.quantization.keras.quantize_model(model)
    assert qat.get_layer("shared").get_layer("quant_inner").input_source is None


def test_a_raw_add_before_a_fused_relu6_rounds_once(tmp_path):
    """MobileNetV3's `ReLU(6.0)(x + 3.0)`: the raw add keeps no range of
    its own (TFLite's ADD fuses the ReLU6), saves and loads so, and the
    model computes the same after loading."""
    from tfmot_lite.quantization.wrapper import QuantizeOperation

    x = _flat_regions(np.random.default_rng(3), 64, 16, 3)
    qat = _qat(CASES["hard_sigmoid"], (16, 16, 3), x)
    (add,) = [layer for layer in qat.layers if isinstance(layer, QuantizeOperation)]
    assert not add.quantize_output and not add.weights
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    (add,) = [layer for layer in loaded.layers if isinstance(layer, QuantizeOperation)]
    assert not add.quantize_output and add.constants == [[1, 3.0]]
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(qat(x, training=False)))


def _on_xnnpack_and_saved(qat, x, tmp_path):
    """Asserts every output of `qat` on `x` is XNNPACK's, and that the
    model saved and loaded computes the same; returns the loaded model."""
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(qat(x, training=False)))
    return loaded


def _steps_off_xnnpack(qat, x, tmp_path):
    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    return output_steps(qat, path, x)


def test_integer_path_differs_from_the_float_path_only_at_ties(monkeypatch):
    x = _flat_regions(np.random.default_rng(2), 128, 16, 3)
    qat = _qat(CASES["conv_bn"], (16, 16, 3), x)
    conv = [layer for layer in qat.layers if isinstance(layer, BorrowsInputRange)][0]
    assert conv.input_source is not None
    integer = np.asarray(qat(x, training=False))
    with monkeypatch.context() as patch:
        patch.setattr(BorrowsInputRange, "integer_input", lambda self, training, layer: None)
        floating = np.asarray(qat(x, training=False))
    step = float(np.min(np.diff(np.unique(integer))))
    off = np.abs(integer - floating) / step
    assert off.max() < 1.01 and np.mean(off > 0.5) < 1e-3, (off.max(), np.mean(off > 0.5))
    # Training computes in float (the gradient's path), as before.
    np.testing.assert_allclose(np.asarray(qat(x[:8], training=True)).shape, integer[:8].shape)


def test_range_scale_is_the_converters():
    """(max - min) / 255 rounded once, as the converter computes it in
    double: float32 arithmetic rounds twice and misses on about a quarter
    of ranges (an ulp: the requantization of a tie reads it)."""
    rng = np.random.default_rng(0)
    lows = -np.abs(rng.normal(size=4000) * 10.0 ** rng.uniform(-4, 2, 4000)).astype("float32")
    highs = np.abs(rng.normal(size=4000) * 10.0 ** rng.uniform(-4, 2, 4000)).astype("float32")
    for bits, narrow in ((8, False), (8, True), (16, False)):
        levels = 2 ** bits - 1 - narrow
        converter = ((highs.astype("float64") - lows.astype("float64")) / levels).astype("float32")
        ours = keras.ops.convert_to_numpy(range_scale(lows, highs, bits, narrow))
        np.testing.assert_array_equal(ours, converter)
        assert np.mean((highs - lows) / np.float32(levels) != converter) > 0.1


def test_range_scale_survives_graph_optimization():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    lows = -rng.uniform(0.001, 5, 1000).astype("float32")
    highs = rng.uniform(0.001, 50, 1000).astype("float32")
    converter = ((highs.astype("float64") - lows.astype("float64")) / 255).astype("float32")
    traced = tf.function(lambda a, b: range_scale(a, b), jit_compile=False)
    np.testing.assert_array_equal(traced(lows, highs).numpy(), converter)


def test_bias_integers_round_the_converters_double_quotient():
    """The converter's int32 bias is `round(b / (S_in * S_w))` in double, a
    half away from zero, `S_in = (max - min) / 255` and `S_w = max|w| / 127`
    the steps in double (not the float32 scales the .tflite stores, nor
    their float32 product); a float32 quotient of a few thousand steps
    misses a near half, and the float32 steps a bias of 10^5 steps."""
    rng = np.random.default_rng(0)
    n = 20000
    low = -rng.uniform(0.0, 4.0, n).astype("float32")
    high = rng.uniform(0.5, 8.0, n).astype("float32")
    max_abs = rng.uniform(1e-3, 2.0, n).astype("float32")
    input_step = ((high.astype("float64") - low) / 255).astype("float32")
    kernel_step = (max_abs.astype("float64") / 127).astype("float32")
    bias = (rng.normal(0, 1e5, n) * input_step * kernel_step).astype("float32")
    quotient = bias.astype("float64") / (((high.astype("float64") - low) / 255)
                                         * (max_abs.astype("float64") / 127))
    exact = np.sign(quotient) * np.floor(np.abs(quotient) + 0.5)
    ours = keras.ops.convert_to_numpy(bias_integers(
        bias, range_scale(low, high), symmetric_scale(max_abs), 32,
        range_scale_error(low, high), symmetric_scale_error(max_abs)))
    np.testing.assert_array_equal(ours, exact)
    # The float32 product of the stored scales, divided exactly, misses.
    stored = (input_step * kernel_step).astype("float64")
    rounded = np.sign(bias / stored) * np.floor(np.abs(bias / stored) + 0.5)
    assert np.sum(rounded != exact) > 0
    # A tie goes away from zero.
    tie = np.array([2.5, -2.5], "float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(bias_integers(tie, 1.0, 1.0)), [3.0, -3.0])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(bias_integers(bias[:3], 0.0, kernel_step[:3])), 0.0)
    # What a layer calls: the same integers, in double on TensorFlow.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(
        range_bias_integers(bias, low, high, max_abs)), exact)
    one_step = (np.float32(0.0), np.float32(255.0), np.float32(127.0))  # S_in = S_w = 1
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(range_bias_integers(tie, *one_step)), [3.0, -3.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(
        range_bias_integers(bias[:3], np.float32(0.0), np.float32(0.0), max_abs[:3])), 0.0)


def _near_half_steps(rng, count):
    """A constant vector over `[min(v, 0), max(v, 0)]` whose entries lie a
    few ulps from a half step of that range's grid."""
    low, high = np.float32(-rng.lognormal(0, 2)), np.float32(rng.lognormal(0, 2))
    step = (high - low) / np.float32(255)
    half = ((rng.integers(-255, 255, count) + 0.5) * step).astype("float32")
    half += (rng.integers(-4, 5, count) * np.spacing(half)).astype("float32")
    return np.concatenate([[low, high], half[(half > low) & (half < high)]]).astype("float32")


def test_stored_constants_are_tensorflows_fake_quant():
    """A standalone BatchNorm's scale and offset (and every constant MUL or
    ADD operand) are stored as TensorFlow's FakeQuant kernel rounds them,
    which the graph folds before the converter reads them: on values a few
    ulps from a half step, `round(v / step)` puts one to three in a hundred
    on the other side."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    missed = 0
    for _ in range(50):
        v = _near_half_steps(rng, 2000)
        low, high = min(v.min(), 0.0), max(v.max(), 0.0)
        folded = tf.quantization.fake_quant_with_min_max_vars(v, low, high).numpy()
        step = keras.ops.convert_to_numpy(range_scale(low, high))
        ours, ours_step = stored_constant(v)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), np.round(folded / step))
        assert keras.ops.convert_to_numpy(ours_step) == step
        missed += int(np.sum(np.round(v / step) != np.round(folded / step)))
    assert missed > 100
    zeros, _ = stored_constant(np.zeros(4, "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(zeros), 0.0)


def test_a_batch_norm_offset_a_few_ulps_from_a_half_step_is_stored_as_tensorflow_rounds_it(
        tmp_path):
    """ResNet50V2's pre-activation BatchNorm-ReLUs: one channel's folded
    offset -11.499996 steps, stored as -12 (TensorFlow's FakeQuant), had put
    that channel's outputs a step off XNNPACK's. Here one channel's beta is
    moved until its folded offset lies where the two roundings differ."""
    import tensorflow as tf
    from tfmot_lite.quantization.conv_bn_folding import batch_norm_folding

    rng = np.random.default_rng(2)
    x = rng.uniform(-0.2, 3.0, (64, 8, 8, 64)).astype("float32")
    qat = _qat(_batch_norm_alone("relu"), (8, 8, 64), x, seed=2)
    x = np.asarray(keras.Model(qat.input, qat.layers[1].output)(x))
    (bn,) = [layer for layer in qat.layers if "batch_norm" in layer.name]
    inner = bn.batch_norm

    def offsets():
        _, offset = batch_norm_folding(inner, inner.moving_mean, inner.moving_variance)
        offset = keras.ops.convert_to_numpy(offset)
        step = keras.ops.convert_to_numpy(range_scale(min(offset.min(), 0), max(offset.max(), 0)))
        folded = tf.quantization.fake_quant_with_min_max_vars(
            offset, min(offset.min(), 0), max(offset.max(), 0)).numpy()
        return offset, step, np.round(folded / step)

    offset, step, _ = offsets()
    beta = keras.ops.convert_to_numpy(inner.beta)
    channel = int(np.argsort(np.abs(offset))[len(offset) // 2])
    target = np.float32((np.round(offset[channel] / step) + 0.5) * step)
    beta[channel] += target - offset[channel]
    for _ in range(64):
        inner.beta.assign(beta)
        offset, step, stored = offsets()
        if np.round(offset[channel] / step) != stored[channel]:
            break
        beta[channel] = np.nextafter(beta[channel], np.float32(np.inf if rng.random() < 0.5
                                                               else -np.inf))
    else:
        pytest.fail("no beta puts the offset between the two roundings")
    _on_xnnpack_and_saved(qat, x, tmp_path)


@pytest.mark.parametrize("make", [
    lambda x: L.Rescaling(1 / 127.5, offset=-1)(x),
    lambda x: L.Conv2D(8, 3)(L.Normalization(
        mean=[0.485 * 255, 0.456 * 255, 0.406 * 255], variance=[3400.0, 3300.0, 3350.0])(x)),
], ids=["mobilenet_v3_rescaling", "imagenet_normalization_conv"])
def test_input_scaling_lands_on_xnnpacks_integers(make, tmp_path):
    """A Rescaling's MUL and ADD as their int8 ops compute them
    (`kernel_arithmetic.requantize`, `requantize_sum`). MobileNetV3's
    `Rescaling(1/127.5, offset=-1)` puts every pixel on a half step, which
    XNNPACK's ADD sends up and the float sum the way its float error points,
    and its range `[-1, 1]` has the zero point 127.5, which the converter
    rounds up and FakeQuant down: pixel 255 came out a step above the
    device's largest value (0.4% of outputs, the float path's only misses
    here)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 16, 16, 3)).astype("float32")
    inputs = keras.Input((16, 16, 3))
    keras.utils.set_random_seed(0)
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, make(inputs)))
    for k in range(0, len(x), 32):
        qat(x[k:k + 32], training=True)
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def _on_ranges(make, shape, ranges, x):
    """A QAT model of `make` whose output quantizers (by layer name) hold
    the given ranges: set by hand, so that requantization lands on exact
    ties."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, make(inputs)))
    qat(x[:64], training=True)
    for weight in qat.weights:
        layer, name = weight.path.split("/")[-2:]
        if layer in ranges and name in ("output_min", "output_max"):
            weight.assign(np.full(weight.shape, ranges[layer][name == "output_max"]))
    return qat


# A range of 255 steps of 1/64 (zero point 0), and one of 255 steps of
# (1/64)**2 / 0.5: a product of two integers on the first is a whole or a
# half step of the second.
_STEP_64 = (-128 / 64, 127 / 64)
_HALF_PRODUCT = (-128 * 2 / 64 ** 2, 127 * 2 / 64 ** 2)


def _mean(side):
    return lambda x: L.GlobalAveragePooling2D(name="g")(L.Conv2D(4, 1, name="c")(
        L.AveragePooling2D(4 // side)(x) if side < 4 else L.UpSampling2D(side // 4)(x)))


# name: (layers, their ranges, inputs' low and high)
_TIES = {
    # A 2x2 mean into its input's own range: a quarter of the sums are ties.
    "mean_of_4": (_mean(2), {"quant_c": _STEP_64, "quant_g": _STEP_64}, (-1, 1)),
    # A 12x12 mean, zero points on both sides: XNNPACK adds the output's
    # less the input's as one float32 offset, which rounds a product within
    # a few 10^-6 of a step above a tie onto it (and then to even).
    "mean_of_144": (_mean(12), {"quant_c": (-1.0, 3.0), "quant_g": (-2.0, 0.9)}, (-1, 2)),
    # A product into a range of half its operands' step product.
    "product": (lambda x: L.Multiply(name="m")(
        [L.Conv2D(4, 1, name="a")(x), L.Conv2D(4, 1, name="b")(x)]),
        {"quant_a": _STEP_64, "quant_b": _STEP_64, "quant_m": _HALF_PRODUCT}, (-1, 1)),
    # A sum into a range of twice its first operand's step, the second
    # operand a zero on a range 2**12 times finer than the output's
    # (ConvNeXt's residual of a layer scale near its 1e-6 start): XNNPACK
    # does not take that ADD and LiteRT's built-in one runs it, which
    # sends a tie away from zero where XNNPACK's sends it up
    # (`kernel_arithmetic.builtin_sum`).
    "sum_with_a_tiny_operand": (lambda x: L.Add(name="s")([
        L.Conv2D(4, 1, name="a")(x), L.Conv2D(4, 1, name="b", kernel_initializer="zeros")(x)]),
        {"quant_a": _STEP_64, "quant_b": (-0.0005, 0.0005),
         "quant_s": (-128 * 2 / 64, 127 * 2 / 64)}, (-1, 1)),
    # The same product as a raw `a * b` of the graph (a `QuantizeOperation`).
    "raw_product": (lambda x: L.Conv2D(4, 1, name="a")(x) * L.Conv2D(4, 1, name="b")(x),
                    {"quant_a": _STEP_64, "quant_b": _STEP_64, "quant_multiply": _HALF_PRODUCT},
                    (-1, 1)),
}


@pytest.mark.parametrize("case", list(_TIES))
def test_a_mean_and_a_product_round_as_xnnpack_does(case, tmp_path):
    """XNNPACK's int8 MUL requantizes in float32 and sends a tie to even,
    where FakeQuant sends it up; its MEAN converts the sum of the stored
    integers with a float32 multiply and add (`requantize_mean`). Before
    they computed on integers, these put 125 of 1,024 outputs (mean_of_4),
    7 of 1,024 (mean_of_144; 9 with the sum requantized exactly) and 854
    of 16,384 (product, and raw_product as a raw `a * b`) a step off
    XNNPACK's. An ADD XNNPACK does not take runs on LiteRT's built-in
    kernel, which rounds a tie away from zero: 3,974 of 16,384
    (sum_with_a_tiny_operand) off while the Keras model computed
    XNNPACK's ADD."""
    make, ranges, (low, high) = _TIES[case]
    x = np.random.default_rng(0).uniform(low, high, (256, 4, 4, 4)).astype("float32")
    qat = _on_ranges(make, (4, 4, 4), ranges, x)
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def test_zero_point_is_the_converters():
    # [-1, 1] over 255 steps: 127.5, rounded up as the converter does.
    _, zero_point, _, _ = integer_grid(-1.0, 1.0, 8, False)
    assert float(keras.ops.convert_to_numpy(zero_point)) == 128.0
    _, zero_point, _, _ = integer_grid(0.0, 6.0, 8, False)
    assert float(keras.ops.convert_to_numpy(zero_point)) == 0.0


def test_prune_preserving_qat_computes_on_integers_too(tmp_path):
    """PQAT's kernel quantizer (`PreservingQuantizer`) gives its inner
    quantizer's step for the masked kernel, so a plain convolution's bias
    and accumulator are the device's there too."""
    sk, qk = tfmot.sparsity.keras, tfmot.quantization.keras
    x = _flat_regions(np.random.default_rng(3), 128, 16, 3)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    outputs = L.Conv2D(8, 1)(L.Conv2D(16, 3, padding="same", activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in model.layers[1:]:
        layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape))
    pruned = sk.prune_low_magnitude(model, pruning_schedule=sk.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "mse")
    pruned.fit(x, np.zeros((128, 16, 16, 8), "float32"), epochs=1, verbose=0,
               callbacks=[sk.UpdatePruningStep()])
    annotated = qk.quantize_annotate_model(sk.strip_pruning(pruned))
    qat = qk.quantize_apply(
        annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    for k in range(0, len(x), 64):
        qat(x[k:k + 64], training=True)
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 0.01, (int(np.sum(steps > 0.5)), steps.size)


def _add_model(range_a, range_b, range_out):
    """A .tflite of one int8 ADD of two 256x256 inputs, as the converter
    writes it."""
    import tensorflow as tf

    spec = tf.TensorSpec([256, 256], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def add(a, b):
        a = tf.quantization.fake_quant_with_min_max_args(a, *range_a)
        b = tf.quantization.fake_quant_with_min_max_args(b, *range_b)
        return tf.quantization.fake_quant_with_min_max_args(a + b, *range_out)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([add.get_concrete_function()], add)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def test_builtin_sum_is_litert_kernels():
    """Every pair of int8 inputs of LiteRT's built-in ADD, run by the wheel
    with XNNPACK off, against `builtin_sum`: one ADD XNNPACK would not
    take (a second operand 2**11 times finer than the output) and two it
    would; `requantize_sum`, XNNPACK's, misses the built-in kernel on
    ties."""
    from tfmot_lite.export.runtime import TFLiteModel
    from tfmot_lite.quantization.kernel_arithmetic import builtin_sum, requantize_sum

    stored = np.arange(-128, 128)
    pairs = [np.repeat(stored, 256).reshape(256, 256), np.tile(stored, 256).reshape(256, 256)]
    xnnpack_misses = 0
    for ranges in [((-10.0, 10.0), (-0.005, 0.005), (-10.0, 10.0)),
                   ((-3.0, 5.0), (-1.0, 2.0), (-4.0, 6.5)),
                   ((-1.0, 1.0), (-1.0, 1.0), (-2.0, 2.0))]:
        interpreter = TFLiteModel(_add_model(*ranges), xnnpack=False).interpreter
        inputs, (output,) = interpreter.get_input_details(), interpreter.get_output_details()
        for detail, q in zip(inputs, pairs):
            interpreter.set_tensor(detail["index"], q.astype("int8"))
        interpreter.invoke()
        device = interpreter.get_tensor(output["index"])
        (a_step, a_zero), (b_step, b_zero) = (d["quantization"] for d in inputs)
        step, zero = output["quantization"]
        low, high = (-128 - zero) * step, (127 - zero) * step
        a, b = (pairs[0] - a_zero).astype("float32"), (pairs[1] - b_zero).astype("float32")
        ours = keras.ops.convert_to_numpy(builtin_sum(a, a_step, b, b_step, low, high))
        np.testing.assert_array_equal(np.round(ours / step) + zero, device, str(ranges))
        xnnpack = keras.ops.convert_to_numpy(requantize_sum(a, a_step, b, b_step, low, high))
        xnnpack_misses += int(np.sum(np.round(xnnpack / step) + zero != device))
    assert xnnpack_misses > 0


def test_hard_swish_integers_are_tflites_fixed_point():
    """`hard_swish_integers` against a numpy transcription of TFLite's
    int8 HARD_SWISH (16-bit fixed point; its doubling high multiply of the
    two halves truncates toward zero) over every input integer, at scales
    drawn as a model's."""
    def rdhm(a, b):  # SaturatingRoundingDoublingHighMul, int16
        ab = a * b
        ab = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
        return np.where(ab >= 0, ab >> 15, -((-ab) >> 15))

    def divide_pot(x, e):  # RoundingDivideByPOT
        mask = (1 << e) - 1
        return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))

    def multiplier(m):  # QuantizeMultiplier, then to 16 bits
        fraction, exponent = np.frexp(np.float64(m))
        return min(int(np.floor(fraction * 32768 + 0.5)), 32767), int(exponent)

    rng = np.random.default_rng(0)
    x = np.arange(-255, 256, dtype=np.int64)
    for _ in range(50):
        input_step, output_step = rng.uniform(0.005, 0.2, 2).astype("float32")
        hires = np.float32(input_step) / np.float32(128)
        m_out, e_out = multiplier(hires / np.float32(output_step))
        m_r, e_r = multiplier(hires / np.float32(3 / 32768))
        pre = rdhm(x * 128, m_out)
        reluish = np.clip((x * 128) << max(e_r - 1, 0), -32768, 32767)
        reluish = rdhm(reluish, m_r)
        reluish = np.clip(reluish << 1, -32768, 32767) if e_r > 0 else divide_pot(reluish, -e_r)
        reluish = (reluish + (1 << 15)) >> 1
        product = reluish * pre
        expected = divide_pot(np.where(product >= 0, product >> 15, -((-product) >> 15)), -e_out)
        ours = keras.ops.convert_to_numpy(
            hard_swish_integers(x.astype("float32"), input_step, output_step))
        np.testing.assert_array_equal(ours, expected)


def test_an_all_zero_kernel_channel_keeps_its_bias(tmp_path):
    """A channel whose kernel is all zeros (pruned away) has no step; the
    integer path had divided by it (NaN, then zeros after every merge of a
    PQAT EfficientNetB0). It adds its bias as the device does."""
    x = _flat_regions(np.random.default_rng(4), 128, 16, 3)

    def make(t):
        conv = L.Conv2D(8, 1, activation="sigmoid")
        y = conv(t)
        kernel = keras.ops.convert_to_numpy(conv.kernel).copy()
        kernel[..., 3] = 0.0
        conv.kernel.assign(kernel)
        return y

    qat = _qat(make, (16, 16, 3), x)
    out = np.asarray(qat(x, training=False))
    assert np.all(np.isfinite(out))
    steps = _steps_off_xnnpack(qat, x, tmp_path)
    assert steps.max() < 1.01 and np.mean(steps > 0.5) < 1e-3, (steps.max(), np.mean(steps > 0.5))
