"""`QuantizeSameScale`: a pooling, padding or reshape with a range of its own.

TFLite's int8 MAX_POOL_2D, AVERAGE_POOL_2D, PAD, RESHAPE, ... keep their
input's scale, so in QAT such a layer has no range: it passes on the one
of the layer before. A Concatenate changes that. Its int8 kernel keeps one
scale, and the converter hands that scale backwards to an input that has
none, through the same-scale op, and requantizes the op's *input* into it.
When the op's output is also read elsewhere (DenseNet's pooling between
dense blocks feeds the next block's BatchNorm and its concatenation), that
reader then gets the values on the concatenation's coarser grid, which the
Keras model never rounded to: on a DenseNet121 the pooling read as
computing differently on 10-17% of its outputs, and the BatchNorm-ReLU
after it on up to 17%.

Given a range of its own, the op keeps it: the converter requantizes the
input into that range, runs the op there, and requantizes its output into
the concatenation's scale for the concatenation only. The wrapper computes
the same: the range is tracked over the op's input, the input is rounded
into it, the op runs, and its output (an average lands between steps) is
rounded into the same range. For a maximum or a padding the output rounding
changes nothing (a maximum of values on a grid is on it); an average's ties
go the way TFLite's AVERAGE_POOL_2D sends them (`kernel_arithmetic.average_rounding`).
The layout puts it where a Concatenate and another layer read such an op
(`layout.py`).

`QuantizeAveragePooling`: every other average pooling. Its int8 op writes
the mean of its input's integers in its input's scale, so the device's
output is on that grid; the Keras layer passed the exact mean on, up to
half a step off it (InceptionV3's branch poolings: 3-4% of their outputs a
step off the device's). The wrapper has no range of its own (the
converter would refuse a second range there); it rounds into the range of
the layer that writes its input, found through the Keras graph
(`input_range.py`). `QuantizeBilinearResize` does the same for a bilinear
`UpSampling2D` (RESIZE_BILINEAR keeps its input's scale too: with a range
of its own after it, as an op computing new values, the converter had
handed that narrower range to the layer before, clipping its outputs).
"""

import keras
from keras import ops

from tfmot_lite.core import techniques
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.kernel_arithmetic import average_rounding, interpolation_rounding
from tfmot_lite.quantization.config import default_activation_quantizer
from tfmot_lite.quantization.input_range import BorrowsInputRange

_register = keras.saving.register_keras_serializable(package="tfmot_lite")
_AVERAGES = (keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
             keras.layers.AveragePooling3D)


def is_average_pooling(layer):
    """Whether `layer` is a Keras average pooling (1-D, 2-D or 3-D)."""
    return isinstance(layer, _AVERAGES)


def is_bilinear_upsampling(layer):
    """Whether `layer` is a Keras `UpSampling2D` that interpolates
    bilinearly (int8 RESIZE_BILINEAR)."""
    return isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "bilinear"


class _SameScaleWrapper(keras.layers.Layer):
    """What both wrappers share: one inner layer (`layer`), built,
    serialized and stripped through it; QAT's technique."""

    technique = techniques.QAT

    def __init__(self, layer, **kwargs):
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config()

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(),
                "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)

    def strip(self):
        """The float layer (see `graph.strip`)."""
        return self.layer


@_register
class QuantizeSameScale(_SameScaleWrapper):
    """`r(layer(r(x)))`, `r` the rounding into one range tracked over `x`.

    Args:
      layer: a layer whose int8 TFLite op keeps its input's scale
        (`layer_kinds.same_scale_op`).
      num_bits_activation: bits of the range (8, or 16 for 16x8 models).
    """

    def __init__(self, layer, num_bits_activation=8, **kwargs):
        super().__init__(layer, **kwargs)
        self.num_bits_activation = int(num_bits_activation)
        self.quantizer = default_activation_quantizer(self.num_bits_activation)
        self._range = None

    def build(self, input_shape):
        if self._range is None:
            self._range = self.quantizer.build((1,), "range", self)
        super().build(input_shape)

    def call(self, inputs, training=None):
        training = bool(training)
        quantizer = self.quantizer
        if q.activations_are_float():
            return self.layer(inputs)
        lo, hi = quantizer.step_range(inputs, training, self._range)

        def rounded(x):
            return q.fake_quant(x, lo, hi, quantizer.num_bits, quantizer.narrow_range,
                                range_gradient=not training)

        outputs = self.layer(rounded(inputs))
        result = rounded(outputs)
        if is_average_pooling(self.layer) and not q.tracing_for_converter():
            # A tie lands as the device rounds it (the device's own kernel
            # does it in the .tflite).
            device = average_rounding(outputs, lo, hi, quantizer.num_bits,
                                        quantizer.narrow_range)
            result = result + ops.stop_gradient(device - result)
        return result

    def get_config(self):
        return {**super().get_config(), "num_bits_activation": self.num_bits_activation}

    def output_range(self):
        """`(quantizer, weights)` of the range its output is rounded into."""
        return self.quantizer, self._range


class _RoundedIntoInputRange(BorrowsInputRange, _SameScaleWrapper):
    """`r(layer(x))`, `r` the rounding into the range `x` is on, as the
    layer's int8 kernel rounds (`device_rounding`).

    The range belongs to the layer that writes `x` (through ops that keep
    its scale: padding, an Identity left by a folded BatchNorm, ...), found
    through the Keras graph (`input_range.BorrowsInputRange`). Where none
    is found the output passes on as computed. Training reads the range
    its owner stored in the same step; the gradient is straight-through. No
    weights of its own."""

    keeps_input_scale = True  # int8 out where int8 comes in (quantize.py)

    @staticmethod
    def device_rounding(x, min_val, max_val, num_bits, narrow_range):
        raise NotImplementedError

    @property
    def rounds(self):
        """Whether the wrapper found its input's range (and rounds)."""
        return self.input_source is not None

    def call(self, inputs, training=None):
        outputs = self.layer(inputs)
        source = self.input_source
        if source is None or q.activations_are_float() or q.tracing_for_converter():
            return outputs  # the device's kernel rounds it in the .tflite
        quantizer, weights = source.quantizer, source.weights
        device = self.device_rounding(outputs, ops.reshape(weights["min_var"], ()),
                                      ops.reshape(weights["max_var"], ()), quantizer.num_bits,
                                      quantizer.narrow_range)
        return outputs + ops.stop_gradient(device - outputs)


@_register
class QuantizeAveragePooling(_RoundedIntoInputRange):
    """`r(pool(x))`, `r` the rounding into the range `x` is on, as TFLite's
    AVERAGE_POOL_2D rounds the mean of the stored integers
    (`kernel_arithmetic.average_rounding`: half away from zero).

    Args:
      layer: a Keras average pooling.
    """

    device_rounding = staticmethod(average_rounding)


@_register
class QuantizeBilinearResize(_RoundedIntoInputRange):
    """`r(resize(x))`, `r` the rounding into the range `x` is on: TFLite's
    int8 RESIZE_BILINEAR keeps its input's scale (the converter hands that
    scale to the layer writing its input), and XNNPACK rounds the weighted
    sum of the stored integers to the nearest step, a tie up
    (`kernel_arithmetic.interpolation_rounding`; LiteRT's built-in kernel sends
    ties away from zero, and weighs with 10-bit fractions).

    Args:
      layer: a Keras `UpSampling2D(interpolation="bilinear")`.
    """

    device_rounding = staticmethod(interpolation_rounding)
