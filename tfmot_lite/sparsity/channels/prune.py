"""`prune_channels`: wrap a model so that whole output channels get pruned."""

from tfmot_lite.core import entry, graph, techniques
from tfmot_lite.sparsity.channels import coupling
from tfmot_lite.sparsity.channels.wrapper import (
    PruneChannels,
    check_importance,
    link_channel_plans,
    new_plan_id,
)
from tfmot_lite.sparsity.schedule import ConstantSparsity, PruningSchedule


def _check_schedule(schedule):
    if not isinstance(schedule, PruningSchedule):
        raise ValueError(
            "`pruning_schedule` must be a PruningSchedule such as "
            "ConstantSparsity(0.5, begin_step=0) or PolynomialDecay(...): its "
            f"sparsity is the fraction of channels pruned. Received {schedule!r}."
        )


def prune_channels(
    to_prune,
    pruning_schedule=ConstantSparsity(0.5, 0),
    importance="l2",
    leave_intact=(),
):
    """Prepares a layer or model for structured (channel) pruning.

    Like `prune_low_magnitude`, but each mask update zeroes whole output
    channels of Conv1D/Conv2D, Dense and SeparableConv (pointwise) kernels:
    the `floor(sparsity * n)` least important of each group of `n` coupled
    channels. Channels joined by Add/Multiply (residual blocks), Concatenate,
    DepthwiseConv, BatchNormalization and elementwise activations are pruned
    together; BatchNormalization and DepthwiseConv layers between them are
    masked too, so a pruned channel is exactly zero. Channels that reach a
    model output, a Flatten/Reshape or a layer tfmot_lite does not understand
    stay intact; `channel_report(model)` lists the groups and reasons.

    Train with `UpdatePruningStep` (and optionally `PruningSummaries`), then
    `shrink` the result to a smaller dense model.

    Args:
      to_prune: a Sequential/Functional model (nested models included), a
        Conv/Dense/SeparableConv layer, or a list of such layers.
      pruning_schedule: a `PruningSchedule`; its sparsity is the fraction of
        channels pruned per group.
      importance: 'l2' (default) or 'l1': the norm of a channel's kernel,
        times |gamma| / sqrt(var + eps) of the BatchNormalization after it.
      leave_intact: names (or slash-joined paths) of layers whose channels,
        and the channels reaching them, must not be pruned.

    Returns:
      A new model (or layer). `to_prune` is not modified.
    """
    _check_schedule(pruning_schedule)
    check_importance(importance)
    if isinstance(leave_intact, str):
        leave_intact = [leave_intact]
    params = dict(pruning_schedule=pruning_schedule, importance=importance)
    return entry.wrap(to_prune, _ChannelPlan(params, leave_intact))


class _ChannelPlan(entry.Plan):
    """`prune_channels` for the entry path (`core/entry.py`): a model is
    analysed as a whole (`coupling.analyze`) and its layers wrapped with
    their share of the channel plan."""

    technique = techniques.PRUNING
    entry = "prune_channels"
    argument = "to_prune"
    gerund = "pruning channels of"
    needs_inputs = True
    needs_inputs_why = coupling.NEEDS_INPUTS
    keeps_own_wrappers = False  # prune channels on the plain model

    def __init__(self, params, leave_intact):
        self.params = params
        self.leave_intact = leave_intact
        self.plans = {}

    def wrap_layer(self, copy, original, **kwargs):
        return PruneChannels(copy, **self.params, **kwargs)

    def prepare(self, model):
        analysis = coupling.analyze(model, self.leave_intact)
        unknown = set(self.leave_intact) - {
            name for path, layer in graph.iter_layers(model)
            for name in (path, layer.name)
        }
        if unknown:
            raise ValueError(
                f"`leave_intact` names layers that are not in model "
                f"'{model.name}': {sorted(unknown)}."
            )
        self.plans = _plan_layers(analysis)
        if not self.plans:
            raise ValueError(
                f"Model '{model.name}' has no channels that can be pruned:\n"
                + str(analysis.report())
            )

    def replace(self, copy, original):
        spec = self.plans.get(original.name)
        if spec is None:
            return graph.training_layer(copy)
        return PruneChannels(copy, channel_plan=spec, **self.params)

    def finish(self, model):
        link_channel_plans(model)
        return model


def _plan_layers(analysis):
    """`{layer name: channel_plan}` for the layers to wrap."""
    plan_id = new_plan_id()
    chosen = []
    for item in analysis.producers:
        if analysis.groups[analysis.group_of_class[item.classes[0]]].prunable:
            chosen.append(item)
    for item in analysis.channelwise:
        if any(analysis.prunable_class(k) for k in item.classes):
            chosen.append(item)
    names = [item.layer.name for item in chosen]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Several layers are named {duplicates}: `prune_channels` matches "
            "layers by name across nested models. Give them unique names."
        )
    member = {id(item.layer): i for i, item in enumerate(chosen)}
    plans = {}
    for i, item in enumerate(chosen):
        bn = analysis.scaled_by.get(id(item.layer))
        plans[item.layer.name] = {
            "id": plan_id,
            "member": i,
            "channels": [int(k) for k in item.classes],
            "scaled_by": member.get(id(bn)) if bn is not None else None,
        }
    return plans
