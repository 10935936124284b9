"""Whether XNNPACK can run a .tflite file sparse: the checks of `inspect_tflite`.

The walk (`tfmot_lite/core/xnnpack_walk.py`, over the .tflite adapter in
`inspect_graph.py`) finds the sparse subgraph the way the Keras policy does
before training; this module words the result as `Check`s (start, end,
operators) and gives each operator of the table its role. It goes on past
an unsupported operator, so every one is listed. Two checks belong to the
file alone:

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

from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.core import xnnpack_walk as walk
from tfmot_lite.export.inspect_graph import op_graph


@dataclasses.dataclass
class Check:
    """One XNNPACK sparse-inference precondition and how the file fares."""

    name: str
    passed: bool
    detail: str


def xnnpack_checks(fb, rows):
    """The checks for flatbuffer `fb`; sets `role` on the `OperatorInfo`s of
    `rows` (by operator index) that the sparse subgraph holds."""
    found = walk.walk(op_graph(fb, rows))
    checks = [_start_check(found)]
    if not found.starts:
        return checks
    _set_roles(found, rows)
    checks.append(_end_check(found))

    problems = found.with_role(walk.PROBLEM)
    inside = found.with_role(walk.INSIDE)
    if problems:
        listed = "; ".join(f"#{i} {found.visits[i].problem[0]}" for i in problems)
        checks.append(Check("operators", False, listed))
    else:
        checks.append(Check(
            "operators", True,
            f"all {len(inside)} operators between start and end are supported",
        ))

    pointwise = found.pointwise()
    weights = [rows[i] for i in pointwise if rows[i].weight_shape is not None]
    total = sum(math.prod(w.weight_shape) for w in weights)
    zeros = sum(math.prod(w.weight_shape) * w.zero_fraction for w in weights)
    if not total:
        checks.append(Check(
            "zeros", False, "no 1x1 CONV_2D with constant weights in the subgraph"
        ))
        return checks
    passed, detail = rules.zeros_verdict(zeros, total, len(pointwise))
    checks.append(Check("zeros", passed, detail))
    dense = [w.index for w in weights if not w.sparse_storage]
    checks.append(Check(
        "storage", not dense,
        "1x1 CONV_2D filters stored sparse (DENSIFY)" if not dense else
        "stored dense: " + ", ".join(f"#{i}" for i in dense)
        + "; convert with optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY] "
        "(tfmot_lite.export.to_sparse_tflite)",
    ))
    return checks


def _start_check(found):
    if found.rejected:
        first, problems = min(found.rejected, key=lambda pair: pair[0])
        return Check("start", False, (
            f"{rules.START_RULE}; the first CONV_2D (#{first}) has " + ", ".join(problems)
        ))
    if not found.starts:
        return Check("start", False, "no CONV_2D in the model")
    if found.unstarted:
        ends = sorted(i for i in found.unstarted if i is not None)
        where = f"#{ends[0]} {found.graph.ops[ends[0]].name}" if ends else "a model input"
        return Check("start", False, (
            f"no CONV_2D between a model input and the output of {where}: the "
            "sparse subgraph must start with a 3x3 stride-2 CONV_2D on the image"
        ))
    first = min(found.starts)
    return Check(
        "start", True,
        f"CONV_2D #{first}: 3x3, stride 2, 3 input channels, padding 1 on each side",
    )


def _end_check(found):
    flat = found.flat_means()
    if flat:
        rule, _ = rules.keepdims_problem(found.graph.ops[flat[0]])
        return Check("end", False, f"#{flat[0]} {rule}")
    if not found.ends or found.open_outputs:
        return Check(
            "end", False,
            "a path from a model input reaches the model output without a "
            "MEAN over the spatial axes",
        )
    return Check("end", True, f"MEAN #{found.ends[0]} over the spatial axes, keep_dims")


# The table's name for each role of the walk.
_ROLES = {
    walk.INSIDE: "inside", walk.PROBLEM: "unsupported", walk.END: "end",
    walk.FLAT_END: "end without keep_dims",
}


def _set_roles(found, rows):
    for i, visit in found.visits.items():
        rows[i].role = _ROLES.get(visit.role, "")
    for i in found.starts:
        rows[i].role = "start"
    for i, _ in found.rejected:
        rows[i].role = "unsupported"
    for i in found.ends:
        rows[i].role = "end"
    for i in found.flat_means():
        rows[i].role = "end without keep_dims"
    for i in found.pointwise():
        rows[i].role = "1x1"
