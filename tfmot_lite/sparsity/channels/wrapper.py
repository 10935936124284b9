"""`PruneChannels`: masks whole output channels, decided with its couples.

A `PruneChannels` wrapper is a `PruneLowMagnitude` whose mask is one value
per output channel, so the pruning callbacks (`UpdatePruningStep`,
`PruningSummaries`) and `strip_pruning` drive it unchanged. It wraps:

* a producer (Conv1D/Conv2D, Dense, SeparableConv pointwise): the mask
  multiplies the kernel's output columns and the bias;
* a BatchNormalization or DepthwiseConv between pruned channels: the mask
  multiplies gamma and beta (or the depthwise kernel and bias),

so that a pruned channel is exactly zero wherever it flows and `shrink` can
remove it without changing a single prediction.

Coupled channels must be pruned together, so no wrapper decides alone. Each
carries its place in a `ChannelPlan` (`channel_plan` in its config: the
plan's id, the wrapper's member index, the channel class of each of its
channels, and for a producer the member holding the BatchNormalization that
follows it). The wrappers of one model share one plan object: when the
schedule calls for new masks, the plan scores every channel class once and
sets every member's mask. `UpdatePruningStep` links the plan at the start of
training (`link_model`), so a model loaded from a `.keras` file resumes with
its groups intact.

Importance of class `k` (importance='l2'):

    score(k) = sqrt( sum over producers p with a channel j in class k of
                     (||W_p[..., j]||_2 * |gamma_j| / sqrt(var_j + eps))^2 )

where gamma/var belong to the BatchNormalization after `p` (1 if none);
'l1' sums `||W_p[..., j]||_1 * |gamma_j| / sqrt(var_j + eps)` instead. In each
group of `n` classes the `floor(sparsity * n)` lowest-scoring classes are
pruned (ties: lowest class id), skipping any class whose removal would leave
a producer with no channel.
"""

import math
import uuid

import keras
import numpy as np
from keras import ops

from tfmot_lite.core import graph, layer_kinds
from tfmot_lite.core.union_find import UnionFind
from tfmot_lite.sparsity.channels import roles
from tfmot_lite.sparsity.wrapper import PruneLowMagnitude

IMPORTANCES = ("l2", "l1")


def check_importance(importance):
    if importance not in IMPORTANCES:
        raise ValueError(
            f"`importance` must be one of {IMPORTANCES}: the norm that ranks a "
            f"channel's kernel. Received {importance!r}."
        )


def channel_role(layer):
    """'producer', 'channelwise', or None for layers this wrapper cannot mask."""
    if roles.is_producer(layer):
        return "producer"
    if layer_kinds.channel_role(layer) != layer_kinds.CHANNELWISE:
        return None
    if isinstance(layer, keras.layers.BatchNormalization):
        return "channelwise" if layer.scale else None
    return "channelwise" if roles.is_channelwise(layer, 3) else None


@keras.saving.register_keras_serializable(package="tfmot_lite")
class PruneChannels(PruneLowMagnitude):
    """Masks whole output channels of `layer`; build it with `prune_channels`.

    Args:
      layer: a Conv1D/Conv2D, Dense or SeparableConv1D/2D (or a
        BatchNormalization / DepthwiseConv between pruned channels).
      pruning_schedule: a `PruningSchedule`; its sparsity is the fraction of
        channels pruned in each group of coupled channels.
      importance: 'l2' or 'l1', the norm ranking channels.
      channel_plan: where this wrapper sits in its model's `ChannelPlan`
        (set by `prune_channels`); None for a layer pruned on its own.

    State, saved with the model: `channel_mask` (one 0/1 per output channel),
    `threshold` (the highest score pruned) and `pruning_step`.
    """

    def __init__(
        self, layer, pruning_schedule=None, importance="l2", channel_plan=None, **kwargs
    ):
        for key in ("block_size", "block_pooling_type", "sparsity_m_by_n"):
            kwargs.pop(key, None)
        check_importance(importance)
        if channel_role(layer) is None:
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) has no output "
                "channels that channel pruning can mask. Prune Conv1D/Conv2D "
                "(groups=1, channels_last), Dense or SeparableConv layers."
            )
        if channel_role(layer) != "producer" and channel_plan is None:
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) only passes "
                "channels through: prune the model it belongs to with "
                "`prune_channels(model)`, which masks it together with the "
                "layer producing its channels."
            )
        super().__init__(layer, pruning_schedule=pruning_schedule, **kwargs)
        self.importance = importance
        self.channel_plan = dict(channel_plan) if channel_plan else None
        self.role = channel_role(layer)
        self._plan = None

    @classmethod
    def _name_prefix(cls):
        return "prune_channels"

    # -- weights ------------------------------------------------------------

    def target_weights(self):
        layer = self.layer
        if self.role == "producer":
            main, bias = roles.output_kernel(layer), getattr(layer, "bias", None)
            return [main] + ([bias] if layer.use_bias else [])
        if isinstance(layer, keras.layers.BatchNormalization):
            return [layer.gamma] + ([layer.beta] if layer.center else [])
        return [layer.kernel] + ([layer.bias] if layer.use_bias else [])

    def _mask_shape(self, weight):
        """`channel_mask` reshaped to broadcast over `weight`'s channel axis."""
        channels = self.channels
        if self.role == "channelwise" and len(weight.shape) > 1:
            return (channels, 1)  # depthwise kernel (..., channels, 1)
        return (channels,)

    def build_transform(self):
        self.channels = roles.channel_count(self.layer)
        main = self.target_weights()[0]
        self.channel_mask = self.add_weight(
            name="channel_mask", shape=(self.channels,), initializer="ones",
            dtype=main.dtype, trainable=False,
        )
        self.threshold = self.add_weight(
            name="threshold", shape=(), initializer="zeros", dtype=main.dtype,
            trainable=False,
        )
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(),
            initializer=keras.initializers.Constant(-1), dtype="int32",
            trainable=False,
        )
        # What PruningSummaries reports: channel sparsity per wrapped layer.
        self.pruned_weights = [main]
        self.masks = [self.channel_mask]
        self.thresholds = [self.threshold]

    def masked_weights(self):
        """The kernel (and bias, or BatchNorm gamma/beta) with pruned
        channels zeroed; `PruneLowMagnitude.transformed_weights` ticks the
        pruning clock and checks the callback around it."""
        return [
            ops.multiply(w, ops.reshape(self.channel_mask, self._mask_shape(w)))
            for w in self.target_weights()
        ]

    # -- mask updates -------------------------------------------------------

    def link_model(self, model):
        """Connects the wrappers of `model` that share a plan (called by
        `UpdatePruningStep` when training begins)."""
        if self._plan is None or self._plan.model_id != id(model):
            link_channel_plans(model)

    def update_masks(self, sparsity):
        """Sets the masks of this wrapper's whole plan at `sparsity`."""
        if self._plan is None:
            if self.channel_plan is not None:
                raise ValueError(
                    f"Layer '{self.name}' shares channels with other layers but "
                    "is not linked to them. Train with "
                    "`tfmot_lite.sparsity.keras.UpdatePruningStep()`, or call "
                    "`tfmot_lite.sparsity.keras.link_channel_plans(model)` first."
                )
            self._plan = ChannelPlan([self], model_id=None)
        self._plan.update(sparsity, self)

    def channel_classes(self):
        if self.channel_plan is None:
            return np.arange(self.channels)
        return np.asarray(self.channel_plan["channels"], dtype=np.int64)

    # -- serialization ------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        for key in ("block_size", "block_pooling_type", "sparsity_m_by_n"):
            config.pop(key, None)
        config["importance"] = self.importance
        config["channel_plan"] = self.channel_plan
        return config


def new_plan_id():
    return uuid.uuid4().hex[:12]


def link_channel_plans(model):
    """Links every `PruneChannels` in `model` to the others of its plan.

    Returns the plans. Raises a ValueError when two wrappers claim the same
    place in one plan (two copies of one channel-pruned model in a model).
    """
    by_plan = {}
    for _, layer in graph.iter_layers(model):
        if isinstance(layer, PruneChannels) and layer.channel_plan is not None:
            by_plan.setdefault(layer.channel_plan["id"], []).append(layer)
    plans = []
    for plan_id, wrappers in by_plan.items():
        members = {}
        for w in wrappers:
            index = w.channel_plan["member"]
            if index in members and members[index] is not w:
                raise ValueError(
                    f"Layers '{members[index].name}' and '{w.name}' hold the same "
                    f"place in channel plan {plan_id}: the model contains two "
                    "copies of one channel-pruned model. Prune each copy with "
                    "its own `prune_channels` call."
                )
            members[index] = w
        plans.append(ChannelPlan(
            [members[i] for i in sorted(members)], model_id=id(model)
        ))
    for _, layer in graph.iter_layers(model):
        if isinstance(layer, PruneChannels) and layer.channel_plan is None:
            layer._plan = ChannelPlan([layer], model_id=id(model))
    return plans


class ChannelPlan:
    """The wrappers of one channel-pruned model and their channel groups."""

    def __init__(self, wrappers, model_id):
        self.wrappers = wrappers
        self.model_id = model_id
        self._served = set()
        self._last = None
        index = {}
        for w in wrappers:
            w._plan = self
            if w.channel_plan is not None:
                index[w.channel_plan["member"]] = w
        self.producers = [w for w in wrappers if w.role == "producer"]
        self.scale_of = {}
        for p in self.producers:
            member = (p.channel_plan or {}).get("scaled_by")
            if member is not None and member in index:
                self.scale_of[id(p)] = index[member]
        self.num_classes = 1 + max(int(w.channel_classes().max()) for w in wrappers)
        # Groups: classes joined by a producer's output channels.
        sets = UnionFind(self.num_classes)
        for p in self.producers:
            classes = p.channel_classes()
            sets.union(classes[:-1], classes[1:])
        owned = np.zeros(self.num_classes, bool)
        for p in self.producers:
            owned[p.channel_classes()] = True
        roots = {}
        for k in np.flatnonzero(owned):
            roots.setdefault(sets.find(int(k)), []).append(int(k))
        self.groups = [np.array(v) for v in roots.values()]

    def update(self, sparsity, caller):
        """Recomputes every member's mask once per round of `update_masks`
        calls (one per wrapper, at the same sparsity)."""
        if caller in self._served or self._last != sparsity or not self._served:
            self._apply(sparsity)
            self._served = set()
            self._last = sparsity
        self._served.add(caller)
        if len(self._served) == len(self.wrappers):
            self._served = set()

    def scores(self):
        total = np.zeros(self.num_classes)
        for p in self.producers:
            kernel = ops.convert_to_numpy(roles.output_kernel(p.layer))
            columns = np.abs(kernel.reshape(-1, kernel.shape[-1]).astype(np.float64))
            if p.importance == "l2":
                norms = np.sqrt((columns**2).sum(axis=0))
            else:
                norms = columns.sum(axis=0)
            bn = self.scale_of.get(id(p))
            if bn is not None:
                gamma = ops.convert_to_numpy(bn.layer.gamma).astype(np.float64)
                var = ops.convert_to_numpy(bn.layer.moving_variance).astype(np.float64)
                norms = norms * np.abs(gamma) / np.sqrt(var + bn.layer.epsilon)
            np.add.at(total, p.channel_classes(), norms**2 if p.importance == "l2" else norms)
        return np.sqrt(total) if self.producers and self.producers[0].importance == "l2" else total

    def decide(self, sparsity):
        """`(keep, thresholds)`: a 0/1 per class and the highest pruned score
        per class's group."""
        if not 0.0 <= float(sparsity) < 1.0:
            names = ", ".join(w.layer.name for w in self.producers)
            raise ValueError(
                f"Sparsity {sparsity} would remove every channel of {names}. "
                "Use a pruning schedule whose sparsity stays below 1 (for "
                "example ConstantSparsity(0.5, 0)); at least one channel of "
                "each layer is always kept."
            )
        scores = self.scores()
        keep = np.ones(self.num_classes, dtype=np.float32)
        threshold = np.zeros(self.num_classes, dtype=np.float32)
        owners = {}
        for p in self.producers:
            classes = np.unique(p.channel_classes())
            for k in classes:
                owners.setdefault(int(k), []).append(id(p))
        kept = {id(p): len(np.unique(p.channel_classes())) for p in self.producers}
        for classes in self.groups:
            target = math.floor(float(sparsity) * len(classes) + 1e-9)
            pruned = []
            for k in sorted(classes, key=lambda k: (scores[k], k)):
                if len(pruned) == target:
                    break
                if any(kept[o] <= 1 for o in owners[int(k)]):
                    continue
                pruned.append(int(k))
                for o in owners[int(k)]:
                    kept[o] -= 1
            keep[pruned] = 0.0
            threshold[classes] = max((scores[k] for k in pruned), default=0.0)
        return keep, threshold

    def _apply(self, sparsity):
        keep, threshold = self.decide(sparsity)
        for w in self.wrappers:
            classes = w.channel_classes()
            mask = keep[classes]
            w.channel_mask.assign(mask.astype(w.channel_mask.dtype))
            w.threshold.assign(float(threshold[classes].max()))
            for weight in w.target_weights():
                shaped = ops.reshape(ops.convert_to_tensor(mask, weight.dtype),
                                     w._mask_shape(weight))
                weight.assign(ops.multiply(weight, shaped))
