"""`prune_channels`: wrap a model so that whole output channels get pruned."""

import keras

from tfmot_lite.core import graph
from tfmot_lite.sparsity.channels import coupling
from tfmot_lite.sparsity.channels.shrink import is_optimization_layer
from tfmot_lite.sparsity.channels.wrapper import (
    PruneChannels,
    check_importance,
    link_channel_plans,
    new_plan_id,
)
from tfmot_lite.sparsity.schedule import ConstantSparsity, PruningSchedule
from tfmot_lite.core.weight_wrapper import WeightTransformWrapper


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

    if isinstance(to_prune, (list, tuple)):
        return [prune_channels(layer, **params) for layer in to_prune]
    if not isinstance(to_prune, keras.layers.Layer):
        raise ValueError(
            "`to_prune` must be a Keras layer, a list of layers or a "
            f"Sequential/Functional model. Received {to_prune!r}."
        )
    if not graph.is_graph_model(to_prune) and not isinstance(to_prune, keras.Model):
        if isinstance(to_prune, WeightTransformWrapper):
            raise ValueError(
                f"Layer '{to_prune.name}' is already wrapped by "
                f"{type(to_prune).__name__}. Prune channels first, then shrink, "
                "then apply other techniques."
            )
        return PruneChannels(graph.copy_layer(to_prune), **params)

    coupling.check_model(to_prune)
    wrapped = [
        path for path, layer in graph.iter_layers(to_prune)
        if is_optimization_layer(layer)
    ]
    if wrapped:
        raise ValueError(
            f"Model '{to_prune.name}' already holds optimization wrappers "
            f"({', '.join(wrapped[:5])}). Prune channels on the plain model "
            "(strip other techniques first); the deploy path is "
            "prune_channels -> shrink -> quantize_model."
        )
    analysis = coupling.analyze(to_prune, leave_intact)
    unknown = set(leave_intact) - {
        name for path, layer in graph.iter_layers(to_prune)
        for name in (path, layer.name)
    }
    if unknown:
        raise ValueError(
            f"`leave_intact` names layers that are not in model "
            f"'{to_prune.name}': {sorted(unknown)}."
        )
    plans = _plan_layers(analysis)
    if not plans:
        raise ValueError(
            f"Model '{to_prune.name}' has no channels that can be pruned:\n"
            + str(analysis.report())
        )

    def replace(layer):
        spec = plans.get(layer.name)
        if spec is None:
            return graph.training_layer(layer)
        return PruneChannels(layer, channel_plan=spec, **params)

    pruned = graph.rewrite(to_prune, replace)
    link_channel_plans(pruned)
    return pruned


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
            f"Several layers are named {duplicates}: channel pruning matches "
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
