"""`tfmot.quantization.keras.experimental`."""

from tfmot_lite.quantization.keras.experimental import default_n_bit  # noqa: F401
