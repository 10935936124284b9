"""The export edge: Keras model -> .tflite bytes, run and inspected.

This is the one place where tfmot-lite needs TensorFlow (the TFLite
converter) and LiteRT (to run the result).
"""

from tfmot_lite.export.convert import to_tflite
from tfmot_lite.export.inspect import TFLiteReport, inspect_tflite
from tfmot_lite.export.runtime import (
    TFLiteModel,
    gzipped_size,
    measure_latency,
)
from tfmot_lite.export.sparse import to_sparse_tflite

__all__ = [
    "TFLiteModel",
    "TFLiteReport",
    "gzipped_size",
    "inspect_tflite",
    "measure_latency",
    "to_sparse_tflite",
    "to_tflite",
]
