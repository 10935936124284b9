"""What `shrink` removed: channels per layer, parameters and MACs."""

import dataclasses

import numpy as np

from tfmot_lite.core import graph, layer_kinds


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
    Depthwise and Separable layers (the layer table's `macs` column:
    EinsumDense counts its kernel once per output position, like Dense)."""
    g = graph.DataflowGraph(model)
    total = 0
    for op in g.ops:
        layer = graph.core_layer(op.layer)
        spec = layer_kinds.macs(layer)
        out = g.shapes.get(op.outputs[0])
        if spec is None or out is None or any(d is None for d in out[1:]):
            continue
        shape = out if spec.per == "output" else g.input_shape(op)
        positions = int(np.prod(shape[1:-1])) if shape and len(shape) > 2 else 1
        total += positions * sum(_size(getattr(layer, w)) for w in spec.weights)
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
