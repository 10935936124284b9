"""XNNPACK's sparse-inference rules, written once over a neutral `Op`.

XNNPACK, LiteRT's default CPU delegate, runs part of a float CNN with sparse
kernels ("Fast Sparse ConvNets", Elsen et al., 2019) when the subgraph meets
the preconditions of the "Sparse Inference" section of the TFLite XNNPACK
delegate README (tensorflow/lite/delegates/xnnpack/README.md):

* start: a 3x3 convolution, stride 2, no dilation, on 3 input channels,
  padded by 1 on every side;
* end: a mean over the spatial axes that keeps them;
* in between: 1x1 convolutions (stride 1, no dilation, one group),
  depthwise convolutions 3x3/5x5 (stride 1/2, depth multiplier 1, padded by
  kernel // 2), pads folded into such a depthwise convolution, ADD/MUL of
  4-D tensors or of scalar / per-channel constants, bilinear resizing,
  spatial means, and the activations in `ACTIVATIONS`;
* at least 2/3 of the weights of those 1x1 convolutions are zero.

One walk (`tfmot_lite/core/xnnpack_walk.py`) applies them to a graph of
`Op`s, which two adapters build: from a Keras graph
(`tfmot_lite/sparsity/xnnpack_graph.py`) and from a .tflite file
(`tfmot_lite/export/inspect_graph.py`). Each rule lives here only, so the
policy and the inspector agree on what runs sparse. Messages name the
operator as the front end calls it (`Op.name`); fixes are said in Keras
terms.
"""

import dataclasses
import math

MIN_ZEROS = 2 / 3

# Op kinds.
CONV = "conv"  # a 2-D convolution (Conv2D, CONV_2D)
DEPTHWISE = "depthwise"
PAD = "pad"
MEAN = "mean"
BINARY = "binary"  # ADD or MUL (BatchNormalization and Rescaling export so)
ACTIVATION = "activation"
RESIZE = "resize_bilinear"
NOOP = "noop"  # gone at inference (Dropout, Identity)
OTHER = "other"

# Activations XNNPACK runs inside the sparse subgraph: fused into the
# convolution (relu, relu6, relu_n1_to_1) or unary operators (the rest);
# swish exports as LOGISTIC then MUL of two 4-D tensors.
ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "relu_n1_to_1", "leaky_relu", "elu", "sigmoid",
    "hard_swish", "swish", "abs", "ceil", "floor", "neg", "round", "square",
})
# Keras activation names that export under another name of `ACTIVATIONS`.
_KERAS_ALIASES = {"hard_silu": "hard_swish", "silu": "swish"}
SUPPORTED_SUMMARY = (
    "1x1 convolutions, 3x3/5x5 depthwise convolutions, pads folded into "
    "them, ADD/MUL (BatchNormalization, Rescaling), bilinear resizing, "
    "spatial means, relu/relu6/leaky_relu/elu/sigmoid/hard swish/swish"
)


@dataclasses.dataclass
class Op:
    """One operator, as the rules see it.

    `pads` is `(top, bottom, left, right)`: what a convolution applies to
    its input (None when unknown; `OpGraph` derives it from `same_padding`,
    the input size and a folded pad), or what a pad adds (None when it pads
    more than the spatial axes); `operands` are `(shape, is_constant)`
    pairs of an ADD/MUL; `feeds_valid_depthwise` says whether a pad is read
    only by a depthwise convolution that pads nothing itself; `input_hw` is
    the input's spatial size (None when unknown).
    """

    kind: str
    name: str
    kernel: tuple = (1, 1)
    strides: tuple = (1, 1)
    dilation: tuple = (1, 1)
    groups: int = 1
    depth_multiplier: int = 1
    in_channels: object = None
    input_hw: object = None
    pads: object = (0, 0, 0, 0)
    same_padding: bool = False
    activation: str = "linear"
    channels_last: bool = True
    operands: tuple = ()
    keepdims: bool = True
    spatial: bool = True
    feeds_valid_depthwise: bool = False


def keras_activation(name):
    """The rules name of Keras activation `name` (`'hard_silu'` ->
    `'hard_swish'`; None -> `'linear'`)."""
    name = name or "linear"
    return _KERAS_ALIASES.get(name, name)


# -- padding ---------------------------------------------------------------------


def same_padding(size, kernel, stride):
    """`(before, after)` that SAME padding adds along one axis."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_pads(same, input_hw, kernel, strides, folded=None):
    """`(top, bottom, left, right)` a convolution applies to its input.

    SAME padding is computed from the input size (None when unknown); VALID
    pads nothing, or what a folded pad (`folded`) added before it.
    """
    if not same:
        return tuple(folded) if folded is not None else (0, 0, 0, 0)
    if input_hw is None or None in input_hw:
        return None
    (top, bottom), (left, right) = (
        same_padding(input_hw[0], kernel[0], strides[0]),
        same_padding(input_hw[1], kernel[1], strides[1]),
    )
    return (top, bottom, left, right)


def describe_padding(pads):
    if pads is None:
        return "SAME padding on an input of unknown size"
    if len(set(pads)) == 1:
        return f"padding {pads[0]} on each side"
    return f"padding top/bottom/left/right {pads}"


# -- the rules -------------------------------------------------------------------

START_RULE = (
    "the sparse subgraph must start with a Conv2D 3x3, stride 2, no dilation, "
    "on 3 input channels, padded by 1 on each side"
)
START_FIX = (
    "make the first convolution ZeroPadding2D(1) then Conv2D(filters, 3, "
    "strides=2, padding='valid') on the 3-channel image"
)
KEEPDIMS_FIX = (
    "use GlobalAveragePooling2D(keepdims=True) followed by Flatten(); it has "
    "no weights, so model.set_weights(old_model.get_weights()) carries the "
    "trained weights over"
)


def _geometry_problems(op, kernels, strides, pads):
    """What differs in `op` from the allowed kernels, strides and padding
    (`pads(kernel)`: the padding a kernel needs), with no dilation."""
    problems = []
    if op.kernel not in kernels:
        problems.append(f"kernel {op.kernel}")
    if op.strides not in strides:
        problems.append(f"strides {op.strides}")
    if op.dilation != (1, 1):
        problems.append(f"dilation {op.dilation}")
    if op.depth_multiplier != 1:
        problems.append(f"depth_multiplier={op.depth_multiplier}")
    if not op.channels_last:
        problems.append("data_format='channels_first'")
    if op.kernel in kernels and op.strides in strides and op.pads != pads(op.kernel):
        problems.append(describe_padding(op.pads))
    return problems


def start_problems(op):
    """What keeps convolution `op` from starting the sparse subgraph."""
    problems = _geometry_problems(op, [(3, 3)], [(2, 2)], lambda kernel: (1, 1, 1, 1))
    if op.in_channels != 3:
        problems.append(f"{op.in_channels} input channels")
    return problems


def is_end(op):
    """A spatial mean that keeps the spatial axes ends the sparse subgraph."""
    return op.kind == MEAN and op.spatial and op.keepdims


def keepdims_problem(op):
    """`(rule, fix)` for a spatial mean that drops the spatial axes."""
    return (
        f"{op.name} needs keepdims=True: the sparse subgraph ends at a mean "
        "over the spatial axes that keeps them, and this one drops them "
        "(keep_dims=False; XNNPACK's MEAN supports only keep_dims=True)",
        KEEPDIMS_FIX,
    )


def is_sparse_1x1(op):
    """A convolution XNNPACK runs with sparse kernels: 1x1, stride 1."""
    return (
        op.kind == CONV and op.kernel == (1, 1) and op.strides == (1, 1)
        and op.dilation == (1, 1) and op.groups == 1 and op.channels_last
    )


def worth_pruning(op):
    """A sparse 1x1 convolution over more than one pixel (or an unknown
    number): XNNPACK's sparse kernels skip zero weights for every pixel of
    the feature map, so a convolution on a single pixel (squeeze-and-excite,
    a classifier head after the spatial mean) gains nothing from zeros."""
    return is_sparse_1x1(op) and op.input_hw != (1, 1)


def activation_problem(op):
    if op.activation in ACTIVATIONS:
        return None
    return (
        f"activation '{op.activation}' is not one XNNPACK runs inside the "
        "sparse subgraph",
        "use relu, relu6, leaky_relu, elu, sigmoid, hard_silu or swish",
    )


def _conv_problem(op):
    if not is_sparse_1x1(op):
        return (
            f"a {op.name} inside the sparse subgraph must be 1x1 with stride "
            f"1, no dilation and one group; this one has kernel {op.kernel}, "
            f"strides {op.strides}",
            "replace it with DepthwiseConv2D then Conv2D 1x1, or move it "
            "before the start convolution or after the "
            "GlobalAveragePooling2D(keepdims=True)",
        )
    return activation_problem(op)


def _depthwise_problem(op):
    problems = _geometry_problems(
        op, [(3, 3), (5, 5)], [(1, 1), (2, 2)], lambda kernel: (kernel[0] // 2,) * 4
    )
    if problems:
        return (
            f"a {op.name} inside the sparse subgraph must be 3x3 or 5x5, "
            "stride 1 or 2, no dilation, depth_multiplier 1, padded by "
            "kernel//2 on each side; this one has " + ", ".join(problems),
            "use padding='same' at stride 1, or ZeroPadding2D(kernel // 2) "
            "then padding='valid' at stride 2",
        )
    return activation_problem(op)


def _binary_problem(op):
    for shape, constant in op.operands:
        rank = len(shape) if shape is not None else None
        if rank == 4 and constant and math.prod(shape[:3]) != 1:
            return (
                f"{op.name} inside the sparse subgraph with a 4-D constant "
                f"operand of shape {tuple(shape)} that is not per-channel",
                "scale and shift per channel (BatchNormalization(axis=-1)), "
                "or do it before the start convolution",
            )
        if rank != 4 and not (constant and rank is not None and rank <= 1):
            return (
                f"{op.name} inside the sparse subgraph must combine 4-D "
                f"tensors (or scalar / per-channel constants); it receives a "
                f"rank-{rank} operand",
                "keep the operands as (batch, height, width, channels) "
                "tensors, e.g. GlobalAveragePooling2D(keepdims=True) instead "
                "of a flat vector",
            )
    return activation_problem(op)


def _other_problem(op):
    return (
        f"{op.name} is not supported inside a sparse subgraph (XNNPACK runs "
        f"only {SUPPORTED_SUMMARY})",
        "move it before the start convolution or after the "
        "GlobalAveragePooling2D(keepdims=True), or replace it with a "
        "supported layer",
    )


def inside_problem(op):
    """`(rule, fix)` when `op` cannot run inside the sparse subgraph, else None."""
    if op.kind == CONV:
        return _conv_problem(op)
    if op.kind == DEPTHWISE:
        return _depthwise_problem(op)
    if op.kind == PAD:
        if op.feeds_valid_depthwise:
            return None
        return (
            f"a {op.name} inside the sparse subgraph must feed a single "
            "DepthwiseConv2D with padding='valid', into which XNNPACK folds it",
            "pad each depthwise convolution separately, or use "
            "padding='same' for stride-1 depthwise convolutions",
        )
    if op.kind == MEAN and op.spatial:
        return None if op.keepdims else keepdims_problem(op)
    if op.kind == BINARY:
        return _binary_problem(op)
    if op.kind == ACTIVATION:
        return activation_problem(op)
    if op.kind in (RESIZE, NOOP):
        return None
    return _other_problem(op)


def zeros_verdict(zeros, total, count):
    """`(passed, detail)` for the zeros of `count` 1x1 convolutions."""
    fraction = zeros / total
    return fraction >= MIN_ZEROS, (
        f"{fraction:.1%} of the {total} weights of {count} 1x1 CONV_2D are "
        f"zero (needs at least {MIN_ZEROS:.1%})"
    )
