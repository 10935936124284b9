"""`ExportReport`: what one exported .tflite file holds and how it runs,
and its presentation: a text table (`format_reports`, `text_table`), JSON
(`save_json`, `load_json`), Markdown (`to_markdown`) and one PNG comparing
variants (`plot_reports`). `pipeline.py` fills it in (`export_model`).
"""

import dataclasses
import json
import os

import numpy as np

from tfmot_lite.atomic_file import atomic_write, write_text_atomic
from tfmot_lite.export.delegation import Delegation
from tfmot_lite.export.ptq import MODES



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
    latency_us: object  # None where `latency_runs` was 0
    threads: int
    latency_runs: int
    accuracy: object = None
    keras_accuracy: object = None
    agreement: object = None
    examples: int = 0
    calibration: str = ""
    fidelity: object = None  # FidelityReport.to_dict(), see export/fidelity.py
    xnnpack: object = None  # delegation.Delegation as a dict: what XNNPACK runs

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
        if self.xnnpack:
            lines.append(str(Delegation(**self.xnnpack)))
        if self.fidelity:
            lines.append(f"layer fidelity: {self.fidelity['summary']}")
        return "\n".join(lines)

    @property
    def first_departure(self):
        """The first layer where the .tflite departs from the Keras model
        (a dict: path, cosine, max_error, ...), None when none does or the
        layers were not compared (`fidelity`)."""
        return (self.fidelity or {}).get("first_departure")


# -- export ---------------------------------------------------------------


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
    ("XNNPACK ops", lambda r: "-" if not r.xnnpack else
     f"{Delegation(**r.xnnpack).share:.0%}"),
    ("latency us", lambda r: "-" if r.latency_us is None else f"{r.latency_us:.1f}"),
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
    runs = sorted({r.latency_runs for r in reports if r.latency_runs})
    latency = (f"median of {', '.join(map(str, runs))} single-example runs"
               if runs else "not measured")
    lines += [
        "",
        f"LiteRT latency: {latency}, "
        f"{', '.join(map(str, threads))} thread(s), XNNPACK. int8 ops: share of "
        "the operators handling data that touch no float tensor. zeros: share of zero "
        "kernel weights as stored. max uniq/ch: most distinct values in one output "
        "channel of a kernel. XNNPACK ops: share of the operators the XNNPACK "
        "delegate runs (the rest run in LiteRT's built-in kernels).",
    ]
    return "\n".join(lines) + "\n"


def save_json(reports, path):
    """Writes the reports (a list, or one) as JSON; returns the path."""
    if isinstance(reports, ExportReport):
        reports = [reports]
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump([r.to_dict() for r in reports], f, indent=2, default=_jsonable)
    return path


def save_markdown(reports, path, title=None):
    if isinstance(reports, ExportReport):
        reports = [reports]
    write_text_atomic(path, to_markdown(reports, title))
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
    axes[1].bar(x, [r.latency_us or 0.0 for r in reports], color="tab:orange")
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
    # The format comes from the extension, as matplotlib takes it from a path.
    image_format = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, dpi=110, format=image_format)
    finally:
        plt.close(fig)
    return path


__all__ = [
    "text_table",
    "ExportReport",
    "MODES",
    "format_reports",
    "load_json",
    "plot_reports",
    "save_json",
    "save_markdown",
    "to_markdown",
]
