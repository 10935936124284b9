"""`tfmot.quantization.keras.default_8bit`."""

from tfmot_lite.quantization.config import Default8BitQuantizeConfig  # noqa: F401
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry  # noqa: F401
from tfmot_lite.quantization.layout import Default8BitQuantizeLayoutTransform  # noqa: F401
from tfmot_lite.quantization.scheme import Default8BitQuantizeScheme  # noqa: F401
