"""`tfmot.quantization.keras.default_8bit`."""

from tfmot_lite.quantization.config import Default8BitQuantizeConfig  # noqa: F401
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry  # noqa: F401
from tfmot_lite.quantization.scheme import (  # noqa: F401
    Default8BitQuantizeLayoutTransform,
    Default8BitQuantizeScheme,
)
