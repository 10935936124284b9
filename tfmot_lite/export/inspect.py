"""What a .tflite file holds, operator by operator: `inspect_tflite`.

`inspect_tflite(flatbuffer)` reads the file with the `tflite` package (the
flatbuffer bindings generated from TFLite's schema) and reports, for every
operator: its type, the shape of its weight tensor, the fraction of zeros in
it, and whether it is stored sparse (a constant with sparsity parameters,
expanded by a `DENSIFY` operator at load time; `DENSIFY` rows are folded
into the operator they feed). The XNNPACK sparse-inference verdict and each
operator's role in it come from `inspect_xnnpack.py`.
"""

import dataclasses
import math

import numpy as np

from tfmot_lite.export.flatbuffer import Subgraph
from tfmot_lite.export.inspect_xnnpack import xnnpack_checks

# Index of the weight input of the operators that have one.
_WEIGHT_INPUT = {
    "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
    "TRANSPOSE_CONV": 1, "CONV_3D": 1, "EMBEDDING_LOOKUP": 1,
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
    checks = xnnpack_checks(fb, rows)
    return TFLiteReport(
        size_bytes=len(flatbuffer),
        operators=list(rows.values()),
        checks=checks,
        densify_count=fb.types.count("DENSIFY"),
        constant_bytes=fb.constant_bytes(),
    )


class _Flatbuffer(Subgraph):
    """The main subgraph of a .tflite file, with what the table reads."""

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
