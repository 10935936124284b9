"""The export edge: Keras model -> .tflite bytes, run, inspected, reported.

This is the one place where tfmot-lite needs TensorFlow (the TFLite
converter) and LiteRT (to run the result).

* `convert.py`: `to_tflite`, the converter call; model/data validation.
* `ptq.py`: `quantize_post_training`, the five post-training modes.
* `strip.py`: which wrappers a model holds; stripping before conversion.
* `sparse.py`: `to_sparse_tflite`, pruned weights stored sparse.
* `source.py`: `read_tflite`, validated .tflite bytes from bytes or a path.
* `flatbuffer.py`: `Subgraph`, the operators and constants of those bytes.
* `weights.py`: `weight_stats`, zeros / unique values per weight tensor.
* `inspect.py`: `inspect_tflite`, per-operator table; its XNNPACK verdict is
  `inspect_xnnpack.py`, over the .tflite adapter `inspect_graph.py`.
* `pipeline.py`: `export_model` -> a verified `ExportReport`; `measure`.
* `fidelity.py`: `layer_fidelity`, Keras vs .tflite layer by layer: the
  first layer where the .tflite departs; `taps.py` makes XNNPACK's
  intermediate tensors readable for it.
* `report.py`: `ExportReport` and its tables, JSON, Markdown, PNG.
* `runtime.py`: `TFLiteModel` (LiteRT), `measure_latency`, `gzipped_size`.
"""

from tfmot_lite.export import report
from tfmot_lite.export.convert import to_tflite
from tfmot_lite.export.fidelity import FidelityReport, LayerFidelity, layer_fidelity
from tfmot_lite.export.inspect import TFLiteReport, inspect_tflite
from tfmot_lite.export.pipeline import export_model, float_operators, measure
from tfmot_lite.export.ptq import MODES, quantize_post_training
from tfmot_lite.export.report import (
    ExportReport,
    format_reports,
    load_json,
    plot_reports,
    save_json,
    save_markdown,
    text_table,
    to_markdown,
)
from tfmot_lite.export.runtime import (
    TFLiteModel,
    gzipped_size,
    measure_latency,
)
from tfmot_lite.export.source import read_tflite
from tfmot_lite.export.sparse import to_sparse_tflite
from tfmot_lite.export.weights import WeightStats, format_weight_stats, weight_stats

__all__ = report.__all__ + [
    "export_model",
    "float_operators",
    "FidelityReport",
    "LayerFidelity",
    "layer_fidelity",
    "measure",
    "TFLiteModel",
    "TFLiteReport",
    "WeightStats",
    "format_weight_stats",
    "gzipped_size",
    "inspect_tflite",
    "measure_latency",
    "quantize_post_training",
    "read_tflite",
    "to_sparse_tflite",
    "to_tflite",
    "weight_stats",
]
