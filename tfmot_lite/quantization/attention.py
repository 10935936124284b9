"""Quantization-aware training of `keras.layers.MultiHeadAttention`.

What the converter makes of one attention call, and where each range is
(`AttentionQuantizeConfig`'s points):

    q = FC(query) + b_q          query_matmul, query     (key_, value_ alike)
    s = q . k                    scores                   BATCH_MATMUL
    s = where(mask, s, min s)    (the scores' range)      SELECT_V2
    p = softmax(s)               probabilities (fixed)    SOFTMAX
    c = p . v                    context                  BATCH_MATMUL
    y = FC(c) + b_o              output_matmul, output

The four projection kernels are int8 per tensor; the query's kernel and
bias carry the `1/sqrt(d)` of the scores (`ScaledQuantizer`), which spares
a MUL by a constant and its rounding. The probabilities take the
fixed range of TFLite's integer SOFTMAX (scale 1/256, zero point -128 in
int8; 1/32768 and 0 in int16). A masked position gets the scores' current
minimum instead of the float layer's `-1e9`: that value is in the int8
range, so SELECT_V2 runs integer, and the softmax of a masked position is
`exp(min - max)` of the row instead of 0 (under one level of the
probabilities' scale where the scores span more than ~6).

KerasHub's attention layers subclass MultiHeadAttention and call the same
sub-layers and `_compute_attention`; they are quantized the same way.
"""

import keras
from keras import ops

from tfmot_lite.quantization.config import fixed_output_quantizer
from tfmot_lite.quantization.quantizers import Quantizer
from tfmot_lite.quantization.inside import (
    InsideQuantizeConfig,
    einsum_dense_call,
    projection_points,
)

_register = keras.saving.register_keras_serializable(package="tfmot_lite")

PROJECTIONS = ("query", "key", "value", "output")


def _projection(layer, name):
    return getattr(layer, f"_{name}_dense")


def attention_call(layer, points):
    """`layer._compute_attention` with every intermediate value quantized."""

    def compute_attention(query, key, value, attention_mask=None, training=None,
                          return_attention_scores=False, use_causal_mask=False):
        if use_causal_mask:
            causal = layer._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else ops.logical_and(
                ops.cast(attention_mask, "bool"), causal)
        # `query` is already scaled by 1/sqrt(d) (its kernel and bias).
        scores = points("scores", ops.einsum(layer._dot_product_equation, key, query))
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
            axis = -len(layer._attention_axes) * 2 - 1
            for _ in range(len(scores.shape) - len(mask.shape)):
                mask = ops.expand_dims(mask, axis=axis)
            floor = ops.cast(points.low("scores"), scores.dtype)
            scores = ops.where(mask, scores, floor)
        probabilities = points(
            "probabilities", ops.softmax(scores, axis=layer._softmax.axis[0]
                                         if isinstance(layer._softmax.axis, (list, tuple))
                                         else layer._softmax.axis))
        attended = probabilities
        if layer._dropout > 0.0:
            attended = layer._dropout_layer(probabilities, training=training)
        context = points("context", ops.einsum(layer._combine_equation, attended, value))
        return context, probabilities

    return compute_attention


@_register
class ScaledQuantizer(Quantizer):
    """`quantizer(x * scale)`: a kernel with a constant factor folded in
    (the query kernel carries attention's `1/sqrt(d)`). `unscaled` gives
    the layer's own kernel back when the wrapper is stripped."""

    def __init__(self, quantizer, scale):
        self.quantizer = quantizer
        self.scale = float(scale)

    @property
    def num_bits(self):
        return self.quantizer.num_bits

    def build(self, tensor_shape, name, layer):
        return self.quantizer.build(tensor_shape, name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        return self.quantizer(inputs * self.scale, training, weights, **kwargs)

    def unscaled(self, value):
        return value / self.scale

    def get_config(self):
        return {"quantizer": keras.saving.serialize_keras_object(self.quantizer),
                "scale": self.scale}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["quantizer"]), config["scale"])


def _scale(layer):
    return float(layer._inverse_sqrt_key_dim)


def _quantized_output(call, points, name):
    def quantized(inputs, training=None):
        return points(name, call(inputs, training=training))

    return quantized


@_register
class AttentionQuantizeConfig(InsideQuantizeConfig):
    """MultiHeadAttention (and KerasHub's subclasses of it): int8 projection
    kernels, a range after every op of the attention (module docstring)."""

    def weight_paths(self, layer):
        return [f"_{name}_dense.kernel" for name in PROJECTIONS]

    def weight_quantizer(self, layer, path):
        quantizer = super().weight_quantizer(layer, path)
        if path.startswith("_query_dense."):  # 1/sqrt(d) folded in.
            return ScaledQuantizer(quantizer, _scale(layer))
        return quantizer

    def point_names(self, layer):
        names = []
        for name in PROJECTIONS:
            names += projection_points(_projection(layer, name), f"{name}_")
            names.append(name)
        return names + ["scores", "probabilities", "context"]

    def point_quantizer(self, name):
        if name == "probabilities":
            return fixed_output_quantizer("softmax", self.num_bits_activation)
        return self.activation_quantizer()

    def substitutions(self, layer, points):
        found = [
            ((_projection(layer, name), "call"), _quantized_output(
                einsum_dense_call(_projection(layer, name), points, f"{name}_",
                                  _scale(layer) if name == "query" else None),
                points, name))
            for name in PROJECTIONS
        ]
        return found + [((layer, "_compute_attention"), attention_call(layer, points))]

    def get_output_quantizers(self, layer):
        return []  # The output projection's own point ("output") is last.
