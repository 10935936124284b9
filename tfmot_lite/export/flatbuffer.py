"""`Subgraph`: the main subgraph of a .tflite flatbuffer, read with the
`tflite` package (the bindings generated from TFLite's schema).

`inspect_tflite` and `weight_stats` both read a file through it: operator
types and options, each operator's input and output tensors, who produces
and who consumes each tensor, tensor shapes, the bytes and values stored
for a constant, and the constant behind an operator input (through DENSIFY
and DEQUANTIZE).
"""

import math

import numpy as np

# TFLite `TensorType` codes -> numpy dtypes.
DTYPES = {
    0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
    6: np.bool_, 7: np.int16, 9: np.int8, 10: np.float64, 12: np.uint64,
    15: np.uint32, 16: np.uint16,
}
# Operators between a stored constant and the operator that reads it.
PASS_THROUGH = ("DENSIFY", "DEQUANTIZE")


class Subgraph:
    """Subgraph 0 of a .tflite model (validated bytes: see `read_tflite`)."""

    def __init__(self, data):
        import tflite
        from tflite.utils import BUILTIN_OPCODE2NAME

        self.tflite = tflite
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.graph = self.model.Subgraphs(0)
        self.ops = [self.graph.Operators(i) for i in range(self.graph.OperatorsLength())]
        self.types = []
        for op in self.ops:
            code = self.model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            self.types.append(BUILTIN_OPCODE2NAME.get(builtin, "CUSTOM"))
        self.producer, self.consumers = {}, {}
        for i in range(len(self.ops)):
            for t in self.outputs(i):
                self.producer[t] = i
            for t in self.inputs(i):
                self.consumers.setdefault(t, []).append(i)
        self.graph_outputs = set(self.graph.OutputsAsNumpy().tolist())

    def inputs(self, i):
        op = self.ops[i]
        return [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []

    def outputs(self, i):
        op = self.ops[i]
        return [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []

    def shape(self, t):
        tensor = self.graph.Tensors(t)
        return tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def options(self, i, cls_name):
        """Op `i`'s builtin options as a `tflite.<cls_name>` (None if absent)."""
        table = self.ops[i].BuiltinOptions()
        if table is None:
            return None
        options = getattr(self.tflite, cls_name)()
        options.Init(table.Bytes, table.Pos)
        return options

    def constant(self, t):
        """The values stored for tensor `t` (only the stored ones when it is
        sparse), or None when it is computed at run time."""
        raw = self.raw(t)
        if raw is None:
            return None
        tensor = self.graph.Tensors(t)
        values = np.frombuffer(raw, dtype=DTYPES.get(tensor.Type(), np.uint8))
        if tensor.Sparsity() is None and values.size == math.prod(self.shape(t)):
            return values.reshape(self.shape(t))
        return values

    def raw(self, t):
        """The stored bytes of tensor `t`; None when it has none (computed at
        run time, or `t` < 0: an absent optional input)."""
        if t < 0:
            return None
        buffer = self.model.Buffers(self.graph.Tensors(t).Buffer())
        if buffer is None:
            return None
        if buffer.DataLength():
            return buffer.DataAsNumpy().tobytes()
        if buffer.Offset() > 1:  # Large models keep buffers after the flatbuffer.
            return self.data[buffer.Offset(): buffer.Offset() + buffer.Size()]
        return None

    def source(self, t):
        """`(constant tensor, stored sparse)` behind input `t`, following
        DENSIFY and DEQUANTIZE; `(None, False)` for run-time tensors."""
        sparse = False
        while self.raw(t) is None and t in self.producer:
            producer = self.producer[t]
            if self.types[producer] not in PASS_THROUGH:
                return None, False
            sparse |= self.types[producer] == "DENSIFY"
            t = self.inputs(producer)[0]
        if self.raw(t) is None:
            return None, False
        return t, sparse or self.graph.Tensors(t).Sparsity() is not None
