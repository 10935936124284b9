"""Magnitude pruning. The public API is `tfmot_lite.sparsity.keras`."""

from tfmot_lite.sparsity import keras  # noqa: F401
