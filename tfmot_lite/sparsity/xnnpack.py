"""Pruning for XNNPACK's sparse inference: `PruneForLatencyOnXNNPack`.

XNNPACK, LiteRT's default CPU delegate, runs part of a float CNN with sparse
kernels when the subgraph meets the rules in `tfmot_lite/core/xnnpack_rules.py`
(the .tflite inspector checks the same rules on the exported file). This
module translates each Keras layer call of a `graph.DataflowGraph` into a
rules `Op` and walks the graph. In Keras terms:

* Start: a Conv2D 3x3, stride 2, no dilation, on 3 input channels, padded by
  1 on every side. Keras' `padding='same'` pads 0 before and 1 after on even
  inputs, so write `ZeroPadding2D(1)` then `Conv2D(..., 3, strides=2,
  padding='valid')` (XNNPACK folds the pad into the convolution). It must be
  the first Conv2D on every path from a model input.
* End: `GlobalAveragePooling2D(keepdims=True)`; Flatten and a Dense head may
  follow. Every model output must be computed through such an end.
* In between: Conv2D 1x1 (the layers this policy prunes), DepthwiseConv2D
  3x3/5x5 padded by kernel // 2, ZeroPadding2D feeding one 'valid'
  DepthwiseConv2D, BatchNormalization over channels and Rescaling by scalars
  or per-channel vectors (they export as MUL/ADD with constants), Add and
  Multiply of 4-D tensors, bilinear UpSampling2D, GlobalAveragePooling2D
  (keepdims=True), the activations relu, relu6, leaky relu, elu (alpha 1),
  sigmoid, hard swish and swish, and layers that vanish at inference
  (Dropout and its kin, Identity).
* Layers before the start and after the end run dense and are unrestricted.

`xnnpack_sparsity_report(model)` returns every finding at once; the policy
raises them as one ValueError. tfmot's own policy is
tensorflow_model_optimization/python/core/sparsity/keras/pruning_policy.py.
"""

import dataclasses

import keras
import numpy as np

from tfmot_lite.core import graph, layer_kinds
from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.sparsity.policy import PruningPolicy

L = keras.layers

# Layers that are the identity at inference and disappear from the export.
_NO_OPS = (
    L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
    L.ActivityRegularization, L.Identity,
)
# Keras activation names that export under another rules name.
_ACTIVATION_NAMES = {"hard_silu": "hard_swish", "silu": "swish"}


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
      pruned_layers: paths of the 1x1 Conv2D layers in between, which
        XNNPACK runs sparse; the policy prunes those on feature maps larger
        than one pixel (`xnnpack_rules.worth_pruning`).
      pruned_names: their layer names, for display.
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
    ops = {op: _as_op(op, g) for op in g.ops}
    findings = []
    starts, candidates = _find_starts(g, ops, findings)
    ends = _find_ends(g, ops, findings)
    # Walk from rejected start convolutions too, to report every problem.
    inside = _walk_subgraph(g, ops, starts + candidates, ends, findings)
    pruned = [op for op in inside if rules.is_sparse_1x1(ops[op])]
    if starts and ends and not pruned and not findings:
        findings.append(Finding(
            None, None,
            "the sparse subgraph holds no 1x1 Conv2D, so pruning cannot reach "
            f"the {rules.MIN_ZEROS:.1%} zeros XNNPACK needs in its 1x1 "
            "convolutions",
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


def _dfs(stack, expand):
    """Visits each op reachable from `stack` once; `expand(op)` returns the
    ops to visit next."""
    seen = set()
    while stack:
        op = stack.pop()
        if op not in seen:
            seen.add(op)
            stack.extend(expand(op))


def _find_starts(g, ops, findings):
    """The first Conv2D on every path from each model input must be a start.

    Returns the valid starts and the Conv2D layers rejected as starts.
    """
    starts, rejected = [], []

    def expand(op):
        if ops[op].kind == rules.CONV:
            problems = rules.start_problems(ops[op])
            if problems:
                findings.append(_finding(
                    op, f"{rules.START_RULE}; this one has " + ", ".join(problems),
                    rules.START_FIX,
                ))
                rejected.append(op)
            elif op not in starts:
                starts.append(op)
            return []
        following = g.next_ops(op)
        if not following:
            findings.append(_no_start_finding(f"layer '{op.path}'"))
        return following

    for tensor in g.inputs:
        if not g.consumers[tensor]:
            findings.append(_no_start_finding("a model input"))
        _dfs(list(g.consumers[tensor]), expand)
    return starts, rejected


def _finding(op, rule, fix):
    return Finding(op.path, type(graph.core_layer(op.layer)).__name__, rule, fix)


def _no_start_finding(where):
    return Finding(
        None, None,
        f"no Conv2D between a model input and the output of {where}: the "
        "sparse subgraph must start with a 3x3 stride-2 Conv2D on the image",
        "begin the network with ZeroPadding2D(1) then Conv2D(filters, 3, "
        "strides=2, padding='valid')",
    )


def _find_ends(g, ops, findings):
    """Every model output must be computed through a spatial mean."""
    ends = []
    model_inputs = set(g.inputs)
    for tensor in g.outputs:
        if tensor in model_inputs:
            continue  # An input passed through untouched; nothing to run.
        last = g.producer[tensor]
        flat_means, failed = [], []

        def expand(op):
            if rules.is_end(ops[op]):
                if op not in ends:
                    ends.append(op)
                return []
            if ops[op].kind == rules.MEAN:
                flat_means.append(op)
            failed.extend(t for t in op.inputs if t not in g.producer)
            return [g.producer[t] for t in op.inputs if t in g.producer]

        _dfs([last], expand)
        if failed and flat_means:
            for op in flat_means:
                rule, fix = rules.keepdims_problem(ops[op])
                findings.append(_finding(op, rule, fix))
        elif failed:
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


def _walk_subgraph(g, ops, starts, ends, findings):
    """Checks every layer reachable from a start before an end."""
    inside = []

    def expand(op):
        if op in ends or op in starts:
            return [] if op in ends else g.next_ops(op)
        problem = rules.inside_problem(ops[op])
        if problem is not None:
            findings.append(_finding(op, *problem))
            return []  # Do not blame the layers downstream of a problem.
        inside.append(op)
        return g.next_ops(op)

    _dfs(list(starts), expand)
    order = {op: i for i, op in enumerate(g.ops)}
    return sorted(inside, key=order.get)


# -- Keras layers as rules Ops -------------------------------------------------


def _activation_name(function):
    name = layer_kinds.activation_name(function) or "linear"
    return _ACTIVATION_NAMES.get(name, name)


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
        activation=_activation_name(layer.activation),
        channels_last=layer.data_format == "channels_last",
        in_channels=shape[-1] if shape else None,
        input_hw=_spatial(shape),
    )


def _built_input_shape(layer):
    config = layer.get_build_config() if layer.built else None
    shape = (config or {}).get("input_shape")
    return tuple(shape) if shape else None


def layer_op(layer):
    """The rules `Op` of a (possibly wrapped) layer alone, outside any graph:
    what `allow_pruning` decides from."""
    layer = graph.core_layer(layer)
    if not isinstance(layer, L.Conv2D):
        return rules.Op(rules.OTHER, type(layer).__name__)
    fields = _conv_fields(layer, _built_input_shape(layer))
    return rules.Op(rules.CONV, "Conv2D", groups=layer.groups, **fields)


def _folded_pad(op, g):
    """What a ZeroPadding2D read only by `op` adds to its input."""
    producer = g.producer.get(op.inputs[0])
    if producer is None or len(g.next_ops(producer)) != 1:
        return None
    pad = graph.core_layer(producer.layer)
    if not isinstance(pad, L.ZeroPadding2D):
        return None
    (top, bottom), (left, right) = pad.padding
    return (top, bottom, left, right)


def _as_op(op, g):
    """The rules `Op` of layer call `op` of DataflowGraph `g`."""
    layer = graph.core_layer(op.layer)
    name = type(layer).__name__
    shape = g.input_shape(op)
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)):
        fields = _conv_fields(layer, shape)
        fields["pads"] = rules.conv_pads(
            layer.padding == "same", fields["input_hw"], fields["kernel"],
            fields["strides"], _folded_pad(op, g),
        )
        if isinstance(layer, L.Conv2D):
            return rules.Op(rules.CONV, name, groups=layer.groups, **fields)
        return rules.Op(rules.DEPTHWISE, name, depth_multiplier=layer.depth_multiplier, **fields)
    if isinstance(layer, L.ZeroPadding2D):
        following = [graph.core_layer(n.layer) for n in g.next_ops(op)]
        return rules.Op(rules.PAD, name, feeds_valid_depthwise=(
            len(following) == 1 and isinstance(following[0], L.DepthwiseConv2D)
            and following[0].padding == "valid"
        ))
    if isinstance(layer, L.GlobalAveragePooling2D):
        return rules.Op(rules.MEAN, name, keepdims=layer.keepdims)
    if isinstance(layer, (L.Add, L.Multiply)):
        return rules.Op(rules.BINARY, name, operands=tuple(
            (g.shapes.get(t), False) for t in op.inputs
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
        return rules.Op(rules.ACTIVATION, name, activation=_activation_name(layer.activation))
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
    return rules.Op(rules.OTHER, name)


# -- the policy ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfmot_lite")
class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only the 1x1 Conv2D layers of XNNPACK's sparse subgraph.

    `ensure_model_supports_pruning` raises one ValueError listing every layer
    that keeps the model from running sparse on XNNPACK (see
    `tfmot_lite/core/xnnpack_rules.py`); `allow_pruning` admits the 1x1 Conv2D
    layers XNNPACK runs with sparse kernels over feature maps larger than
    one pixel, and nothing else: the start convolution, depthwise
    convolutions, squeeze-and-excite convolutions and a 1x1 classifier head
    after the spatial mean stay dense.

    The policy holds no state: each call decides from its argument alone,
    so the two methods may be called in any order, on any models.

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

    def ensure_model_supports_pruning(self, model):
        xnnpack_sparsity_report(model).raise_if_unsupported()

    def allow_pruning(self, layer):
        return rules.worth_pruning(layer_op(layer))

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return "PruneForLatencyOnXNNPack()"
