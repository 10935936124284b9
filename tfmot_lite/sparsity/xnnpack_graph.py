"""Keras layers as XNNPACK rules `Op`s: the Keras-graph adapter of the walk.

`op_graph(model)` translates each layer call of a `graph.DataflowGraph`
into a rules `Op` (`tfmot_lite/core/xnnpack_rules.py`) and returns the
`OpGraph` that `xnnpack_walk.walk` searches; `layer_op(layer)` translates
one layer alone, for `PruneForLatencyOnXNNPack.allow_pruning`. Layers map
to the operators they export as: BatchNormalization and Rescaling to MUL and
ADD with constants, ZeroPadding2D to PAD, GlobalAveragePooling2D to MEAN,
Dropout and its kin to nothing.
"""

import keras
import numpy as np

from tfmot_lite.core import graph, layer_kinds, sublayers
from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.core.xnnpack_walk import OpGraph

L = keras.layers

# Layers that are the identity at inference and disappear from the export.
_NO_OPS = (
    L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
    L.ActivityRegularization, L.Identity,
)


def op_graph(dataflow):
    """The `OpGraph` of `dataflow` (a `graph.DataflowGraph`); its nodes are
    the graph's `LayerCall`s."""
    ops = {call: _as_op(call, dataflow) for call in dataflow.ops}
    return OpGraph(
        ops,
        inputs={call: call.inputs for call in dataflow.ops},
        outputs={call: call.outputs for call in dataflow.ops},
        model_inputs=dataflow.inputs,
        model_outputs=dataflow.outputs,
    )


def layer_op(layer):
    """The rules `Op` of a (possibly wrapped) layer alone, outside any graph:
    what `allow_pruning` decides from."""
    layer = graph.core_layer(layer)
    if not isinstance(layer, L.Conv2D):
        return rules.Op(rules.OTHER, type(layer).__name__)
    fields = _conv_fields(layer, _built_input_shape(layer))
    return rules.Op(rules.CONV, "Conv2D", groups=layer.groups, **fields)


def _activation(function):
    return rules.keras_activation(layer_kinds.activation_name(function))


def _relu_name(layer):
    if layer.threshold != 0:
        return f"relu(threshold={layer.threshold})"
    if layer.negative_slope == 0:
        return {None: "relu", 6: "relu6"}.get(layer.max_value, f"relu(max_value={layer.max_value})")
    if layer.max_value is None:
        return "leaky_relu"
    return "relu(negative_slope and max_value)"


def _spatial(shape):
    return None if shape is None or len(shape) != 4 else tuple(shape[1:3])


def _conv_fields(layer, shape):
    """Rules fields of a built or unbuilt Conv2D/DepthwiseConv2D, alone."""
    return dict(
        kernel=tuple(layer.kernel_size),
        strides=tuple(layer.strides),
        dilation=tuple(layer.dilation_rate),
        same_padding=layer.padding == "same",
        activation=_activation(layer.activation),
        channels_last=layer.data_format == "channels_last",
        in_channels=shape[-1] if shape else None,
        input_hw=_spatial(shape),
    )


def _built_input_shape(layer):
    config = layer.get_build_config() if layer.built else None
    shape = (config or {}).get("input_shape")
    return tuple(shape) if shape else None


def _as_op(call, dataflow):
    """The rules `Op` of layer call `call` of `dataflow`, alone: `OpGraph`
    adds what depends on its neighbours (folded pads)."""
    layer = graph.core_layer(call.layer)
    name = type(layer).__name__
    shape = dataflow.input_shape(call)
    if isinstance(layer, L.Conv2D):
        return rules.Op(rules.CONV, name, groups=layer.groups, **_conv_fields(layer, shape))
    if isinstance(layer, L.DepthwiseConv2D):
        return rules.Op(rules.DEPTHWISE, name, depth_multiplier=layer.depth_multiplier,
                        **_conv_fields(layer, shape))
    if isinstance(layer, L.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        return rules.Op(rules.PAD, name, pads=(top, bottom, left, right))
    if isinstance(layer, L.GlobalAveragePooling2D):
        return rules.Op(rules.MEAN, name, keepdims=layer.keepdims)
    if isinstance(layer, (L.Add, L.Multiply)):
        return rules.Op(rules.BINARY, name, operands=tuple(
            (dataflow.shapes.get(t), False) for t in call.inputs
        ))
    if isinstance(layer, L.BatchNormalization):
        # Exported as MUL and ADD with the per-axis scale and shift.
        constant = [1] * len(shape) if shape else None
        if constant:
            constant[layer.axis] = shape[layer.axis]
        return rules.Op(rules.BINARY, f"{name}(axis={layer.axis})",
                        operands=((shape, False), (constant, True)))
    if isinstance(layer, L.Rescaling):
        return rules.Op(rules.BINARY, name, operands=(
            (shape, False), (np.shape(layer.scale), True), (np.shape(layer.offset), True),
        ))
    if isinstance(layer, L.Activation):
        return rules.Op(rules.ACTIVATION, name, activation=_activation(layer.activation))
    if isinstance(layer, L.ReLU):
        return rules.Op(rules.ACTIVATION, name, activation=_relu_name(layer))
    if isinstance(layer, L.LeakyReLU):
        return rules.Op(rules.ACTIVATION, name, activation="leaky_relu")
    if isinstance(layer, L.ELU):
        alpha = float(layer.alpha)
        return rules.Op(rules.ACTIVATION, name,
                        activation="elu" if alpha == 1.0 else f"elu(alpha={alpha})")
    if isinstance(layer, L.UpSampling2D):
        if layer.interpolation == "bilinear":
            return rules.Op(rules.RESIZE, name)
        return rules.Op(rules.OTHER, f"{name}(interpolation='{layer.interpolation}')")
    if isinstance(layer, _NO_OPS):
        return rules.Op(rules.NOOP, name)
    if sublayers.is_composite(layer):
        # Its layers are reached by the techniques, but its `call` is code:
        # which of them feeds which is unknown here.
        return rules.Op(rules.OTHER, f"{name} (a subclassed layer, whose data flow "
                                     "the policy cannot follow: build the block as a "
                                     "Functional model to check it)")
    return rules.Op(rules.OTHER, name)
