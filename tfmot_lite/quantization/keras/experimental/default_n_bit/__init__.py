"""`tfmot.quantization.keras.experimental.default_n_bit`."""

from tfmot_lite.quantization.scheme import DefaultNBitQuantizeScheme  # noqa: F401
