"""Reading a .tflite model in tests: its op types (is the body int8?) and
its kernels (zeros, distinct values), how far its outputs are from the
Keras model's. Import as `from tflite_helpers import
...` (pytest.ini puts tests/ on the path)."""

import numpy as np


def op_report(flatbuffer):
    """`(op names, ops that touch float tensors)` of a .tflite model, read
    through the interpreter: independent of `export.float_operators` (the
    library's reading from the flatbuffer), which the tests check with it.

    The QUANTIZE / DEQUANTIZE pairs at the model's edges are where float
    enters and leaves; an int8 -> int8 QUANTIZE (a requantization) is int8.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=bytes(flatbuffer),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    names, float_ops = [], []
    for op in interpreter._get_ops_details():
        names.append(op["op_name"])
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        dtypes = {
            np.dtype(tensors[i]["dtype"]).name
            for i in list(op["inputs"]) + list(op["outputs"])
            if i >= 0
        }
        if "float32" in dtypes:
            float_ops.append(op["op_name"])
    return names, float_ops


def assert_int8_body(flatbuffer):
    names, float_ops = op_report(flatbuffer)
    assert not float_ops, f"float ops in the body: {float_ops} (all ops: {names})"
    edges = [n for n in names if n in ("QUANTIZE", "DEQUANTIZE")]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE", names
    return names, edges


def kernel_stats(flatbuffer):
    """Per-kernel statistics of the model, in operator order:
    `tfmot_lite.export.weight_stats` (an independent reading of the
    flatbuffer), kept to the operators that hold kernels."""
    from tfmot_lite.export.weights import KERNEL_OPS, weight_stats

    return [s for s in weight_stats(flatbuffer) if s.op_type in KERNEL_OPS]


def output_steps(model, path, x, xnnpack=True):
    """How many output quantization steps apart the Keras model's outputs
    on `x` and the int8-output .tflite at `path` are, element by element
    (XNNPACK, or LiteRT's built-in kernels with `xnnpack=False`)."""
    import keras

    from tfmot_lite.export.runtime import TFLiteModel

    lite = TFLiteModel(open(path, "rb").read(), xnnpack=xnnpack)
    keras_out = keras.ops.convert_to_numpy(model(x, training=False))
    return np.abs(keras_out - lite.predict(x)) / lite.output["quantization"][0]
