"""The kernels of a .tflite model, for the collaborative-optimization tests:
`tfmot_lite.export.weight_stats` (an independent reading of the flatbuffer),
kept to the operators that hold kernels, in operator order."""

from tfmot_lite.export import weight_stats
from tfmot_lite.export.weights import KERNEL_OPS


def kernel_stats(flatbuffer):
    """Per-kernel statistics of the model, in operator order."""
    return [s for s in weight_stats(flatbuffer) if s.op_type in KERNEL_OPS]
