"""Pruning for XNNPACK's sparse inference: `PruneForLatencyOnXNNPack`.

XNNPACK, LiteRT's default CPU delegate, can run part of a float CNN with
sparse kernels ("Fast Sparse ConvNets", Elsen et al., 2019,
https://arxiv.org/abs/1911.09723). It does so only for a subgraph that meets
the preconditions of the "Sparse Inference" section of the TFLite XNNPACK
delegate README (tensorflow/lite/delegates/xnnpack/README.md). In Keras
terms, as checked here:

* Start: a Conv2D 3x3, stride 2, no dilation, on 3 input channels, padded by
  1 on every side. Keras' `padding='same'` pads 0 before and 1 after on even
  inputs, so write `ZeroPadding2D(1)` then `Conv2D(..., 3, strides=2,
  padding='valid')` (XNNPACK folds the pad into the convolution).
* End: a mean over the spatial axes, `GlobalAveragePooling2D(keepdims=True)`
  (the delegate's MEAN keeps the spatial axes); Flatten and a Dense head may
  follow. Every model output must be computed through such an end.
* In between, only layers that become operators of the documented list:
  - Conv2D 1x1, stride 1, no dilation, one group. XNNPACK engages sparse
    kernels when at least 2/3 of the weights of these convolutions are zero,
    so they are the layers this policy prunes;
  - DepthwiseConv2D 3x3 or 5x5, stride 1 or 2, no dilation, depth multiplier
    1, padded by kernel // 2 on every side ('same' at stride 1, or
    `ZeroPadding2D(k // 2)` then 'valid');
  - ZeroPadding2D feeding only such a 'valid' DepthwiseConv2D;
  - BatchNormalization over channels (folded into the convolution, or MUL and
    ADD with 1-D constants), Rescaling by scalars or per-channel vectors;
  - activations that export as XNNPACK unary operators: relu, relu6, leaky
    relu, elu (alpha 1), sigmoid, hard swish, and swish (sigmoid times x);
  - Add and Multiply of 4-D tensors; UpSampling2D(interpolation='bilinear');
    GlobalAveragePooling2D(keepdims=True) (squeeze-and-excite blocks);
  - layers that vanish at inference (Dropout and its kin, Identity).
* Layers before the start and after the end run dense and are unrestricted.

`xnnpack_sparsity_report(model)` returns every finding at once; the policy
raises them as one ValueError. tfmot's own policy is
tensorflow_model_optimization/python/core/sparsity/keras/pruning_policy.py.
"""

import dataclasses
import math

import keras
import numpy as np

from tfmot_lite import graph
from tfmot_lite.sparsity.policy import PruningPolicy

L = keras.layers

# Activation functions that export as operators XNNPACK runs sparse: fused
# into the convolution (relu, relu6) or as unary ops (LEAKY_RELU, ELU,
# LOGISTIC, HARD_SWISH), swish as LOGISTIC then MUL of two 4-D tensors.
_ACTIVATIONS = {
    "linear", "relu", "relu6", "leaky_relu", "elu", "sigmoid",
    "hard_silu", "hard_swish", "silu", "swish",
}
# Layers that are the identity at inference and disappear from the export.
_NO_OPS = (
    L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
    L.ActivityRegularization, L.Identity,
)
_SUPPORTED_SUMMARY = (
    "1x1 Conv2D, DepthwiseConv2D 3x3/5x5, BatchNormalization, "
    "ReLU/ReLU6/LeakyReLU/ELU/sigmoid/hard swish, Add, Multiply, "
    "ZeroPadding2D before a depthwise convolution, bilinear UpSampling2D, "
    "Dropout"
)


def is_sparse_1x1_conv(layer):
    """A Conv2D that XNNPACK's sparse subgraph accepts: 1x1, stride 1."""
    layer = graph.core_layer(layer)
    return (
        isinstance(layer, L.Conv2D)
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
    )


# -- findings and the report ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Finding:
    """One reason a model cannot run sparse: where, which rule, what to do.

    `path` is the layer's path (`"backbone/conv2d_1"`); model-level findings
    have `path=None` and name what they concern in `rule`.
    """

    path: object
    layer_class: object
    rule: str
    fix: str

    def __str__(self):
        where = f"layer '{self.path}': " if self.path else ""
        return f"{where}{self.rule}. Fix: {self.fix}"


@dataclasses.dataclass
class XNNPackSparsityReport:
    """What `xnnpack_sparsity_report` found in a model.

    Attributes:
      model_name: the model checked.
      findings: every `Finding`; empty when the model fits.
      start_layers, end_layers: paths of the convolutions that start the
        sparse subgraph and of the spatial means that end it.
      subgraph_layers: paths of the layers in between.
      pruned_layers: paths of the 1x1 Conv2D layers the policy prunes.
      pruned_names: their layer names (what `allow_pruning` compares).
    """

    model_name: str
    findings: list = dataclasses.field(default_factory=list)
    start_layers: list = dataclasses.field(default_factory=list)
    end_layers: list = dataclasses.field(default_factory=list)
    subgraph_layers: list = dataclasses.field(default_factory=list)
    pruned_layers: list = dataclasses.field(default_factory=list)
    pruned_names: frozenset = frozenset()

    @property
    def supported(self):
        return not self.findings

    def __bool__(self):
        return self.supported

    def __str__(self):
        if self.findings:
            n = len(self.findings)
            lines = [
                f"Model '{self.model_name}' cannot use XNNPACK sparse "
                f"inference ({n} problem{'s' if n > 1 else ''}):"
            ]
            lines += [f"  - {finding}" for finding in self.findings]
            return "\n".join(lines)
        return "\n".join([
            f"Model '{self.model_name}' fits XNNPACK sparse inference.",
            f"  starts at: {', '.join(self.start_layers)}",
            f"  ends at:   {', '.join(self.end_layers)}",
            f"  layers in between: {len(self.subgraph_layers)}",
            f"  1x1 Conv2D to prune: {', '.join(self.pruned_layers)}",
        ])

    def error(self):
        """The ValueError that `PruneForLatencyOnXNNPack` raises."""
        return ValueError(
            f"PruneForLatencyOnXNNPack: {self}\nOnly models that XNNPACK can "
            "run sparse are pruned with this policy (TFLite XNNPACK delegate "
            "README, 'Sparse Inference')."
        )

    def raise_if_unsupported(self):
        if self.findings:
            raise self.error()


def xnnpack_sparsity_report(model):
    """Checks `model` against XNNPACK's sparse-inference preconditions.

    Nothing is raised and `model` is not modified: the result lists every
    offending layer with the rule it breaks and the fix, or, when the model
    fits, where the sparse subgraph starts and ends and which 1x1 Conv2D
    layers would be pruned. Print it, or call `raise_if_unsupported()`.
    """
    name = getattr(model, "name", type(model).__name__)
    report = XNNPackSparsityReport(name)
    if not graph.is_graph_model(model):
        report.findings.append(Finding(
            None, None,
            f"'{name}' is not a Sequential or Functional model, so its layer "
            "connections cannot be checked",
            "build the model with the Sequential or Functional API",
        ))
        return report
    if not model.built or not getattr(model, "inputs", None):
        report.findings.append(Finding(
            None, None,
            f"model '{name}' is not built, so its input channels and "
            "paddings are unknown",
            "start it with `keras.Input(shape)` or call it on data first",
        ))
        return report
    g = graph.DataflowGraph(model)
    findings = []
    starts, candidates = _find_starts(g, findings)
    ends = _find_ends(g, findings)
    # Walk from rejected start convolutions too, to report every problem.
    inside = _walk_subgraph(g, starts + candidates, ends, findings)
    pruned = [op for op in inside if is_sparse_1x1_conv(op.layer)]
    if starts and ends and not pruned and not findings:
        findings.append(Finding(
            None, None,
            "the sparse subgraph holds no 1x1 Conv2D, so pruning cannot reach "
            "the 2/3 zeros XNNPACK needs in its 1x1 convolutions",
            "build the network from depthwise-separable blocks "
            "(DepthwiseConv2D then Conv2D 1x1)",
        ))
    seen, unique = set(), []
    for finding in findings:  # One finding per layer: the first is the cause.
        key = finding.path or finding.rule
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    position = {op.path: i for i, op in enumerate(g.ops)}
    report.findings = sorted(
        unique, key=lambda f: position.get(f.path, len(position))
    )
    report.start_layers = [op.path for op in starts]
    report.end_layers = [op.path for op in ends]
    report.subgraph_layers = [op.path for op in inside]
    report.pruned_layers = list(dict.fromkeys(op.path for op in pruned))
    report.pruned_names = frozenset(graph.core_layer(op.layer).name for op in pruned)
    return report


# -- the three searches -----------------------------------------------------------


def _find_starts(g, findings):
    """The first Conv2D on every path from each model input must be a start.

    Returns the valid starts and the Conv2D layers rejected as starts.
    """
    starts, rejected = [], []
    for tensor in g.inputs:
        stack, seen = list(g.consumers[tensor]), set()
        if not stack:
            findings.append(_no_start_finding("a model input"))
        while stack:
            op = stack.pop()
            if op in seen:
                continue
            seen.add(op)
            if isinstance(graph.core_layer(op.layer), L.Conv2D):
                problems = _start_problems(op, g)
                if problems:
                    findings.append(Finding(
                        op.path, type(graph.core_layer(op.layer)).__name__,
                        "the sparse subgraph must start with a Conv2D 3x3, "
                        "stride 2, no dilation, on 3 input channels, padded "
                        "by 1 on each side; this one has "
                        + ", ".join(problems),
                        "make the first convolution ZeroPadding2D(1) then "
                        "Conv2D(filters, 3, strides=2, padding='valid') on "
                        "the 3-channel image",
                    ))
                    rejected.append(op)
                elif op not in starts:
                    starts.append(op)
                continue
            following = g.next_ops(op)
            if not following:
                findings.append(_no_start_finding(f"layer '{op.path}'"))
            stack.extend(following)
    return starts, rejected


def _no_start_finding(where):
    return Finding(
        None, None,
        f"no Conv2D between a model input and the output of {where}: the "
        "sparse subgraph must start with a 3x3 stride-2 Conv2D on the image",
        "begin the network with ZeroPadding2D(1) then Conv2D(filters, 3, "
        "strides=2, padding='valid')",
    )


def _find_ends(g, findings):
    """Every model output must be computed through a spatial mean."""
    ends = []
    model_inputs = set(g.inputs)
    for tensor in g.outputs:
        if tensor in model_inputs:
            continue  # An input passed through untouched; nothing to run.
        last = g.producer[tensor]
        stack, seen, failed, flat_means = [last], set(), False, []
        while stack:
            op = stack.pop()
            if op in seen:
                continue
            seen.add(op)
            if isinstance(graph.core_layer(op.layer), L.GlobalAveragePooling2D):
                if graph.core_layer(op.layer).keepdims:
                    if op not in ends:
                        ends.append(op)
                    continue
                flat_means.append(op)
            for t in op.inputs:
                if t in g.producer:
                    stack.append(g.producer[t])
                else:
                    failed = True
        if failed:
            if flat_means:
                findings += [_keepdims_finding(op) for op in flat_means]
            else:
                findings.append(Finding(
                    None, None,
                    f"the output of layer '{last.path}' is not computed "
                    "through a GlobalAveragePooling2D(keepdims=True): the "
                    "sparse subgraph must end in a mean over the spatial axes",
                    "end the convolutional part with "
                    "GlobalAveragePooling2D(keepdims=True), then Flatten() "
                    "before any Dense head",
                ))
    return ends


def _keepdims_finding(op):
    return Finding(
        op.path, "GlobalAveragePooling2D",
        "GlobalAveragePooling2D needs keepdims=True: the sparse subgraph ends "
        "at a mean over the spatial axes that keeps them (XNNPACK's MEAN "
        "supports only keep_dims=True)",
        "use GlobalAveragePooling2D(keepdims=True) followed by Flatten(); it "
        "has no weights, so model.set_weights(old_model.get_weights()) "
        "carries the trained weights over",
    )


def _walk_subgraph(g, starts, ends, findings):
    """Checks every layer reachable from a start before an end."""
    inside, seen = [], set(starts)
    stack = [op for start in starts for op in g.next_ops(start)]
    while stack:
        op = stack.pop()
        if op in seen or op in ends:
            continue
        seen.add(op)
        problem = _inside_problem(op, g)
        if problem is not None:
            rule, fix = problem
            findings.append(Finding(op.path, type(graph.core_layer(op.layer)).__name__, rule, fix))
            continue  # Do not blame the layers downstream of a problem.
        inside.append(op)
        stack.extend(g.next_ops(op))
    order = {op: i for i, op in enumerate(g.ops)}
    return sorted(inside, key=order.get)


# -- rules for single layers ---------------------------------------------------------


def _activation_problem(layer):
    name = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if name in _ACTIVATIONS:
        return None
    return (
        f"activation '{name}' is not one XNNPACK runs inside the sparse "
        "subgraph",
        "use relu, relu6, leaky_relu, elu, sigmoid, hard_silu or swish",
    )


def _effective_padding(op, g, kernel, strides):
    """`(top, bottom, left, right)` that the export will apply, or None."""
    layer = graph.core_layer(op.layer)
    if layer.padding == "valid":
        producer = g.producer.get(op.inputs[0])
        if (
            producer is not None
            and isinstance(graph.core_layer(producer.layer), L.ZeroPadding2D)
            and len(g.next_ops(producer)) == 1
        ):
            (top, bottom), (left, right) = graph.core_layer(producer.layer).padding
            return (top, bottom, left, right)
        return (0, 0, 0, 0)
    shape = g.input_shape(op)
    if shape is None or shape[1] is None or shape[2] is None:
        return None
    pads = []
    for size, k, s in zip(shape[1:3], kernel, strides):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _describe_padding(layer, pads):
    if pads is None:
        return f"padding='{layer.padding}' on an input of unknown size"
    if len(set(pads)) == 1:
        return f"padding {pads[0]} on each side"
    return f"padding top/bottom/left/right {pads} (padding='{layer.padding}')"


def _start_problems(op, g):
    layer = graph.core_layer(op.layer)
    problems = []
    kernel, strides = tuple(layer.kernel_size), tuple(layer.strides)
    if kernel != (3, 3):
        problems.append(f"kernel {kernel}")
    if strides != (2, 2):
        problems.append(f"strides {strides}")
    if tuple(layer.dilation_rate) != (1, 1):
        problems.append(f"dilation {tuple(layer.dilation_rate)}")
    shape = g.input_shape(op)
    channels = shape[-1] if shape else None
    if channels != 3:
        problems.append(f"{channels} input channels")
    if layer.data_format != "channels_last":
        problems.append("data_format='channels_first'")
    if kernel == (3, 3) and strides == (2, 2):
        pads = _effective_padding(op, g, kernel, strides)
        if pads != (1, 1, 1, 1):
            problems.append(_describe_padding(layer, pads))
    return problems


def _depthwise_problem(op, g):
    layer = graph.core_layer(op.layer)
    kernel, strides = tuple(layer.kernel_size), tuple(layer.strides)
    problems = []
    if kernel not in ((3, 3), (5, 5)):
        problems.append(f"kernel {kernel}")
    if strides not in ((1, 1), (2, 2)):
        problems.append(f"strides {strides}")
    if tuple(layer.dilation_rate) != (1, 1):
        problems.append(f"dilation {tuple(layer.dilation_rate)}")
    if layer.depth_multiplier != 1:
        problems.append(f"depth_multiplier={layer.depth_multiplier}")
    if layer.data_format != "channels_last":
        problems.append("data_format='channels_first'")
    if kernel in ((3, 3), (5, 5)):
        pads = _effective_padding(op, g, kernel, strides)
        if pads != (kernel[0] // 2,) * 4:
            problems.append(_describe_padding(layer, pads))
    if problems:
        return (
            "a DepthwiseConv2D inside the sparse subgraph must be 3x3 or 5x5, "
            "stride 1 or 2, no dilation, depth_multiplier 1, padded by "
            "kernel//2 on each side; this one has " + ", ".join(problems),
            "use padding='same' at stride 1, or ZeroPadding2D(kernel // 2) "
            "then padding='valid' at stride 2",
        )
    return _activation_problem(layer)


def _inside_problem(op, g):
    """`(rule, fix)` when `op` cannot run inside the sparse subgraph."""
    layer = graph.core_layer(op.layer)
    name = type(layer).__name__
    if isinstance(layer, L.Conv2D):
        if not is_sparse_1x1_conv(layer):
            return (
                f"a Conv2D inside the sparse subgraph must be 1x1 with stride "
                f"1, no dilation and one group; this one has kernel "
                f"{tuple(layer.kernel_size)}, strides {tuple(layer.strides)}",
                "replace it with DepthwiseConv2D then Conv2D 1x1, or move it "
                "before the start convolution or after the "
                "GlobalAveragePooling2D(keepdims=True)",
            )
        return _activation_problem(layer)
    if isinstance(layer, L.DepthwiseConv2D):
        return _depthwise_problem(op, g)
    if isinstance(layer, L.ZeroPadding2D):
        following = g.next_ops(op)
        if len(following) != 1 or not (
            isinstance(graph.core_layer(following[0].layer), L.DepthwiseConv2D)
            and graph.core_layer(following[0].layer).padding == "valid"
        ):
            return (
                "a ZeroPadding2D inside the sparse subgraph must feed a single "
                "DepthwiseConv2D with padding='valid', into which XNNPACK "
                "folds it",
                "pad each depthwise convolution separately, or use "
                "padding='same' for stride-1 depthwise convolutions",
            )
        return None
    if isinstance(layer, L.GlobalAveragePooling2D):
        if layer.keepdims:
            return None  # A spatial mean inside, e.g. squeeze-and-excite.
        finding = _keepdims_finding(op)
        return finding.rule, finding.fix
    if isinstance(layer, L.BatchNormalization):
        if layer.axis in (-1, 3):
            return None
        return (
            f"BatchNormalization over axis {layer.axis}: only the channel "
            "axis (-1) exports as a per-channel scale and shift",
            "use BatchNormalization(axis=-1) on channels_last tensors",
        )
    if isinstance(layer, (L.Add, L.Multiply)):
        ranks = {len(g.shapes[t]) for t in op.inputs if g.shapes.get(t)}
        if ranks - {4}:
            return (
                f"{name} inside the sparse subgraph must combine 4-D tensors; "
                f"it receives rank {sorted(ranks)}",
                "keep both operands as (batch, height, width, channels) "
                "tensors, e.g. GlobalAveragePooling2D(keepdims=True) instead "
                "of a flat vector",
            )
        return None
    if isinstance(layer, L.UpSampling2D):
        if layer.interpolation == "bilinear":
            return None
        return (
            f"UpSampling2D(interpolation='{layer.interpolation}') exports as "
            "an operator XNNPACK does not run sparse",
            "use UpSampling2D(interpolation='bilinear')",
        )
    if isinstance(layer, L.Activation):
        return _activation_problem(layer)
    if isinstance(layer, L.ReLU):
        if layer.threshold == 0 and (
            (layer.negative_slope == 0 and layer.max_value in (None, 6))
            or (layer.negative_slope > 0 and layer.max_value is None)
        ):
            return None
        return (
            "ReLU with threshold, or with both max_value and negative_slope, "
            "has no XNNPACK sparse operator",
            "use ReLU(), ReLU(max_value=6) or LeakyReLU",
        )
    if isinstance(layer, L.LeakyReLU):
        return None
    if isinstance(layer, L.ELU):
        if float(layer.alpha) == 1.0:
            return None
        return (
            f"ELU(alpha={layer.alpha}) exports as several operators; only "
            "alpha=1 is a single ELU",
            "use ELU() (alpha=1)",
        )
    if isinstance(layer, L.Rescaling):
        if np.ndim(layer.scale) <= 1 and np.ndim(layer.offset) <= 1:
            return None
        return (
            "Rescaling inside the sparse subgraph must use scalar or "
            "per-channel scale and offset",
            "rescale before the start convolution",
        )
    if isinstance(layer, _NO_OPS):
        return None
    return (
        f"{name} is not among the operators XNNPACK runs inside a sparse "
        f"subgraph ({_SUPPORTED_SUMMARY})",
        "move it before the start convolution or after the "
        "GlobalAveragePooling2D(keepdims=True), or replace it with a "
        "supported layer",
    )


# -- the policy ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfmot_lite")
class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only the 1x1 Conv2D layers of XNNPACK's sparse subgraph.

    `ensure_model_supports_pruning` raises one ValueError listing every layer
    that keeps the model from running sparse on XNNPACK (see this module's
    docstring for the rules); `allow_pruning` then admits the 1x1 Conv2D
    layers found between the start convolution and the spatial mean, and
    nothing else: the start convolution, depthwise convolutions and the
    classifier head stay dense.

    ```python
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model,
        pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(0.25, 0.75, 0, end),
        pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack(),
    )
    ```

    Export the stripped model with
    `tfmot_lite.export.to_sparse_tflite` and check the result with
    `tfmot_lite.export.inspect_tflite`.
    """

    def __init__(self):
        self._pruned_names = None

    def ensure_model_supports_pruning(self, model):
        report = xnnpack_sparsity_report(model)
        report.raise_if_unsupported()
        self._pruned_names = report.pruned_names

    def allow_pruning(self, layer):
        if not is_sparse_1x1_conv(layer):
            return False
        # Without a checked model, every sparse-compatible 1x1 Conv2D.
        return self._pruned_names is None or graph.core_layer(layer).name in self._pruned_names

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return "PruneForLatencyOnXNNPack()"
