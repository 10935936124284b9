"""Experimental APIs, as in `tfmot.experimental`: `combine` (collaborative
optimization: pruning- and cluster-preserving quantization-aware training)."""

from tfmot_lite.experimental import combine  # noqa: F401
