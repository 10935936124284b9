"""A .tflite whose every intermediate tensor is also a graph output.

XNNPACK, the delegate a .tflite runs on when deployed, keeps no
intermediate tensors: LiteRT's `experimental_preserve_all_tensors` works by
running the built-in kernels instead, which round some ops differently
(their int8 MEAN puts a share of a small pool's outputs one step up,
their LOGISTIC misses the exactly rounded sigmoid). Listing every tensor
an operator writes among the graph's outputs changes no operator and no
tensor (the converter's fusions and scales stay as they are), and XNNPACK
then writes each of them out as it computes it: what `layer_fidelity`
compares layer by layer.
"""


def every_tensor_an_output(flatbuffer):
    """`flatbuffer` (bytes) with every operator output of its main graph
    added to the graph's outputs, after the ones it had (so output 0 is
    unchanged). Tensor indices stay the same. Needs TensorFlow (its
    flatbuffer object API, `tensorflow.lite.tools.flatbuffer_utils`)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    outputs = [int(i) for i in graph.outputs]
    written = {int(i) for op in graph.operators for i in op.outputs if int(i) >= 0}
    graph.outputs = outputs + sorted(written - set(outputs))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
