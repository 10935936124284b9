"""One call from any tfmot-lite model to a .tflite file and a verified report.

`export_model(model, mode, path, data, labels, threads)` strips the model
(pruning, clustering; QAT models keep their fake-quant ops), converts it,
writes the .tflite, then reads the file back and measures it:

* size: bytes raw and gzipped (what an over-the-air update downloads);
* operators: every operator type, and the fraction that run integer (of
  the operators handling data, those that touch no float tensor; the
  QUANTIZE/DEQUANTIZE of a float interface count as float);
* weights: zeros and unique values of every kernel (`weight_stats`), so a
  pruned model shows its zeros and a clustered one its few values per
  channel, as stored;
* the XNNPACK sparse-inference verdict (`inspect_tflite`);
* LiteRT latency: the median of repeated single-example runs, `threads`
  threads, XNNPACK as deployed;
* given `data`, top-1 agreement with the Keras model and, given `labels`,
  accuracy in Keras and in LiteRT.

`ExportReport`s print as a table (`format_reports`), save as JSON
(`save_json`) and Markdown (`to_markdown`), and several draw one PNG
comparing size, latency and accuracy (`plot_reports`).
"""

import dataclasses
import json
import os

import numpy as np

from tfmot_lite.export.convert import check_keras_model, check_representative_data, to_tflite
from tfmot_lite.export.inspect import inspect_tflite
from tfmot_lite.export.ptq import CALIBRATED, MODES, calibration_samples, check_mode, converter_settings
from tfmot_lite.export.runtime import TFLiteModel, gzipped_size, measure_latency
from tfmot_lite.export.source import read_tflite
from tfmot_lite.export.strip import strip_for_export, techniques
from tfmot_lite.export.weights import KERNEL_OPS, weight_stats

_DATA_TYPES = {np.dtype(t) for t in (np.float32, np.float16, np.int8, np.uint8, np.int16)}


@dataclasses.dataclass
class ExportReport:
    """What `export_model` wrote and measured. All sizes in bytes, latency in
    microseconds; `accuracy`/`keras_accuracy`/`agreement` are None without
    data (or labels)."""

    name: str
    mode: str
    path: object
    techniques: list
    bytes: int
    gzip_bytes: int
    operators: list
    int8_fraction: float
    sparsity: float
    max_unique_per_channel: object
    weights: list
    sparse_storage: bool
    sparse_ready: bool
    sparse_reasons: list
    latency_us: float
    threads: int
    latency_runs: int
    accuracy: object = None
    keras_accuracy: object = None
    agreement: object = None
    examples: int = 0
    calibration: str = ""

    def to_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        lines = [format_reports([self])]
        counts = {}
        for op in self.operators:
            counts[op] = counts.get(op, 0) + 1
        lines.append("operators: " + ", ".join(f"{k} x{v}" for k, v in counts.items()))
        verdict = "yes" if self.sparse_ready else "no (" + "; ".join(self.sparse_reasons) + ")"
        lines.append(f"XNNPACK sparse-ready: {verdict}")
        return "\n".join(lines)


# -- export ---------------------------------------------------------------


def export_model(
    model,
    mode="float32",
    path=None,
    data=None,
    labels=None,
    threads=1,
    representative_data=None,
    int8_io=False,
    sparse=None,
    name=None,
    latency_runs=100,
):
    """Strips, converts, writes and measures a tfmot-lite model.

    Args:
      model: a Keras model, plain or with tfmot-lite wrappers (pruning,
        clustering, QAT, or a combination). A QAT model exports as int8 from
        its own fake-quant ranges (mode "int8" only).
      mode: "float32", "dynamic_range", "float16", "int8" or "int16x8" (see
        `quantize_post_training`).
      path: where to write the .tflite (optional).
      data: NumPy inputs (batch first) to measure agreement (and accuracy
        with `labels`) on; its first example also drives the latency runs.
      labels: integer class labels of `data`.
      threads: LiteRT threads for the latency and accuracy runs.
      representative_data: calibration inputs for "int8"/"int16x8" post-
        training quantization; defaults to up to 200 examples of `data`.
      int8_io: an integer interface (int8; int16 for "int16x8").
      sparse: store weights sparse (`Optimize.EXPERIMENTAL_SPARSITY`,
        float32 only, as XNNPACK's sparse kernels are float). None: when the
        model is pruned or its kernels are at least half zeros.
      name: the report's label (default: the techniques and mode).
      latency_runs: repeated runs the median latency is taken over.

    Returns:
      An `ExportReport`.

    Raises:
      ValueError: before conversion, for a model that is not Keras, an
        unknown mode, a mode the model cannot take, missing calibration
        data, or data/labels that do not fit the model.
    """
    check_keras_model(model)
    check_mode(mode)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"`threads` must be a positive integer; got {threads!r}.")
    found = sorted(techniques(model))
    qat = "qat" in found
    if qat and mode != "int8":
        raise ValueError(
            f"Model '{model.name}' is quantization-aware trained: it exports as "
            f"int8 from its fake-quant ranges; use mode='int8', not {mode!r}."
        )
    if data is not None:
        data = check_representative_data(model, data, "data")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != len(data):
                raise ValueError(
                    f"`labels` has {len(labels)} entries but `data` has {len(data)} "
                    "examples; give one label per example."
                )
    elif labels is not None:
        raise ValueError("`labels` were given without `data`; pass the inputs too.")
    calibration = ""
    if mode in CALIBRATED and not qat:
        if representative_data is None and data is None:
            raise ValueError(
                f"mode {mode!r} (full integer) needs `representative_data` (or "
                "`data`) to calibrate activation ranges on."
            )
        if representative_data is None:
            representative_data = calibration_samples(data, 200)
            calibration = f"{len(representative_data)} examples of `data`"
        else:
            representative_data = check_representative_data(model, representative_data)
            calibration = f"{len(representative_data)} representative examples"
    if int8_io and mode not in CALIBRATED:
        raise ValueError(f"`int8_io=True` needs mode 'int8' or 'int16x8'; got {mode!r}.")

    plain = strip_for_export(model)
    if sparse is None:
        sparse = mode == "float32" and not qat and (
            "pruning" in found or _kernel_zero_fraction(plain) >= 0.5)
    elif sparse and mode != "float32":
        raise ValueError(
            "`sparse=True` needs mode 'float32': XNNPACK's sparse kernels are float "
            f"and LiteRT cannot run sparse {mode} weights."
        )
    tf = _tf()
    if qat:
        settings = {"optimizations": [tf.lite.Optimize.DEFAULT]}
        if int8_io:
            settings["inference_input_type"] = tf.int8
            settings["inference_output_type"] = tf.int8
    else:
        settings = converter_settings(mode, int8_io)
        if sparse:
            settings["optimizations"] = list(settings.get("optimizations", [])) + [
                tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    flatbuffer = to_tflite(
        plain,
        representative_data=representative_data if mode in CALIBRATED and not qat else None,
        path=path,
        **settings,
    )
    report = measure(
        flatbuffer, data=data, labels=labels, keras_model=model, threads=threads,
        latency_runs=latency_runs,
    )
    report.name = name or "+".join(found + [mode])
    report.mode = mode
    report.path = None if path is None else os.fspath(path)
    report.techniques = found
    report.calibration = calibration
    return report


def measure(flatbuffer, data=None, labels=None, keras_model=None, threads=1,
            latency_runs=100, name="model"):
    """An `ExportReport` for an existing .tflite (bytes or path).

    `keras_model`, when given with `data`, is the reference for top-1
    agreement and Keras accuracy.
    """
    flatbuffer = read_tflite(flatbuffer, "flatbuffer")
    runner = TFLiteModel(flatbuffer, num_threads=threads)
    operators, int8_fraction = _operators(flatbuffer)
    stats = weight_stats(flatbuffer)
    kernels = [s for s in stats if s.op_type in KERNEL_OPS]
    total = sum(s.size for s in kernels)
    zeros = sum(s.size * s.zero_fraction for s in kernels)
    per_channel = [s.max_unique_per_channel for s in kernels if s.max_unique_per_channel]
    inspection = inspect_tflite(flatbuffer)
    if data is not None and len(data):
        sample = np.asarray(data[0], dtype=np.float32)
    else:
        shape = tuple(runner.input["shape"][1:])
        sample = np.random.default_rng(0).random(shape).astype(np.float32)
    report = ExportReport(
        name=name,
        mode="",
        path=None,
        techniques=[],
        bytes=len(flatbuffer),
        gzip_bytes=gzipped_size(flatbuffer),
        operators=operators,
        int8_fraction=int8_fraction,
        sparsity=zeros / total if total else 0.0,
        max_unique_per_channel=max(per_channel) if per_channel else None,
        weights=[s.to_dict() for s in stats],
        sparse_storage=any(s.sparse for s in stats),
        sparse_ready=inspection.sparse_ready,
        sparse_reasons=inspection.reasons,
        latency_us=measure_latency(flatbuffer, sample, runs=latency_runs,
                                   warmup=min(20, latency_runs), num_threads=threads),
        threads=threads,
        latency_runs=latency_runs,
    )
    if data is not None:
        predicted = runner.predict(data).argmax(-1)
        report.examples = int(len(data))
        if keras_model is not None:
            reference = np.asarray(keras_model.predict(data, verbose=0)).argmax(-1)
            report.agreement = float(np.mean(predicted == reference))
            if labels is not None:
                report.keras_accuracy = float(np.mean(reference == labels))
        if labels is not None:
            report.accuracy = float(np.mean(predicted == labels))
    return report


def _tf():
    from tfmot_lite.quiet import import_tensorflow

    return import_tensorflow()


def _kernel_zero_fraction(model):
    from tfmot_lite import graph

    zeros = total = 0
    for _, layer in graph.iter_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            values = np.asarray(kernel)
            zeros += int(values.size - np.count_nonzero(values))
            total += values.size
    return zeros / total if total else 0.0


def _operators(flatbuffer):
    """`(operator names, int8 share)` of the graph as stored (read by LiteRT
    without delegates, so no DELEGATE node hides them). The share counts the
    operators that handle data (a float or 8/16-bit integer tensor; int32
    shape arithmetic is left out) and touch no floating-point tensor: the
    QUANTIZE/DEQUANTIZE of a float interface count as float."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tfmot_lite.quiet import silenced_stderr

    with silenced_stderr():
        interpreter = Interpreter(
            model_content=flatbuffer,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    names, data_ops, integer = [], 0, 0
    for op in interpreter._get_ops_details():
        names.append(op["op_name"])
        used = [i for i in list(op["inputs"]) + list(op["outputs"]) if i in tensors]
        kinds = {np.dtype(tensors[i]["dtype"]) for i in used}
        if not kinds & _DATA_TYPES:
            continue  # Shape bookkeeping on int32 only.
        data_ops += 1
        if not any(np.issubdtype(kind, np.floating) for kind in kinds):
            integer += 1
    return names, integer / data_ops if data_ops else 0.0


# -- presentation ---------------------------------------------------------

_COLUMNS = (
    ("variant", lambda r: r.name),
    ("mode", lambda r: r.mode or "-"),
    ("bytes", lambda r: f"{r.bytes:,}"),
    ("gzipped", lambda r: f"{r.gzip_bytes:,}"),
    ("int8 ops", lambda r: f"{r.int8_fraction:.0%}"),
    ("zeros", lambda r: f"{r.sparsity:.1%}"),
    ("max uniq/ch", lambda r: "-" if r.max_unique_per_channel is None
     else str(r.max_unique_per_channel)),
    ("sparse-ready", lambda r: "yes" if r.sparse_ready else "no"),
    ("latency us", lambda r: f"{r.latency_us:.1f}"),
    ("accuracy", lambda r: "-" if r.accuracy is None else f"{r.accuracy:.4f}"),
    ("agreement", lambda r: "-" if r.agreement is None else f"{r.agreement:.4f}"),
)


def _rows(reports):
    return [[name for name, _ in _COLUMNS]] + [[f(r) for _, f in _COLUMNS] for r in reports]


def text_table(rows):
    """Rows of strings (the first is the header) as aligned text columns,
    `a | b` with a `-+-` rule under the header: the tables the tutorials and
    benchmarks print."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_reports(reports):
    """A plain-text table, one row per report."""
    rows = _rows(reports)
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def to_markdown(reports, title=None):
    """A Markdown table of the reports (with an optional heading)."""
    rows = _rows(reports)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(rows[0]) - 2)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    threads = sorted({r.threads for r in reports})
    runs = sorted({r.latency_runs for r in reports})
    lines += [
        "",
        f"LiteRT latency: median of {', '.join(map(str, runs))} single-example runs, "
        f"{', '.join(map(str, threads))} thread(s), XNNPACK. int8 ops: share of "
        "the operators handling data that touch no float tensor. zeros: share of zero "
        "kernel weights as stored. max uniq/ch: most distinct values in one output "
        "channel of a kernel.",
    ]
    return "\n".join(lines) + "\n"


def save_json(reports, path):
    """Writes the reports (a list, or one) as JSON; returns the path."""
    if isinstance(reports, ExportReport):
        reports = [reports]
    with open(path, "w", encoding="utf-8") as f:
        json.dump([r.to_dict() for r in reports], f, indent=2, default=_jsonable)
    return path


def save_markdown(reports, path, title=None):
    if isinstance(reports, ExportReport):
        reports = [reports]
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_markdown(reports, title))
    return path


def load_json(path):
    """Reads reports written by `save_json` back as `ExportReport`s."""
    with open(path, encoding="utf-8") as f:
        return [ExportReport(**entry) for entry in json.load(f)]


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def plot_reports(reports, path, title=None):
    """One PNG, three panels: size (raw, gzipped), latency, accuracy.

    Accuracy shows LiteRT accuracy where labels were given, else top-1
    agreement with the Keras model (panel titled accordingly).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in reports]
    x = np.arange(len(reports))
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.6 * len(reports), 4.2))
    ax = axes[0]
    ax.bar(x - 0.2, [r.bytes / 1024 for r in reports], 0.4, label="raw")
    ax.bar(x + 0.2, [r.gzip_bytes / 1024 for r in reports], 0.4, label="gzipped")
    ax.set_title("size (KiB)")
    ax.legend(fontsize=8)
    axes[1].bar(x, [r.latency_us for r in reports], color="tab:orange")
    threads = sorted({r.threads for r in reports})
    axes[1].set_title(f"LiteRT latency (us, {'/'.join(map(str, threads))} thread)")
    use_accuracy = all(r.accuracy is not None for r in reports)
    values = [
        (r.accuracy if use_accuracy else r.agreement) for r in reports
    ]
    values = [np.nan if v is None else 100 * v for v in values]
    axes[2].bar(x, values, color="tab:green")
    axes[2].set_title("accuracy (%)" if use_accuracy else "top-1 agreement with Keras (%)")
    finite = [v for v in values if np.isfinite(v)]
    if finite:
        axes[2].set_ylim(max(0, min(finite) - 10), 100)
        for xi, v in zip(x, values):
            if np.isfinite(v):
                axes[2].text(xi, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "text_table",
    "ExportReport",
    "MODES",
    "export_model",
    "format_reports",
    "load_json",
    "measure",
    "plot_reports",
    "save_json",
    "save_markdown",
    "to_markdown",
]
