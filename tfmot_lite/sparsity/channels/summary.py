"""What `shrink` removed: channels per layer, parameters and MACs."""

import dataclasses

import numpy as np
from keras import layers

from tfmot_lite.core import graph

_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
# One multiply-accumulate per kernel value at every output position.
_KERNEL_PER_POSITION = (
    layers.Dense, layers.EinsumDense, layers.Conv1D, layers.Conv2D,
    layers.Conv3D, layers.DepthwiseConv1D, layers.DepthwiseConv2D,
)


def _size(variable):
    return int(np.prod(variable.shape))


def count_params(model):
    """Weights of the model's layers, optimization wrappers' state excluded."""
    seen, total = set(), 0
    for _, layer in graph.iter_layers(model):
        core = graph.core_layer(layer)
        for w in core.weights:
            if id(w) not in seen:
                seen.add(id(w))
                total += _size(w)
    return total


def count_macs(model):
    """Multiply-accumulates of one example through the model's Conv, Dense,
    Depthwise and Separable layers (EinsumDense counts its kernel once per
    output position, like Dense)."""
    g = graph.DataflowGraph(model)
    total = 0
    for op in g.ops:
        layer = graph.core_layer(op.layer)
        out = g.shapes.get(op.outputs[0])
        inp = g.input_shape(op)
        if out is None or any(d is None for d in out[1:]):
            continue
        positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
        if isinstance(layer, _TRANSPOSED):
            positions = int(np.prod(inp[1:-1])) if inp and len(inp) > 2 else 1
            total += positions * _size(layer.kernel)
        elif isinstance(layer, _SEPARABLE):
            total += positions * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))
        elif isinstance(layer, _KERNEL_PER_POSITION):
            total += positions * _size(layer.kernel)
    return total


@dataclasses.dataclass
class LayerChange:
    layer: str
    kind: str
    channels_before: int
    channels_after: int


@dataclasses.dataclass
class ShrinkSummary:
    """Channels per layer before/after `shrink`, and model totals.

    `layers`: one `LayerChange` per Conv/Dense/SeparableConv layer of the
    channel analysis; `intact`: `(layers, reason)` for each group of channels
    left intact; parameters and MACs are for one example.
    """

    layers: list
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    intact: list = dataclasses.field(default_factory=list)

    @property
    def params_ratio(self):
        return self.params_after / max(self.params_before, 1)

    @property
    def macs_ratio(self):
        return self.macs_after / max(self.macs_before, 1)

    def __str__(self):
        rows = [("layer", "type", "channels before", "after")]
        rows += [
            (c.layer, c.kind, str(c.channels_before), str(c.channels_after))
            for c in self.layers
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows
        ]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        lines.append(
            f"parameters: {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_ratio:.2f}x)"
        )
        lines.append(
            f"MACs: {self.macs_before:,} -> {self.macs_after:,} ({self.macs_ratio:.2f}x)"
        )
        for names, reason in self.intact:
            lines.append(f"left intact: {', '.join(names)}: {reason}")
        return "\n".join(lines)
