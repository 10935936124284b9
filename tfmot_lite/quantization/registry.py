"""Which Keras layers the default schemes quantize, and how.

Three kinds of layers (the TFLite int8 kernel decides):

* weights + output: Dense (per-tensor weights), Conv1D/Conv2D,
  DepthwiseConv2D and Conv2DTranspose (per-channel weights);
* output only: layers that compute new values and need their own int8 output
  scale (Add, Multiply, Concatenate, activations, BatchNormalization on its
  own, GlobalAveragePooling, Rescaling, Normalization, ...);
* pass-through: layers whose int8 kernel keeps the input's scale (max and
  average pooling, reshaping, padding, cropping, dropout, ...). They are left
  as they are; the converter carries the scale through them;
* tables: Embedding (int8 table, the lookup keeps its scale);
* inside: layers TFLite runs as several integer ops, quantized inside their
  call (MultiHeadAttention, LayerNormalization, EinsumDense: see
  `inside.py`, `attention.py`, `layer_norm.py`).

Raw operations of a Functional graph (`x + 3.0`) are classified by name
(`OUTPUT_OPS` get an output quantizer, `PASS_OPS` keep their input's scale).
The registry also gives the quantizer of the `QuantizeLayer` where float
values enter (`get_input_quantizer`).
"""

import keras

from tfmot_lite.core import graph, layer_kinds
from tfmot_lite.quantization.attention import AttentionQuantizeConfig
from tfmot_lite.quantization.inside import (
    AverageQuantizeConfig,
    DenseQuantizeConfig,
    EinsumDenseQuantizeConfig,
    ScaledSumQuantizeConfig,
    SumQuantizeConfig,
)
from tfmot_lite.quantization.layer_norm import LayerNormQuantizeConfig
from tfmot_lite.quantization.recurrent import (
    GRUQuantizeConfig,
    LSTMQuantizeConfig,
    SimpleRNNQuantizeConfig,
)
from tfmot_lite.core.config_equality import ConfigEquality
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.config import (
    ActivationQuantizeConfig,
    Default8BitQuantizeConfig,
    OutputQuantizeConfig,
    default_activation_quantizer,
    fixed_output_quantizer,
)

_register = keras.saving.register_keras_serializable(package="tfmot_lite")

# The layer families, their kinds and which kernels are quantized per
# channel live in tfmot_lite/core/layer_kinds.py.
OUTPUT_ONLY = layer_kinds.classes("quantize", "output")
PASS_THROUGH = layer_kinds.classes("quantize", "pass")
# The configs of the layers quantized inside their call ('inside' kind),
# by class (KerasHub's attention subclasses MultiHeadAttention) or by the
# name a family of `core/layer_kinds.py` lists.
INSIDE_CONFIGS = (
    ("keras:CustomScaleLayer", ScaledSumQuantizeConfig),
    (keras.layers.MultiHeadAttention, AttentionQuantizeConfig),
    (keras.layers.LayerNormalization, LayerNormQuantizeConfig),
    (keras.layers.EinsumDense, EinsumDenseQuantizeConfig),
    (keras.layers.Dense, DenseQuantizeConfig),
    (keras.layers.Add, SumQuantizeConfig),
    (keras.layers.Average, AverageQuantizeConfig),
    (keras.layers.LSTM, LSTMQuantizeConfig),
    (keras.layers.GRU, GRUQuantizeConfig),
    (keras.layers.SimpleRNN, SimpleRNNQuantizeConfig),
)


def _inside_config(layer):
    """The `InsideQuantizeConfig` class for `layer`: by class, or by the
    `"package:ClassName"` a family names (a class Keras does not export)."""
    names = getattr(layer_kinds.family(layer), "names", ())
    return next(config for key, config in INSIDE_CONFIGS
                if (key in names if isinstance(key, str) else isinstance(layer, key)))


# Raw operations of a Functional graph (`x + 3.0`) that compute new values
# and get an output quantizer, and those that keep their input's scale.
OUTPUT_OPS = frozenset(
    {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum"}
)
PASS_OPS = frozenset({"Reshape", "Transpose", "ExpandDims", "Squeeze", "GetItem", "Identity"})
# Comparisons and logic of a Functional graph: the Keras masks of padded
# tokens (`Embedding(mask_zero=True)`) combined across layers. They compute
# booleans, nothing to quantize.
MASK_OPS = frozenset({"NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual",
                      "LogicalAnd", "LogicalOr", "LogicalNot", "LogicalXor"})


class QuantizeRegistry(ConfigEquality):
    """Base class (tfmot's `QuantizeRegistry`): layer -> `QuantizeConfig`.

    Implement `supports(layer)` and `get_quantize_config(layer)` (None: leave
    the layer as it is). The operation and input hooks below default to
    8-bit activations.
    """

    def supports(self, layer):
        raise NotImplementedError

    def get_quantize_config(self, layer):
        raise NotImplementedError

    def supports_operation(self, op):
        """Whether a raw operation (`x + 3.0`) can be part of a quantized model."""
        return type(op).__name__ in OUTPUT_OPS | PASS_OPS | MASK_OPS

    def get_operation_quantizer(self, op):
        """The output quantizer of a raw operation; None keeps its input scale."""
        return default_activation_quantizer() if type(op).__name__ in OUTPUT_OPS else None

    def get_input_quantizer(self):
        """The quantizer of each `QuantizeLayer` (where float values enter)."""
        return default_activation_quantizer()

    def get_config(self):
        return {}

    __hash__ = None  # equal by config (ConfigEquality), not hashable


class BitWidths:
    """Mixin: the bit-width fields a scheme hands its layout transform and
    registry (`num_bits_weight`, `num_bits_activation`, `disable_per_axis`),
    and the config of them."""

    def __init__(self, num_bits_weight=8, num_bits_activation=8, disable_per_axis=False):
        self.num_bits_weight = int(num_bits_weight)
        self.num_bits_activation = int(num_bits_activation)
        self.disable_per_axis = bool(disable_per_axis)

    def get_config(self):
        return {
            "num_bits_weight": self.num_bits_weight,
            "num_bits_activation": self.num_bits_activation,
            "disable_per_axis": self.disable_per_axis,
        }


@_register
class Default8BitQuantizeRegistry(BitWidths, QuantizeRegistry):
    """The TFLite int8 layout: symmetric weights (per channel for convs),
    asymmetric moving-average activations. `num_bits_*` below 8 keep the
    same layout with fewer levels (the n-bit scheme)."""

    def kind(self, layer):
        """'weights', 'output', 'pass' or None (not supported)."""
        return layer_kinds.quantize_kind(layer)

    def supports(self, layer):
        return self.kind(layer) is not None

    def activation_quantizer(self):
        return default_activation_quantizer(self.num_bits_activation)

    def output_quantizer(self, layer):
        """The output range of an output-only layer: a Softmax over the last
        axis has the fixed one of TFLite's integer SOFTMAX; others track
        theirs."""
        if isinstance(layer, keras.layers.Softmax) and layer.axis in (-1, [-1], (-1,)):
            return fixed_output_quantizer("softmax", self.num_bits_activation)
        return self.activation_quantizer()

    def get_operation_quantizer(self, op):
        if type(op).__name__ in OUTPUT_OPS:
            return self.activation_quantizer()
        return None

    def get_input_quantizer(self):
        return self.activation_quantizer()

    def weight_quantizer(self, layer):
        """Symmetric narrow-range, per output channel where the layer
        table's `per_channel` says so (unless `disable_per_axis`)."""
        layout = layer_kinds.per_channel(layer)
        bits = self.num_bits_weight
        if layout is None or self.disable_per_axis:
            return q.LastValueQuantizer(bits, False, True, True)
        if layout.depthwise:
            return q.DepthwiseKernelQuantizer(bits, True, True, True)
        if layout.converter_reshapes:
            return q.ChannelKernelQuantizer(bits, channel_axis=layout.axis)
        return q.LastValueQuantizer(bits, True, True, True)

    def get_quantize_config(self, layer):
        """The config for `layer`; None for pass-through layers."""
        kind = self.kind(layer)
        if kind is None:
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) is not supported "
                "by the default quantization registry."
            )
        if kind == "pass":
            return None
        if kind == "output" and isinstance(layer, keras.layers.Activation):
            # Its function runs as a layer activation does (silu's rounded
            # LOGISTIC, fixed ranges), on the input already quantized.
            return ActivationQuantizeConfig(self.activation_quantizer())
        if kind == "output":
            return OutputQuantizeConfig(activation_quantizer=self.output_quantizer(layer))
        if kind == "table":
            # The lookup (GATHER) keeps the table's int8 scale: no output
            # range, except where activations are int16 (requantized after).
            (_, path), = layer_kinds.family(layer).kernels
            return Default8BitQuantizeConfig(
                weight_attrs=[path], weight_quantizer=self.weight_quantizer(layer),
                activation_quantizer=self.activation_quantizer(),
                quantize_output=self.num_bits_activation > 8,
            )
        if kind == "inside":
            config = _inside_config(layer)
            if config is LayerNormQuantizeConfig and graph.inside_composite():
                # Its input may come from a raw op of the block's call.
                return config(self.num_bits_activation, self.num_bits_weight,
                              quantize_input=True)
            return config(self.num_bits_activation, self.num_bits_weight)
        activation = keras.activations.serialize(layer.activation)
        if isinstance(activation, dict):
            activation = activation.get("config", activation)
        fused = layer_kinds.fuses_activation(layer, activation)
        return Default8BitQuantizeConfig(
            weight_attrs=["kernel"],
            # An activation TFLite does not fuse into the kernel is its own
            # op (a sigmoid; a Conv2DTranspose's ReLU): quantize before and
            # after it.
            activation_attrs=[] if fused else ["activation"],
            quantize_output=fused,
            weight_quantizer=self.weight_quantizer(layer),
            activation_quantizer=self.activation_quantizer(),
        )
