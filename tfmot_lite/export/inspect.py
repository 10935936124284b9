"""What a .tflite file holds, operator by operator, and whether XNNPACK can
run it sparse.

`inspect_tflite(flatbuffer)` reads the file with the `tflite` package (the
flatbuffer bindings generated from TFLite's schema) and reports, for every
operator: its type, the shape of its weight tensor, the fraction of zeros in
it, and whether it is stored sparse (a constant with sparsity parameters,
expanded by a `DENSIFY` operator at load time; `DENSIFY` rows are folded
into the operator they feed).

It then checks XNNPACK's sparse-inference preconditions on the exported
graph, with the rules of `tfmot_lite/core/xnnpack_rules.py` (the Keras-graph
policy applies the same rules before training): each operator is translated
into a rules `Op`; the walk starts at every CONV_2D that may start the
sparse subgraph, follows the data to the MEANs that end it, and checks every
operator in between. Two checks belong to the file alone:

* zeros: at least 2/3 of the filter weights of the 1x1 CONV_2D operators
  in the subgraph are zero;
* storage: those filters are stored sparse (DENSIFY). The delegate only
  hints XNNPACK to try sparse inference when the model holds sparse weights
  (`has_sparse_weights` in tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc).

The verdict says what the file allows; whether sparse kernels then run is
XNNPACK's decision on the device: it rewrites the subgraph for its sparse
(CHW) kernels only on hardware it has them for, ARM in practice; on x86 with
AVX it keeps the dense kernels.
"""

import dataclasses
import math


import numpy as np

from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.export.flatbuffer import DTYPES, Subgraph

# Index of the weight input of the operators that have one.
_WEIGHT_INPUT = {
    "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
    "TRANSPOSE_CONV": 1, "CONV_3D": 1, "EMBEDDING_LOOKUP": 1,
}
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


@dataclasses.dataclass
class OperatorInfo:
    """One operator of the .tflite graph.

    `weight_shape` and `zero_fraction` describe its weight tensor (filter or
    fully-connected matrix; None when it has none). `sparse_storage` is True
    when that tensor is stored sparse and expanded by DENSIFY. `role` is its
    place in XNNPACK's sparse subgraph: 'start', '1x1', 'inside', 'end',
    'unsupported', or '' outside it.
    """

    index: int
    op_type: str
    weight_shape: object = None
    zero_fraction: object = None
    sparse_storage: bool = False
    role: str = ""


@dataclasses.dataclass
class Check:
    """One XNNPACK sparse-inference precondition and how the file fares."""

    name: str
    passed: bool
    detail: str


@dataclasses.dataclass
class TFLiteReport:
    """Result of `inspect_tflite`: a table of operators and a verdict."""

    size_bytes: int
    operators: list
    checks: list
    densify_count: int = 0
    constant_bytes: int = 0  # Weights and other constants, as stored.

    @property
    def sparse_ready(self):
        """Whether every XNNPACK sparse-inference precondition holds."""
        return all(check.passed for check in self.checks)

    @property
    def reasons(self):
        """Why the file is not sparse-ready (empty when it is)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    @property
    def sparse_operators(self):
        return [op for op in self.operators if op.sparse_storage]

    def by_type(self, op_type):
        return [op for op in self.operators if op.op_type == op_type]

    def table(self):
        header = ("#", "operator", "weights", "zeros", "storage", "XNNPACK sparse")
        rows = [header]
        for op in self.operators:
            has_w = op.weight_shape is not None
            rows.append((
                str(op.index),
                op.op_type,
                "x".join(map(str, op.weight_shape)) if has_w else "-",
                f"{op.zero_fraction:.1%}" if has_w else "-",
                ("sparse" if op.sparse_storage else "dense") if has_w else "-",
                op.role or "-",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in rows
        )

    def __str__(self):
        verdict = "yes" if self.sparse_ready else "no"
        lines = [
            f".tflite: {self.size_bytes} bytes ({self.constant_bytes} of constant "
            f"data), {len(self.operators)} operators (+{self.densify_count} DENSIFY)",
            self.table(),
            f"XNNPACK sparse-inference preconditions hold: {verdict}",
        ]
        lines += [
            f"  [{'ok' if c.passed else 'NO'}] {c.name}: {c.detail}"
            for c in self.checks
        ]
        return "\n".join(lines)


def inspect_tflite(flatbuffer):
    """Reports on a .tflite model given as bytes or as a file path.

    Raises:
      ValueError: naming the file or argument when it is None, missing,
        empty, not a .tflite flatbuffer, or corrupt.
    """
    from tfmot_lite.export.source import read_tflite

    flatbuffer = read_tflite(flatbuffer, "flatbuffer")
    fb = _Flatbuffer(bytes(flatbuffer))
    rows = {}
    for i, name in enumerate(fb.types):
        if name == "DENSIFY":
            continue
        row = OperatorInfo(i, name)
        weight = fb.weight(i)
        if weight is not None:
            row.weight_shape, row.zero_fraction, row.sparse_storage = weight
        rows[i] = row
    checks = _xnnpack_checks(fb, rows)
    return TFLiteReport(
        size_bytes=len(flatbuffer),
        operators=list(rows.values()),
        checks=checks,
        densify_count=fb.types.count("DENSIFY"),
        constant_bytes=fb.constant_bytes(),
    )


class _Flatbuffer(Subgraph):
    """The main subgraph of a .tflite file, with what the checks read."""

    def constant_bytes(self):
        """Bytes of constant data: buffers, plus the index arrays that the
        sparse format keeps in each sparse tensor's metadata."""
        total = 0
        for i in range(self.model.BuffersLength()):
            buffer = self.model.Buffers(i)
            total += buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0)
        for t in range(self.graph.TensorsLength()):
            total += self._index_bytes(self.graph.Tensors(t).Sparsity())
        return total

    def _index_bytes(self, sparsity):
        if sparsity is None:
            return 0
        kinds = {1: ("Int32Vector", 4), 2: ("Uint16Vector", 2), 3: ("Uint8Vector", 1)}
        total = 0
        for d in range(sparsity.DimMetadataLength()):
            dim = sparsity.DimMetadata(d)
            for kind, table in (
                (dim.ArraySegmentsType(), dim.ArraySegments()),
                (dim.ArrayIndicesType(), dim.ArrayIndices()),
            ):
                if kind in kinds and table is not None:
                    name, size = kinds[kind]
                    vector = getattr(self.tflite, name)()
                    vector.Init(table.Bytes, table.Pos)
                    total += vector.ValuesLength() * size
        return total

    def options(self, i, cls_name):
        table = self.ops[i].BuiltinOptions()
        if table is None:
            return None
        options = getattr(self.tflite, cls_name)()
        options.Init(table.Bytes, table.Pos)
        return options

    def constant(self, t):
        """The values stored for tensor `t` (only the stored ones when it is
        sparse), or None when it is computed at run time."""
        raw = self.raw(t)
        if raw is None:
            return None
        tensor = self.graph.Tensors(t)
        values = np.frombuffer(raw, dtype=DTYPES.get(tensor.Type(), np.uint8))
        if tensor.Sparsity() is None and values.size == math.prod(self.shape(t)):
            return values.reshape(self.shape(t))
        return values

    def weight(self, i):
        """`(shape, zero_fraction, sparse_storage)` of op `i`'s weights."""
        index = _WEIGHT_INPUT.get(self.types[i])
        inputs = self.inputs(i)
        if index is None or index >= len(inputs) or inputs[index] < 0:
            return None
        t, sparse = self.source(inputs[index])
        if t is None:
            return None
        values = self.constant(t)
        shape = self.shape(t)
        total = math.prod(shape)
        zeros = (total - int(np.count_nonzero(values))) / total if total else 0.0
        return shape, zeros, sparse


# -- operators as xnnpack_rules Ops -------------------------------------------


def _folded_pad(fb, i):
    """What a PAD read only by conv op `i` adds to its input's H and W."""
    source = fb.inputs(i)[0]
    pad = fb.producer.get(source)
    if pad is None or fb.types[pad] not in ("PAD", "PADV2") or len(fb.consumers[source]) != 1:
        return None
    paddings = fb.constant(fb.inputs(pad)[1])
    if paddings is None or paddings.shape != (4, 2) or paddings[0].any() or paddings[3].any():
        return None
    return tuple(int(p) for p in paddings[1:3].reshape(-1))


def _conv_op(fb, i, name):
    options = fb.options(i, _OPTIONS[name])
    shape = fb.shape(fb.inputs(i)[0])
    filter_shape = fb.shape(fb.inputs(i)[1])
    kernel = (filter_shape[1], filter_shape[2])
    strides = (options.StrideH(), options.StrideW())
    in_channels = shape[-1] if len(shape) == 4 else None
    fields = dict(
        kernel=kernel, strides=strides,
        dilation=(options.DilationHFactor(), options.DilationWFactor()),
        activation=_FUSED.get(options.FusedActivationFunction(), "unknown"),
        in_channels=in_channels,
        input_hw=tuple(shape[1:3]) if len(shape) == 4 else None,
    )
    fields["pads"] = rules.conv_pads(
        options.Padding() == fb.tflite.Padding.SAME, fields["input_hw"], kernel, strides,
        _folded_pad(fb, i),
    )
    if name == "CONV_2D":
        groups = in_channels // filter_shape[3] if in_channels else 1
        return rules.Op(rules.CONV, name, groups=groups, **fields)
    multiplier = filter_shape[3] // in_channels if in_channels else 1
    return rules.Op(rules.DEPTHWISE, name, depth_multiplier=multiplier, **fields)


def _pad_feeds_valid_depthwise(fb, i):
    following = fb.consumers.get(fb.outputs(i)[0], [])
    if len(following) != 1 or fb.types[following[0]] != "DEPTHWISE_CONV_2D":
        return False
    options = fb.options(following[0], "DepthwiseConv2DOptions")
    return options.Padding() == fb.tflite.Padding.VALID


def _is_spatial_mean(fb, i):
    axes = fb.constant(fb.inputs(i)[1])
    if axes is None or len(fb.shape(fb.inputs(i)[0])) != 4:
        return False
    return sorted(int(a) % 4 for a in axes.reshape(-1)) == [1, 2]


def _as_op(fb, i):
    """The xnnpack_rules `Op` of operator `i`."""
    name = fb.types[i]
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return _conv_op(fb, i, name)
    if name in ("PAD", "PADV2"):
        return rules.Op(rules.PAD, name, feeds_valid_depthwise=_pad_feeds_valid_depthwise(fb, i))
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


def _xnnpack_checks(fb, rows):
    ops = {i: _as_op(fb, i) for i in rows}
    convs = [i for i in rows if ops[i].kind == rules.CONV]
    starts = [i for i in convs if not rules.start_problems(ops[i])]
    if not starts:
        detail = "no CONV_2D in the model"
        if convs:
            detail = (
                f"{rules.START_RULE}; the first CONV_2D (#{convs[0]}) has "
                + ", ".join(rules.start_problems(ops[convs[0]]))
            )
        return [Check("start", False, detail)]
    checks = [Check(
        "start", True,
        f"CONV_2D #{starts[0]}: 3x3, stride 2, 3 input channels, padding 1 "
        "on each side",
    )]
    for i in starts:
        rows[i].role = "start"

    ends, flat_ends, blockers, inside = [], [], [], []
    # Operators whose output leaves the model before a spatial mean.
    leaks = [s for s in starts if set(fb.outputs(s)) & fb.graph_outputs]
    seen = set(starts)
    stack = [c for s in starts for t in fb.outputs(s) for c in fb.consumers.get(t, [])]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        op = ops[i]
        if op.kind == rules.MEAN and op.spatial:
            (ends if rules.is_end(op) else flat_ends).append(i)
            continue
        problem = rules.inside_problem(op)
        if problem:
            # Keep walking: the operators after it are checked too.
            blockers.append((i, problem[0]))
        else:
            inside.append(i)
        if set(fb.outputs(i)) & fb.graph_outputs:
            leaks.append(i)
        stack += [c for t in fb.outputs(i) for c in fb.consumers.get(t, [])]

    for i in ends:
        rows[i].role = "end"
    for i in flat_ends:
        rows[i].role = "end without keep_dims"
    for i, _ in blockers:
        rows[i].role = "unsupported"
    pointwise = [i for i in inside if ops[i].kind == rules.CONV]
    for i in inside:
        rows[i].role = "1x1" if i in pointwise else "inside"

    if flat_ends:
        rule, _ = rules.keepdims_problem(ops[flat_ends[0]])
        checks.append(Check("end", False, f"#{flat_ends[0]} {rule}"))
    elif not ends or leaks:
        checks.append(Check(
            "end", False,
            "a path from the start reaches the model output without a MEAN "
            "over the spatial axes",
        ))
    else:
        checks.append(Check(
            "end", True, f"MEAN #{ends[0]} over the spatial axes, keep_dims"
        ))

    if blockers:
        listed = "; ".join(f"#{i} {problem}" for i, problem in sorted(blockers))
        checks.append(Check("operators", False, listed))
    else:
        checks.append(Check(
            "operators", True,
            f"all {len(inside)} operators between start and end are supported",
        ))

    weights = [fb.weight(i) for i in pointwise]
    total = sum(math.prod(w[0]) for w in weights if w)
    zeros = sum(math.prod(w[0]) * w[1] for w in weights if w)
    if not total:
        checks.append(Check(
            "zeros", False, "no 1x1 CONV_2D with constant weights in the subgraph"
        ))
        return checks
    passed, detail = rules.zeros_verdict(zeros, total, len(pointwise))
    checks.append(Check("zeros", passed, detail))
    dense = [i for i, w in zip(pointwise, weights) if w and not w[2]]
    checks.append(Check(
        "storage", not dense,
        "1x1 CONV_2D filters stored sparse (DENSIFY)" if not dense else
        "stored dense: " + ", ".join(f"#{i}" for i in dense)
        + "; convert with optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY] "
        "(tfmot_lite.export.to_sparse_tflite)",
    ))
    return checks
