"""Quantization-aware training (tfmot's `quantization` package)."""

from tfmot_lite.quantization import keras  # noqa: F401
