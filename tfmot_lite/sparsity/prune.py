"""`prune_low_magnitude`, `strip_pruning` and `prune_scope`."""

from tfmot_lite.core import checks, entry, graph, techniques
from tfmot_lite.sparsity.policy import PruningPolicy
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
    plan = _PrunePlan(
        check_pruning_params(
            pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n
        ),
        pruning_policy,
    )
    return entry.wrap(to_prune, plan, **kwargs)


def _check_pruning_policy(policy):
    """`pruning_policy` must be None or a `PruningPolicy` instance."""
    if policy is not None and not isinstance(policy, PruningPolicy):
        hint = ""
        if isinstance(policy, str) and "xnnpack" in policy.lower():
            hint = " such as tfmot_lite.sparsity.keras.PruneForLatencyOnXNNPack()"
        raise ValueError(
            "`pruning_policy` must be a PruningPolicy instance"
            f"{hint}, or None. Received {policy!r} ({type(policy).__name__})."
        )


class _PrunePlan(entry.Plan):
    """`prune_low_magnitude` for the entry path (`core/entry.py`)."""

    technique = techniques.PRUNING
    entry = "prune_low_magnitude"
    argument = "to_prune"
    gerund = "pruning"

    def __init__(self, params, policy):
        _check_pruning_policy(policy)
        self.params = params
        self.policy = policy
        self.verdicts = {}

    def check_call(self, kind):
        if self.policy is not None and kind != "model":
            raise ValueError(
                "`pruning_policy` applies to models: it checks the whole graph. "
                f"Received a {kind}; pass the model, or no policy."
            )

    def check_layers(self, named_layers):
        """One error for the layers that hold weights we cannot classify,
        one for the weights that cannot take the requested pattern."""
        unknown, problems = [], []
        for path, layer in named_layers:
            if entry.already_wrapped(layer, self):
                continue
            verdict = self.verdicts[id(layer)] = classify(layer)
            if verdict is None:
                unknown.append(f"{path} ({layer.__class__.__name__})")
            elif verdict == "prune" and layer.built:
                problems += weight_shape_problems(
                    layer, prunable_weights(layer),
                    self.params["block_size"], self.params["sparsity_m_by_n"],
                )
        if unknown:
            raise unsupported_layer_error(unknown)
        if problems:
            raise checks.problems_error(
                "Cannot apply the requested sparsity pattern", problems,
                "Use block_size=(1, 1) / sparsity_m_by_n=None for these layers, "
                "or prune only the layers that fit.",
            )

    def settings(self, wrapper):
        return dict(
            pruning_schedule=wrapper.pruning_schedule,
            block_size=tuple(wrapper.block_size),
            block_pooling_type=wrapper.block_pooling_type,
            sparsity_m_by_n=wrapper.sparsity_m_by_n,
        )

    def requested(self, wrapper):
        return self.params

    def wrap_layer(self, copy, original, **kwargs):
        return PruneLowMagnitude(copy, **self.params, **kwargs)

    def prepare(self, model):
        if self.policy is not None:
            self.policy.ensure_model_supports_pruning(model)

    def replace(self, copy, original):
        if self.verdicts.get(id(original)) != "prune" or (
            self.policy is not None and not self.policy.allow_pruning(copy)
        ):
            return graph.training_layer(copy)
        return PruneLowMagnitude(copy, **self.params)


def strip_pruning(model):
    """Returns a copy of `model` with every pruning wrapper removed.

    Each wrapped layer is replaced by the layer it wrapped, its kernels set
    to `kernel * mask`, so the result is a plain Keras model (nested models
    included) that predicts exactly as the pruned model does in inference.
    `model` itself is not modified.
    """
    return techniques.strip(model, techniques.PRUNING)


def prune_scope():
    """A custom-object scope naming `PruneLowMagnitude` (tfmot compatibility;
    loading needs no scope)."""
    return entry.compat_scope(PruneLowMagnitude)
