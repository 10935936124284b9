"""`prune_low_magnitude`, `strip_pruning` and `prune_scope`."""

import keras

from tfmot_lite.core import checks, graph
from tfmot_lite.sparsity.registry import (
    classify,
    prunable_weights,
    unsupported_layer_error,
)
from tfmot_lite.sparsity.schedule import ConstantSparsity
from tfmot_lite.sparsity.wrapper import (
    PruneLowMagnitude,
    check_pruning_params,
    weight_shape_problems,
)
from tfmot_lite.core.weight_wrapper import carry_input_shape


def prune_low_magnitude(
    to_prune,
    pruning_schedule=ConstantSparsity(0.5, 0),
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    **kwargs,
):
    """Prepares a layer or model for magnitude pruning.

    Every layer with prunable kernels (see `PrunableLayer` for custom layers)
    is wrapped in `PruneLowMagnitude`; other layers are copied unchanged.
    Train the result with the `UpdatePruningStep` callback and remove the
    wrappers with `strip_pruning` before export.

    Args:
      to_prune: a layer, a list of layers, or a Sequential/Functional model
        (models nested inside it are pruned too).
      pruning_schedule: a `PruningSchedule`: when masks update, to what
        sparsity.
      block_size: `(rows, cols)` for block sparsity of 2-D weights.
      block_pooling_type: 'AVG' or 'MAX' scoring of blocks.
      pruning_policy: a `PruningPolicy` that validates the model and picks
        the layers to prune (models only).
      sparsity_m_by_n: `(m, n)` for N:M structured sparsity: m zeros in every
        n weights along input channels; replaces the schedule's sparsity.
      **kwargs: passed to each `PruneLowMagnitude` wrapper (a layer only).

    Returns:
      A new layer or model. `to_prune` is not modified and can be pruned
      again.
    """
    checks.check_prune_args(block_size, pruning_policy)
    checks.check_finite_weights(to_prune, "prune_low_magnitude")
    params = dict(
        pruning_schedule=pruning_schedule,
        block_size=tuple(block_size),
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
    )
    check_pruning_params(**params)

    if isinstance(to_prune, (list, tuple)):
        if pruning_policy is not None:
            raise ValueError("`pruning_policy` applies to models, not lists of layers.")
        return [prune_low_magnitude(layer, **params, **kwargs) for layer in to_prune]

    if not graph.is_graph_model(to_prune) and not isinstance(to_prune, keras.Model):
        if pruning_policy is not None:
            raise ValueError(
                "`pruning_policy` applies to models: it checks the whole graph. "
                f"Received layer '{getattr(to_prune, 'name', to_prune)}'."
            )
        checks.check_layer_not_wrapped(
            to_prune, PruneLowMagnitude, "prune_low_magnitude", "prune"
        )
        _check_model([(getattr(to_prune, "name", str(to_prune)), to_prune)], params)
        copy = carry_input_shape(to_prune, graph.copy_layer(to_prune))
        return PruneLowMagnitude(copy, **params, **kwargs)

    checks.check_no_wrapper_kwargs(kwargs, "pruning")
    graph.check_rewritable(to_prune)
    _check_model(list(graph.iter_layers(to_prune)), params)
    _check_already_pruned(list(graph.iter_layers(to_prune)), params)
    if pruning_policy is not None:
        pruning_policy.ensure_model_supports_pruning(to_prune)

    def replace(layer):
        if isinstance(layer, PruneLowMagnitude) or classify(layer) != "prune":
            return graph.training_layer(layer)
        if pruning_policy is not None and not pruning_policy.allow_pruning(layer):
            return graph.training_layer(layer)
        return PruneLowMagnitude(layer, **params)

    return graph.rewrite(to_prune, replace)


def _check_model(named_layers, params):
    """Raises one ValueError listing every layer that cannot be pruned."""
    if not all(isinstance(layer, keras.layers.Layer) for _, layer in named_layers):
        raise ValueError(
            "`to_prune` must be a Keras layer, a list of layers or a "
            f"Sequential/Functional model. Received {named_layers[0][1]!r}."
        )
    unknown = [
        f"{path} ({layer.__class__.__name__})"
        for path, layer in named_layers
        if not isinstance(layer, PruneLowMagnitude) and classify(layer) is None
    ]
    if unknown:
        raise unsupported_layer_error(unknown)
    problems = []
    for path, layer in named_layers:
        if not layer.built or isinstance(layer, PruneLowMagnitude):
            continue
        weights = prunable_weights(layer)
        if weights:
            problems += weight_shape_problems(
                layer, weights, params["block_size"], params["sparsity_m_by_n"]
            )
    if problems:
        raise ValueError(
            "Cannot apply the requested sparsity pattern:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nUse block_size=(1, 1) / sparsity_m_by_n=None for these layers, "
            "or prune only the layers that fit."
        )


def _describe(settings):
    return ", ".join(
        f"{key}={getattr(value, 'value', value)!r}" for key, value in settings.items()
    )


def _settings(wrapper):
    return dict(
        pruning_schedule=wrapper.pruning_schedule,
        block_size=tuple(wrapper.block_size),
        block_pooling_type=wrapper.block_pooling_type,
        sparsity_m_by_n=wrapper.sparsity_m_by_n,
    )


def _check_already_pruned(named_layers, params):
    """Already-pruned layers are kept as they are (as in tfmot) when they
    were pruned with the requested settings; other settings would be
    silently ignored, so that is an error naming the layers and the fix."""
    wanted = dict(params)
    if wanted["sparsity_m_by_n"] is not None:
        wanted["sparsity_m_by_n"] = tuple(wanted["sparsity_m_by_n"])
    differ = [
        f"{path}: {_describe(_settings(layer))}"
        for path, layer in named_layers
        if isinstance(layer, PruneLowMagnitude) and _settings(layer) != wanted
    ]
    if differ:
        raise ValueError(
            "These layers are already pruned, with other settings than the "
            "ones requested, which would not be applied to them:\n"
            + "\n".join(f"  - {d}" for d in differ)
            + "\nStrip the old wrappers first: "
            "`prune_low_magnitude(strip_pruning(model), ...)`."
        )


def strip_pruning(model):
    """Returns a copy of `model` with every pruning wrapper removed.

    Each wrapped layer is replaced by the layer it wrapped, its kernels set
    to `kernel * mask`, so the result is a plain Keras model (nested models
    included) that predicts exactly as the pruned model does in inference.
    `model` itself is not modified.
    """
    return graph.strip(model, PruneLowMagnitude)


def prune_scope():
    """A custom-object scope naming the pruning wrapper (tfmot compatibility).

    tfmot-lite's objects are registered with Keras, so `load_model` needs no
    scope; this exists so that tfmot code using it keeps working.
    """
    return keras.saving.custom_object_scope({"PruneLowMagnitude": PruneLowMagnitude})
