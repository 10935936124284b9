"""Which operators LiteRT's XNNPACK delegate runs: `xnnpack_delegation`.

LiteRT hands XNNPACK every operator it can take; each maximal run of them
becomes one DELEGATE node (a partition), and the rest run in LiteRT's
built-in kernels between partitions. Those are usually the slow ones. On
this x86 wheel (ai-edge-litert 2.3.0) XNNPACK takes no int8 RELU (one not
fused into the op before it), HARD_SWISH, AVERAGE_POOL_2D, GELU, RSQRT or
SQUARED_DIFFERENCE, nor a 1x1 MAX_POOL_2D of either type: NASNetMobile's
int8 file (48 standalone RELUs, 40 average poolings outside) runs 3-4x
slower than its float one, and MobileNetV3's int8 files (HARD_SWISH)
1.2-1.9x slower (docs/export.md). A RESHAPE whose shape
is computed at run time also ends a partition (see `static_shapes.py`), and
XNNPACK takes no TRANSPOSE_CONV whose output shape is computed: with the
batch size left free, a Conv2DTranspose's output shape reads it at run
time, so the layer runs in LiteRT's built-in kernel, which rounds a few
outputs in a thousand one step away from XNNPACK's (docs/export.md).
`Delegation.notes` says so, and how to fix it.

The interpreter lists the original operators beside the DELEGATE nodes
that replaced them; a DELEGATE node names only its boundary tensors. An
operator was replaced when it is reached walking back from a DELEGATE
node's outputs without crossing that node's inputs. Only the main subgraph
is read (control-flow bodies are not counted).
"""

import collections
import dataclasses


@dataclasses.dataclass
class Delegation:
    """How LiteRT splits a .tflite model between XNNPACK and its own kernels.

    `operators` counts the model's operators (main subgraph), `delegated`
    those XNNPACK runs, in `partitions` DELEGATE nodes; `outside` maps
    "OPERATOR dtype" (the dtype of its first input that is not a shape or
    an index: TRANSPOSE_CONV's output shape comes first) to how many such
    operators the built-in kernels run; `notes`, why some of them are
    left out and how to let XNNPACK run them."""

    operators: int
    delegated: int
    partitions: int
    outside: dict
    notes: list = dataclasses.field(default_factory=list)

    @property
    def complete(self):
        return self.delegated == self.operators

    @property
    def share(self):
        """The fraction of the operators XNNPACK runs."""
        return self.delegated / max(self.operators, 1)

    def outside_text(self, limit=None):
        """The operators left to LiteRT, most frequent first ("RELU int8
        x48, AVERAGE_POOL_2D int8 x40"); past `limit` kinds, how many more."""
        most = sorted(self.outside.items(), key=lambda kv: -kv[1])
        shown = most if limit is None else most[:limit]
        text = ", ".join(f"{name} x{count}" for name, count in shown)
        extra = len(most) - len(shown)
        return text + (f", {extra} more kind{'s' if extra > 1 else ''}" if extra else "")

    def __str__(self):
        parts = "partition" if self.partitions == 1 else "partitions"
        text = (f"XNNPACK runs {self.delegated} of {self.operators} operators "
                f"({self.partitions} {parts})")
        if self.outside:
            text += "; LiteRT's built-in kernels run " + self.outside_text()
        return "\n".join([text, *self.notes])


def xnnpack_delegation(interpreter):
    """The `Delegation` of an allocated LiteRT `Interpreter` (with XNNPACK
    among its delegates, as `TFLiteModel` makes it by default)."""
    details = interpreter._get_ops_details()
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    producer = {int(t): d for d in nodes for t in d["outputs"]}
    replaced = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        pending = [int(t) for t in delegate["outputs"]]
        while pending:
            node = producer.get(pending.pop())
            if node is None or node["index"] in replaced:
                continue
            replaced.add(node["index"])
            pending += [int(t) for t in node["inputs"] if int(t) not in boundary]
    outside = collections.Counter(
        f"{d['op_name']} {_dtype_name(d)}" for d in nodes if d["index"] not in replaced)
    return Delegation(
        operators=len(nodes),
        delegated=len(replaced),
        partitions=len(delegates),
        outside=dict(outside.most_common()),
        notes=_computed_shape_notes(
            [d for d in nodes if d["index"] not in replaced], producer),
    )


# Operators XNNPACK takes only with a constant shape operand: its position.
_SHAPE_OPERAND = {"TRANSPOSE_CONV": 0, "RESHAPE": 1}


def _computed_shape_notes(outside_nodes, producer):
    """One line per kind of operator left out because an operator computes
    its shape operand at run time."""
    counts = collections.Counter(
        d["op_name"] for d in outside_nodes
        if d["op_name"] in _SHAPE_OPERAND
        and len(d["inputs"]) > _SHAPE_OPERAND[d["op_name"]]
        and int(d["inputs"][_SHAPE_OPERAND[d["op_name"]]]) in producer)
    return [
        f"{count} {name} left to LiteRT: {'its' if count == 1 else 'their'} shape "
        "is computed at run time, and XNNPACK takes only a constant one; where it "
        "is computed from the batch size (a Conv2DTranspose's output shape), a "
        "model built on `keras.Input(..., batch_size=1)` exports it as a constant"
        for name, count in sorted(counts.items())]


def _dtype_name(details):
    types = [t.__name__ for t in details["operand_types"]]
    data = [t for t in types if t not in ("int32", "int64")]
    return (data or types or ["-"])[0]
