"""`xnnpack_sparsity_report(model)`: why a Keras model can or cannot run
sparse on XNNPACK, layer by layer, in Keras terms.

The walk (`tfmot_lite/core/xnnpack_walk.py`, over the Keras adapter in
`xnnpack_graph.py`) finds the sparse subgraph; this module words what it
found as `Finding`s (layer path, rule, fix), one per layer, the first
problem on each path only: the layers after a problem are not blamed for
it. `PruneForLatencyOnXNNPack` raises the report's findings as one
ValueError.
"""

import dataclasses

from tfmot_lite.core import graph, xnnpack_walk
from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.sparsity.xnnpack_graph import op_graph


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
    dataflow = graph.DataflowGraph(model)
    ops = op_graph(dataflow)
    found = xnnpack_walk.walk(ops)
    inside = found.with_role(xnnpack_walk.INSIDE, clean_only=True)
    pruned = found.pointwise(clean_only=True)
    findings = _findings(found)
    if found.starts and found.ends and not pruned and not findings:
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
    position = {call.path: i for i, call in enumerate(dataflow.ops)}
    report.findings = sorted(
        unique, key=lambda f: position.get(f.path, len(position))
    )
    report.start_layers = [call.path for call in found.starts]
    report.end_layers = [call.path for call in found.ends]
    report.subgraph_layers = [call.path for call in inside]
    report.pruned_layers = list(dict.fromkeys(call.path for call in pruned))
    report.pruned_names = frozenset(graph.core_layer(call.layer).name for call in pruned)
    return report


def _findings(found):
    """The walk's problems as `Finding`s: starts, then ends, then the first
    problem on each path inside."""
    ops = found.graph.ops
    findings = [
        _finding(call, f"{rules.START_RULE}; this one has " + ", ".join(problems),
                 rules.START_FIX)
        for call, problems in found.rejected
    ]
    findings += [
        _no_start_finding("a model input" if call is None else f"layer '{call.path}'")
        for call in found.unstarted
    ]
    for last, flat_means in found.open_outputs:
        findings += [_finding(call, *rules.keepdims_problem(ops[call])) for call in flat_means]
        if not flat_means:
            findings.append(Finding(
                None, None,
                f"the output of layer '{last.path}' is not computed "
                "through a GlobalAveragePooling2D(keepdims=True): the "
                "sparse subgraph must end in a mean over the spatial axes",
                "end the convolutional part with "
                "GlobalAveragePooling2D(keepdims=True), then Flatten() "
                "before any Dense head",
            ))
    for role in (xnnpack_walk.PROBLEM, xnnpack_walk.FLAT_END):
        findings += [
            _finding(call, *found.visits[call].problem)
            for call in found.with_role(role, clean_only=True)
        ]
    return findings


def _finding(call, rule, fix):
    return Finding(call.path, type(graph.core_layer(call.layer)).__name__, rule, fix)


def _no_start_finding(where):
    return Finding(
        None, None,
        f"no Conv2D between a model input and the output of {where}: the "
        "sparse subgraph must start with a 3x3 stride-2 Conv2D on the image",
        "begin the network with ZeroPadding2D(1) then Conv2D(filters, 3, "
        "strides=2, padding='valid')",
    )
