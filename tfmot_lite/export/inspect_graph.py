""".tflite operators as XNNPACK rules `Op`s: the .tflite adapter of the walk.

`op_graph(fb, nodes)` translates operators `nodes` of a flatbuffer
`Subgraph` into rules `Op`s (`tfmot_lite/core/xnnpack_rules.py`) and returns
the `OpGraph` that `xnnpack_walk.walk` searches. Operators are joined by
their data tensors: constants, including those expanded by DENSIFY or
DEQUANTIZE, are operands, not edges. Fused activations, strides, dilations
and paddings come from each operator's builtin options.
"""

from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.core.xnnpack_walk import OpGraph

# Unary operators XNNPACK runs, by their xnnpack_rules activation name.
_UNARY = {
    "ABS": "abs", "CEIL": "ceil", "ELU": "elu", "FLOOR": "floor",
    "HARD_SWISH": "hard_swish", "LEAKY_RELU": "leaky_relu", "LOGISTIC": "sigmoid",
    "NEG": "neg", "RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": "relu_n1_to_1",
    "ROUND": "round", "SQUARE": "square",
}
# Fused activation functions, by code.
_FUSED = {0: "linear", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}
_OPTIONS = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "ADD": "AddOptions", "MUL": "MulOptions",
}


def op_graph(fb, nodes):
    """The `OpGraph` of operators `nodes` (indices) of subgraph `fb`."""
    return OpGraph(
        {i: _as_op(fb, i) for i in nodes},
        inputs={i: _data(fb, fb.inputs(i)) for i in nodes},
        outputs={i: fb.outputs(i) for i in nodes},
        model_inputs=_tensors(fb.graph.InputsAsNumpy, fb.graph.InputsLength),
        model_outputs=_tensors(fb.graph.OutputsAsNumpy, fb.graph.OutputsLength),
    )


def _tensors(as_numpy, length):
    return [int(t) for t in as_numpy()] if length() else []


def _data(fb, tensors):
    """The tensors computed at run time among `tensors`."""
    return [t for t in tensors if t >= 0 and fb.source(t)[0] is None]


def _pads(fb, i):
    """What PAD op `i` adds to its input's H and W, as (top, bottom, left,
    right); None when its paddings are unknown or touch batch or channels."""
    paddings = fb.constant(fb.inputs(i)[1])
    if paddings is None or paddings.shape != (4, 2) or paddings[0].any() or paddings[3].any():
        return None
    return tuple(int(p) for p in paddings[1:3].reshape(-1))


def _conv_op(fb, i, name):
    options = fb.options(i, _OPTIONS[name])
    shape = fb.shape(fb.inputs(i)[0])
    filter_shape = fb.shape(fb.inputs(i)[1])
    in_channels = shape[-1] if len(shape) == 4 else None
    fields = dict(
        kernel=(filter_shape[1], filter_shape[2]),
        strides=(options.StrideH(), options.StrideW()),
        dilation=(options.DilationHFactor(), options.DilationWFactor()),
        same_padding=options.Padding() == fb.tflite.Padding.SAME,
        activation=_FUSED.get(options.FusedActivationFunction(), "unknown"),
        in_channels=in_channels,
        input_hw=tuple(shape[1:3]) if len(shape) == 4 else None,
    )
    if name == "CONV_2D":
        groups = in_channels // filter_shape[3] if in_channels else 1
        return rules.Op(rules.CONV, name, groups=groups, **fields)
    multiplier = filter_shape[3] // in_channels if in_channels else 1
    return rules.Op(rules.DEPTHWISE, name, depth_multiplier=multiplier, **fields)


def _is_spatial_mean(fb, i):
    axes = fb.constant(fb.inputs(i)[1])
    if axes is None or len(fb.shape(fb.inputs(i)[0])) != 4:
        return False
    return sorted(int(a) % 4 for a in axes.reshape(-1)) == [1, 2]


def _as_op(fb, i):
    """The rules `Op` of operator `i`, alone: `OpGraph` adds what depends
    on its neighbours (folded pads)."""
    name = fb.types[i]
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return _conv_op(fb, i, name)
    if name in ("PAD", "PADV2"):
        return rules.Op(rules.PAD, name, pads=_pads(fb, i))
    if name == "MEAN":
        options = fb.options(i, "ReducerOptions")
        return rules.Op(rules.MEAN, name, keepdims=bool(options and options.KeepDims()),
                        spatial=_is_spatial_mean(fb, i))
    if name in ("ADD", "MUL"):
        options = fb.options(i, _OPTIONS[name])
        fused = options.FusedActivationFunction() if options else 0
        return rules.Op(rules.BINARY, name, activation=_FUSED.get(fused, "unknown"), operands=tuple(
            (fb.shape(t), fb.constant(t) is not None) for t in fb.inputs(i)
        ))
    if name in _UNARY:
        return rules.Op(rules.ACTIVATION, name, activation=_UNARY[name])
    if name == "RESIZE_BILINEAR":
        return rules.Op(rules.RESIZE, name)
    return rules.Op(rules.OTHER, name)
