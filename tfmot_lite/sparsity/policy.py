"""Pruning policies: model-level rules on what may be pruned.

A policy is consulted by `prune_low_magnitude(model, pruning_policy=...)`
before anything is wrapped: `ensure_model_supports_pruning` rejects a model
the target runtime cannot exploit, and `allow_pruning` picks the layers to
prune among those that could be. A policy should hold no per-model state:
`prune_low_magnitude` passes `allow_pruning` private copies of the layers,
and either method may be called first. `PruneForLatencyOnXNNPack` lives in
`sparsity/xnnpack.py`, its rules in `tfmot_lite/core/xnnpack_rules.py`.
"""

import abc


class PruningPolicy(abc.ABC):
    """Base class of pruning policies (tfmot's `PruningPolicy`)."""

    @abc.abstractmethod
    def allow_pruning(self, layer):
        """Whether `layer` should be wrapped for pruning."""

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model):
        """Raises ValueError if `model` does not fit the policy."""
