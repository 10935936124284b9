"""Reading a .tflite file safely: bytes or a path in, validated bytes out.

Every export function that takes a .tflite model (`inspect_tflite`,
`weight_stats`, `TFLiteModel`, the CLI) goes through `read_tflite`, so that an
empty, truncated or non-.tflite input fails with one ValueError that names the
file, instead of a `struct.error` from inside the flatbuffer bindings.
"""

import os

_IDENTIFIER = b"TFL3"  # The flatbuffer file identifier of TFLite models.


def read_tflite(source, argument="flatbuffer"):
    """Returns the bytes of a .tflite model given as bytes or a file path.

    Raises:
      ValueError: naming the file (or `argument` for in-memory bytes) when
        it is missing, empty, not a TFLite flatbuffer, or corrupt.
    """
    if source is None:
        raise ValueError(
            f"`{argument}` is None: pass the .tflite model as bytes or as the "
            "path of a .tflite file."
        )
    where = f"`{argument}`"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = f"'{path}'"
        if not os.path.exists(path):
            raise ValueError(f"{where}: no such file; give the path of a .tflite file.")
        if os.path.isdir(path):
            raise ValueError(f"{where} is a directory; give the path of a .tflite file.")
        with open(path, "rb") as f:
            data = f.read()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise ValueError(
            f"`{argument}` is a {type(source).__name__}; pass the .tflite model "
            "as bytes or as the path of a .tflite file."
        )
    if not data:
        raise ValueError(f"{where} is empty (0 bytes); it is not a .tflite model.")
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        hint = ""
        if data[:2] == b"PK":
            hint = " (it looks like a zip archive, e.g. a .keras model)"
        raise ValueError(
            f"{where} is not a .tflite model{hint}: a TFLite flatbuffer carries "
            "the identifier 'TFL3'. Convert a Keras model with "
            "tfmot_lite.export.export_model or to_tflite."
        )
    try:
        import tflite

        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        graph = model.Subgraphs(0)
        for i in range(graph.OperatorsLength()):
            model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        for t in range(graph.TensorsLength()):
            model.Buffers(graph.Tensors(t).Buffer())
    except Exception as error:  # noqa: BLE001 - any parse failure means corrupt
        raise ValueError(
            f"{where} is a corrupt or truncated .tflite model "
            f"({type(error).__name__}: {error}); export it again."
        ) from None
    return data
