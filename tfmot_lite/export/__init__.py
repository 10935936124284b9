"""The export edge: Keras model -> .tflite bytes, run and inspected.

This is the one place where tfmot-lite needs TensorFlow (the TFLite
converter) and LiteRT (to run the result).
"""

from tfmot_lite.export.convert import to_tflite
from tfmot_lite.export.runtime import (
    TFLiteModel,
    gzipped_size,
    measure_latency,
)

__all__ = ["TFLiteModel", "gzipped_size", "measure_latency", "to_tflite"]
