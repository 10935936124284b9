"""The int8 kernels of a .tflite model, for the collaborative-optimization tests.

Uses `tfmot_lite.export.weight_stats` when it exists (the export package's
public reader); otherwise a small LiteRT-based reader with the same fields
(`op_type`, `shape`, `dtype`, `zero_fraction`, `unique_values`,
`max_unique_per_channel`), kernels of CONV_2D / DEPTHWISE_CONV_2D /
FULLY_CONNECTED only.
"""

import dataclasses

import numpy as np

KERNEL_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


@dataclasses.dataclass
class KernelStats:
    op_type: str
    shape: tuple
    dtype: str
    zero_fraction: float
    unique_values: int
    max_unique_per_channel: int


def _litert_kernel_stats(flatbuffer):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=bytes(flatbuffer),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    stats = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in KERNEL_OPS:
            continue
        index = int(op["inputs"][1])
        values = np.asarray(interpreter.get_tensor(index))
        params = details[index]["quantization_parameters"]
        axis = (int(params["quantized_dimension"]) if len(params["scales"]) > 1
                else KERNEL_OPS[op["op_name"]])
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        stats.append(KernelStats(
            op_type=op["op_name"],
            shape=tuple(values.shape),
            dtype=values.dtype.name,
            zero_fraction=float(np.mean(values == 0)),
            unique_values=len(np.unique(values)),
            max_unique_per_channel=int(max(len(np.unique(r)) for r in rows)),
        ))
    return stats


def kernel_stats(flatbuffer):
    """Per-kernel statistics of the int8 model, in operator order."""
    try:
        from tfmot_lite.export import weight_stats
    except ImportError:
        return _litert_kernel_stats(flatbuffer)
    return [s for s in weight_stats(flatbuffer) if s.op_type in KERNEL_OPS]
