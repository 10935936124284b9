"""What the weights inside a .tflite file look like, tensor by tensor.

`weight_stats(tflite)` reads the flatbuffer with the `tflite` package and
returns one `WeightStats` per constant weight tensor: the kernel of every
CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, CONV_3D and
EMBEDDING_LOOKUP, and the constant floating-point or 8/16-bit operands of
other operators (a MUL by a constant, a BATCH_MATMUL with constant weights).
Biases and integer shape/axis operands are left out.

It answers the questions an optimized export raises: did pruning's zeros
survive conversion (`zero_fraction`), did clustering's few values survive
int8 quantization (`unique_values`, `max_unique_per_channel`), is the tensor
stored sparse (`sparse`, expanded by a DENSIFY operator at load time), and
how is it quantized (`dtype`, `quantized_axis`).

Values are the stored ones: int8 codes for quantized tensors (a clustered
kernel with 16 centroids per channel has at most 16 codes per channel), the
float16 or float32 numbers otherwise. A tensor stored sparse is expanded
here to its dense shape from its sparsity metadata (TFLite's
`SparsityParameters`: traversal order, block map, per-dimension DENSE or
SPARSE_CSR), so the counts cover every element.
"""

import dataclasses
import math

import numpy as np

from tfmot_lite.export.flatbuffer import DTYPES, PASS_THROUGH, Subgraph
from tfmot_lite.export.source import read_tflite

# Operators with a weight input, its index, and the axis of its output
# channels (TFLite layouts: CONV_2D [out, h, w, in], DEPTHWISE_CONV_2D
# [1, h, w, out], FULLY_CONNECTED [out, in], TRANSPOSE_CONV [out, h, w, in],
# CONV_3D [d, h, w, in, out]).
KERNEL_OPS = {
    "CONV_2D": (1, 0),
    "DEPTHWISE_CONV_2D": (1, 3),
    "FULLY_CONNECTED": (1, 0),
    "TRANSPOSE_CONV": (1, 0),
    "CONV_3D": (1, 4),
    "EMBEDDING_LOOKUP": (1, None),
}
_WEIGHT_DTYPES = (np.float32, np.float16, np.int8, np.uint8, np.int16)


@dataclasses.dataclass
class WeightStats:
    """One constant weight tensor of a .tflite model.

    Attributes:
      op_index: index of the operator that uses it (in subgraph 0).
      op_type: that operator's type, e.g. "CONV_2D".
      name: the tensor's name as the converter wrote it.
      shape: its dense shape (TFLite layout).
      dtype: how it is stored: "int8", "float16", "float32", ...
      quantized_axis: the axis of its per-channel scales, or None when it is
        not quantized or quantized per tensor.
      channel_axis: the axis along which `max_unique_per_channel` counts:
        `quantized_axis` when per-channel quantized, else the operator's
        output-channel axis (None when it has none).
      zero_fraction: fraction of its elements that are exactly zero (stored
        code 0 for int8 weights, whose zero point is 0).
      unique_values: number of distinct values in the whole tensor.
      max_unique_per_channel: the most distinct values in one slice along
        `channel_axis` (None when `channel_axis` is None).
      sparse: True when stored in TFLite's sparse format (DENSIFY).
      size: number of elements.
    """

    op_index: int
    op_type: str
    name: str
    shape: tuple
    dtype: str
    quantized_axis: object
    channel_axis: object
    zero_fraction: float
    unique_values: int
    max_unique_per_channel: object
    sparse: bool
    size: int

    def to_dict(self):
        return dataclasses.asdict(self)


def weight_stats(tflite):
    """Statistics of every constant weight tensor of a .tflite model.

    Args:
      tflite: the model as bytes, or the path of a .tflite file.

    Returns:
      A list of `WeightStats`, in operator order. A tensor used by several
      operators is listed once, under its first user.

    Raises:
      ValueError: if `tflite` is not a readable .tflite model.
    """
    reader = _Reader(read_tflite(tflite, "tflite"))
    stats, seen = [], set()
    for i, op_type in enumerate(reader.types):
        if op_type in PASS_THROUGH:
            continue
        inputs = reader.inputs(i)
        if op_type in KERNEL_OPS:
            index, out_axis = KERNEL_OPS[op_type]
            candidates = [(inputs[index], out_axis)] if index < len(inputs) else []
        else:
            candidates = [(t, None) for t in inputs]
        for t, out_axis in candidates:
            source, sparse = reader.source(t)
            if source is None or source in seen:
                continue
            values = reader.values(source)
            if values is None or values.dtype.type not in _WEIGHT_DTYPES:
                continue
            if op_type not in KERNEL_OPS and values.size < 2:
                continue
            seen.add(source)
            stats.append(_describe(reader, i, op_type, source, values, sparse, out_axis))
    return stats


def _describe(reader, i, op_type, t, values, sparse, out_axis):
    tensor = reader.graph.Tensors(t)
    quantized_axis = None
    quant = tensor.Quantization()
    if quant is not None and quant.ScaleLength() > 1:
        quantized_axis = int(quant.QuantizedDimension())
    channel_axis = quantized_axis if quantized_axis is not None else out_axis
    if channel_axis is not None and channel_axis >= values.ndim:
        channel_axis = None
    per_channel = None
    if channel_axis is not None and values.size:
        slices = np.moveaxis(values, channel_axis, 0).reshape(values.shape[channel_axis], -1)
        per_channel = max(len(np.unique(row)) for row in slices)
    size = int(values.size)
    return WeightStats(
        op_index=i,
        op_type=op_type,
        name=tensor.Name().decode("utf-8", "replace") if tensor.Name() else "",
        shape=tuple(int(d) for d in values.shape),
        dtype=np.dtype(values.dtype).name,
        quantized_axis=quantized_axis,
        channel_axis=channel_axis,
        zero_fraction=float(size - np.count_nonzero(values)) / size if size else 0.0,
        unique_values=int(len(np.unique(values))),
        max_unique_per_channel=per_channel,
        sparse=sparse,
        size=size,
    )


def format_weight_stats(stats):
    """A plain-text table of `weight_stats` output."""
    header = ("#", "operator", "tensor", "shape", "dtype", "axis", "zeros",
              "unique", "max/ch", "storage")
    rows = [header]
    for s in stats:
        name = s.name if len(s.name) <= 40 else "..." + s.name[-37:]
        rows.append((
            str(s.op_index), s.op_type, name, "x".join(map(str, s.shape)), s.dtype,
            "-" if s.quantized_axis is None else str(s.quantized_axis),
            f"{s.zero_fraction:.1%}", str(s.unique_values),
            "-" if s.max_unique_per_channel is None else str(s.max_unique_per_channel),
            "sparse" if s.sparse else "dense",
        ))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


class _Reader(Subgraph):
    """Subgraph 0 of a .tflite model, with dense values of its constants."""

    def values(self, t):
        """The dense values of constant tensor `t` (expanded if sparse)."""
        tensor = self.graph.Tensors(t)
        dtype = DTYPES.get(tensor.Type())
        if dtype is None:
            return None
        flat = np.frombuffer(self.raw(t), dtype=dtype)
        shape = self.shape(t)
        sparsity = tensor.Sparsity()
        if sparsity is not None:
            return _densify(flat, shape, sparsity)
        if flat.size != math.prod(shape):
            return None
        return flat.reshape(shape)


def _index_vector(kind, table):
    import tflite

    name = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}[kind]
    vector = getattr(tflite, name)()
    vector.Init(table.Bytes, table.Pos)
    return vector.ValuesAsNumpy()


def _densify(values, shape, sparsity):
    """Expands a tensor stored in TFLite's sparse format to `shape`.

    The format walks the tensor's dimensions (plus one per block dimension)
    in `traversal_order`; each level is DENSE (every index 0..dense_size-1)
    or SPARSE_CSR (the indices `array_indices[segments[p]:segments[p+1]]`
    under parent position p). Block dimension k (k >= rank) subdivides
    original dimension `block_map[k - rank]`.
    """
    rank = len(shape)
    order = [int(d) for d in sparsity.TraversalOrderAsNumpy()]
    block_map = (
        [int(d) for d in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    )
    levels = []
    for d in range(sparsity.DimMetadataLength()):
        dim = sparsity.DimMetadata(d)
        if dim.Format() == 0:
            levels.append(("dense", int(dim.DenseSize())))
        else:
            levels.append((
                "csr",
                _index_vector(dim.ArraySegmentsType(), dim.ArraySegments()),
                _index_vector(dim.ArrayIndicesType(), dim.ArrayIndices()),
            ))
    # Block sizes: the dense size of each block dimension's level.
    block_size = {}
    for level, expanded in enumerate(order):
        if expanded >= rank:
            block_size[block_map[expanded - rank]] = levels[level][1]

    dense = np.zeros(shape, dtype=values.dtype)
    # positions: (position in the level's storage, coordinates so far).
    positions = [(0, ())]
    for level in levels:
        following = []
        for parent, coords in positions:
            if level[0] == "dense":
                size = level[1]
                following += [(parent * size + i, coords + (i,)) for i in range(size)]
            else:
                segments, indices = level[1], level[2]
                following += [
                    (j, coords + (int(indices[j]),))
                    for j in range(int(segments[parent]), int(segments[parent + 1]))
                ]
        positions = following
    for position, coords in positions:
        index = [0] * rank
        for level, coordinate in enumerate(coords):
            expanded = order[level]
            if expanded < rank:
                index[expanded] += coordinate * block_size.get(expanded, 1)
            else:
                index[block_map[expanded - rank]] += coordinate
        dense[tuple(index)] = values[position]
    return dense
