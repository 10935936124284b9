"""Which channels of a model must be pruned together, and which cannot be.

`analyze(model)` walks the model's `DataflowGraph` (nested models inlined)
and ties every channel of every tensor to the channels it must share a fate
with:

* a producer's output channel `c` is the channel `c` of its output tensor;
* channel-wise and pass-through layers (BatchNormalization, DepthwiseConv,
  activations, pooling, ...) keep channel `c` at `c`;
* Add/Multiply/... tie channel `c` of every input to channel `c` of the
  output (a residual connection ties the block's input to its last conv);
* Concatenate ties input `i`'s channel `c` to output channel `offset_i + c`;
* a layer called at several places ties its channels across the calls.

Tied channels form a *channel class*: one decision (keep or prune) for all.
Classes produced by the same layer form a *group*: the pruned fraction is
counted per group, and the channels of a group are ranked against each other.

A group is left intact when any of its channels reaches a model output, a
Reshape/Flatten, a nested model's Input, a layer tfmot_lite does not
understand, or an activation that does not map 0 to 0; its `reason` says
which. A user-defined layer *with weights* that receives prunable channels
is an error: its weights may index channels, and only its author knows how.

Which layer plays which part comes from the layer table (`roles.py`); the
report and the errors handed to the user are `diagnostics.py`.
"""

import dataclasses

import keras
import numpy as np

from tfmot_lite.core import graph
from tfmot_lite.core.union_find import UnionFind
from tfmot_lite.sparsity.channels import roles
from tfmot_lite.sparsity.channels.diagnostics import (
    ChannelReport,
    GroupInfo,
    custom_layers_error,
)


# Why the channel analysis needs a model's inputs (for `graph.check_model`).
NEEDS_INPUTS = ": channel pruning follows tensors through the graph from its inputs"


class _Graph(graph.DataflowGraph):
    """A DataflowGraph that also records where tensors enter nested models."""

    def __init__(self, model):
        self.nested_inputs = {}
        super().__init__(model)

    def _expand(self, model, inputs, prefix):
        if prefix:
            for t in inputs:
                self.nested_inputs.setdefault(t, prefix.rstrip("/"))
        return super()._expand(model, inputs, prefix)


@dataclasses.dataclass
class LayerChannels:
    """The channel classes along one axis of a layer's weights."""

    path: str
    layer: object
    classes: np.ndarray


class ChannelCoupling:
    """The result of `analyze`: channel classes and groups of a model.

    * `classes_of_tensor[t]`: the class of each channel of tensor `t`;
    * `outputs[id(layer)]`, `inputs[id(layer)]`: `LayerChannels` for the
      output channels of producers and channel-wise layers, and the input
      channels of producers;
    * `group_of_class[k]`: the group of class `k` (-1: no producer);
    * `groups[g]`: `GroupInfo`; `group_classes[g]`: its classes;
    * `scaled_by[id(producer)]`: the BatchNormalization right after it.
    """

    def __init__(self, model, leave_intact=(), strict=True):
        self.graph = _Graph(model)
        self.strict = strict
        self.leave_intact = set(leave_intact)
        self._uf = UnionFind()
        self._slots = {}
        self._layer_slots = {}
        self._reasons = {}
        self._custom = []
        self.producers = []
        self.channelwise = []
        self.consumers = []
        self.scaled_by = {}
        self._seen = set()
        self._walk()
        self._classify()

    # -- tying channels -----------------------------------------------------

    def slots(self, t):
        """Slot ids for tensor `t`'s channels (None: no channel axis known)."""
        if t not in self._slots:
            shape = self.graph.shapes.get(t)
            ok = shape is not None and len(shape) >= 2 and shape[-1] is not None
            self._slots[t] = self._uf.add(int(shape[-1])) if ok else None
        return self._slots[t]

    def _bind(self, layer, role, t):
        """Ties tensor `t`'s channels to `layer`'s `role` weights' channels."""
        s = self.slots(t)
        key = (id(layer), role)
        if s is None:
            return
        if key in self._layer_slots:
            if len(self._layer_slots[key][1]) == len(s):
                self._uf.union(self._layer_slots[key][1], s)
        else:
            self._layer_slots[key] = (layer, s)

    def _freeze(self, t, reason):
        s = self.slots(t)
        if s is not None:
            for i in s:
                self._reasons.setdefault(int(i), reason)

    def _tie(self, a, b):
        sa, sb = self.slots(a), self.slots(b)
        if sa is None or sb is None or len(sa) != len(sb):
            return False
        self._uf.union(sa, sb)
        return True

    def _opaque(self, op, layer, why):
        for t in op.inputs:
            self._freeze(t, f"they feed '{op.path}' ({type(layer).__name__}), {why}")
        for t in op.outputs:
            self._freeze(t, f"they come from '{op.path}' ({type(layer).__name__}), {why}")

    def _walk(self):
        g = self.graph
        for op in g.ops:
            layer = graph.core_layer(op.layer)
            ins, outs = op.inputs, op.outputs
            rank = len(g.shapes[ins[0]]) if ins and g.shapes.get(ins[0]) else 0
            if layer.name in self.leave_intact or op.path in self.leave_intact:
                self._opaque(op, layer, "which is listed in `leave_intact`")
            elif roles.is_producer(layer):
                self._bind(layer, "in", ins[0])
                self._bind(layer, "out", outs[0])
                if id(layer) not in self._seen:
                    self._seen.add(id(layer))
                    self.consumers.append(LayerChannels(op.path, layer, None))
                    self.producers.append(LayerChannels(op.path, layer, None))
                    self._find_batchnorm(op, layer)
                problem = roles.zero_problem(layer)
                if problem:
                    self._freeze(outs[0], problem)
            elif rank and roles.is_channelwise(layer, rank):
                if isinstance(layer, keras.layers.BatchNormalization) and not layer.scale:
                    self._opaque(
                        op, layer,
                        "a BatchNormalization without `scale`, which cannot "
                        "zero a pruned channel",
                    )
                    continue
                self._bind(layer, "out", ins[0])
                self._bind(layer, "out", outs[0])
                self._tie(ins[0], outs[0])
                if id(layer) not in self._seen:
                    self._seen.add(id(layer))
                    self.channelwise.append(LayerChannels(op.path, layer, None))
                problem = roles.zero_problem(layer)
                if problem:
                    self._freeze(outs[0], problem)
            elif roles.keeps_channels(layer) and len(ins) == 1:
                if not self._tie(ins[0], outs[0]):
                    self._opaque(op, layer, "which changes the number of channels")
                    continue
                problem = roles.zero_problem(layer)
                if problem:
                    self._freeze(outs[0], problem)
            elif roles.merges_elementwise(layer):
                if not all(self._tie(t, outs[0]) for t in ins):
                    self._opaque(op, layer, "which broadcasts channels")
            elif rank and roles.is_concatenate_last(layer, rank):
                self._concatenate(op, layer)
            elif roles.mixes_channels(layer):
                self._opaque(op, layer, "which mixes channels into other dimensions")
            else:
                if self.strict and layer.weights and roles.is_custom(layer):
                    self._custom.append(op)
                self._opaque(op, layer, "a layer tfmot_lite does not understand")
        for t in g.inputs:
            self._freeze(t, "they come from the model input")
        for t in g.outputs:
            self._freeze(t, "they feed a model output")
        for t, name in g.nested_inputs.items():
            self._freeze(
                t,
                f"they enter the nested model '{name}' through its Input, "
                "whose shape a rewrite keeps",
            )

    def _concatenate(self, op, layer):
        out = self.slots(op.outputs[0])
        parts = [self.slots(t) for t in op.inputs]
        if out is None or any(p is None for p in parts) or sum(map(len, parts)) != len(out):
            self._opaque(op, layer, "whose channel offsets are unknown")
            return
        offset = 0
        for part in parts:
            self._uf.union(out[offset:offset + len(part)], part)
            offset += len(part)

    def _find_batchnorm(self, op, layer):
        following = self.graph.next_ops(op)
        if len(following) == 1:
            bn = graph.core_layer(following[0].layer)
            if isinstance(bn, keras.layers.BatchNormalization) and bn.scale:
                self.scaled_by[id(layer)] = bn

    # -- classes and groups -------------------------------------------------

    def _classify(self):
        slot_root = self._uf.roots()
        roots = sorted(set(slot_root.tolist()))
        index = {r: k for k, r in enumerate(roots)}
        slot_class = np.array([index[r] for r in slot_root.tolist()], dtype=np.int64)
        self.num_classes = len(roots)
        self.classes_of_tensor = {
            t: slot_class[s] for t, s in self._slots.items() if s is not None
        }
        self.class_reason = {}
        for slot, reason in self._reasons.items():
            self.class_reason.setdefault(int(slot_class[slot]), reason)

        def classes(layer, role):
            entry = self._layer_slots.get((id(layer), role))
            return None if entry is None else slot_class[entry[1]]

        for item in self.producers:
            item.classes = classes(item.layer, "out")
        for item in self.consumers:
            item.classes = classes(item.layer, "in")
        for item in self.channelwise:
            item.classes = classes(item.layer, "out")
        self.producers = [p for p in self.producers if p.classes is not None]
        self.consumers = [c for c in self.consumers if c.classes is not None]
        self.channelwise = [c for c in self.channelwise if c.classes is not None]
        self.outputs = {id(p.layer): p for p in self.producers + self.channelwise}
        self.inputs = {id(c.layer): c for c in self.consumers}

        groups = UnionFind(self.num_classes)
        for p in self.producers:
            groups.union(p.classes[:-1], p.classes[1:])
        has_producer = np.zeros(self.num_classes, bool)
        for p in self.producers:
            has_producer[p.classes] = True
        roots = sorted({groups.find(k) for k in range(self.num_classes) if has_producer[k]})
        gindex = {r: g for g, r in enumerate(roots)}
        self.group_of_class = np.array(
            [gindex.get(groups.find(k), -1) if has_producer[k] else -1
             for k in range(self.num_classes)],
            dtype=np.int64,
        )
        self.group_classes = [
            np.flatnonzero(self.group_of_class == g) for g in range(len(roots))
        ]
        self.groups = []
        for g, members in enumerate(self.group_classes):
            names = [
                p.path for p in self.producers
                if self.group_of_class[p.classes[0]] == g
            ]
            reason = next(
                (self.class_reason[int(k)] for k in members if int(k) in self.class_reason),
                None,
            )
            self.groups.append(GroupInfo(names, len(members), reason))
        self._check_custom_layers()

    def _check_custom_layers(self):
        problems = []
        for op in self._custom:
            sources = set()
            for t in op.inputs:
                for k in self.classes_of_tensor.get(t, ()):
                    g = self.group_of_class[k]
                    if g >= 0:
                        sources.update(self.groups[g].layers)
            if sources:
                problems.append(
                    f"  - '{op.path}' ({type(op.layer).__name__}) receives the "
                    f"output channels of {', '.join(sorted(sources))}"
                )
        if problems:
            raise custom_layers_error(problems, [op.path for op in self._custom])

    def prunable_class(self, k):
        g = self.group_of_class[k]
        return g >= 0 and self.groups[g].prunable

    def report(self):
        return ChannelReport(list(self.groups))


def analyze(model, leave_intact=(), strict=True):
    """Returns the `ChannelCoupling` of a built Sequential/Functional model.

    With `strict`, a custom layer with weights that receives prunable
    channels raises a ValueError; otherwise its channels are left intact."""
    return ChannelCoupling(model, leave_intact, strict)


def channel_report(model, leave_intact=()):
    """A `ChannelReport`: the groups of coupled channels in `model`, which of
    them `prune_channels` would prune, and why the others stay intact."""
    graph.check_model(model, "channel_report", needs_inputs=True, why=NEEDS_INPUTS)
    return analyze(model, leave_intact).report()
