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
go the way TFLite's AVERAGE_POOL_2D sends them (`quantizers.average_rounding`).
The layout puts it where a Concatenate and another layer read such an op
(`layout.py`).
"""

import keras
from keras import ops

from tfmot_lite.core import techniques
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.config import default_activation_quantizer

_register = keras.saving.register_keras_serializable(package="tfmot_lite")
_AVERAGES = (keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
             keras.layers.AveragePooling3D)


@_register
class QuantizeSameScale(keras.layers.Layer):
    """`r(layer(r(x)))`, `r` the rounding into one range tracked over `x`.

    Args:
      layer: a layer whose int8 TFLite op keeps its input's scale
        (`layer_kinds.same_scale_op`).
      num_bits_activation: bits of the range (8, or 16 for 16x8 models).
    """

    technique = techniques.QAT

    def __init__(self, layer, num_bits_activation=8, **kwargs):
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(**kwargs)
        self.layer = layer
        self.num_bits_activation = int(num_bits_activation)
        self.quantizer = default_activation_quantizer(self.num_bits_activation)
        self._range = None

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self._range is None:
            self._range = self.quantizer.build((1,), "range", self)
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config()

    def build_from_config(self, config):
        self.build(config["input_shape"])

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
        if isinstance(self.layer, _AVERAGES) and not q.tracing_for_converter():
            # A tie lands as the device rounds it (the device's own kernel
            # does it in the .tflite).
            device = q.average_rounding(outputs, lo, hi, quantizer.num_bits,
                                        quantizer.narrow_range)
            result = result + ops.stop_gradient(device - result)
        return result

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "num_bits_activation": self.num_bits_activation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)

    def strip(self):
        """The float layer (see `graph.strip`)."""
        return self.layer
