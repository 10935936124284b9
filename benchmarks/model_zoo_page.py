"""The model zoo's page: its table, the layer-fidelity and paired-accuracy
sections and its plot, written from the cached results
(`benchmarks/model_zoo.py` measures them; `fidelity_record` is what a
result keeps of `export.layer_fidelity`'s report)."""

import os
import platform

import keras
import numpy as np

from tfmot_lite import export
from tfmot_lite.export.delegation import Delegation

from model_zoo_settings import (
    DEFAULT_TITLE, FLOAT_LEARNING_RATE, FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM, INTEGER, PAGE,
    PLOT, ROOT, TECHNIQUES, all_models, rates_text)
from stats import mcnemar_exact


def _row_dict(row):
    return None if row is None else row.to_dict()


def _rows_around(report, before=3, after=2):
    """The compared rows up to and just after the first departure."""
    compared = report.compared
    first = report.first_departure
    if first is None:
        return []
    k = compared.index(first)
    return [r.to_dict() for r in compared[max(0, k - before):k + after + 1]]


def fidelity_record(report):
    """What a result keeps of an `export.FidelityReport`: its verdicts (the
    first departing layer, the first that computes differently on its own
    inputs, the worst), the rows around the first departure and every row,
    from which `refresh_fidelity` recomputes the verdicts."""
    local = [r for r in report.rows if r.local_share is not None]
    return {
        "summary": report.summary(),
        "examples": report.examples,
        "compared": len(report.compared),
        "layers": len(report.rows),
        "first_departure": _row_dict(report.first_departure),
        "first_local_departure": _row_dict(report.first_local_departure),
        "local_compared": len(local),
        "worst_local": _row_dict(max(local, key=lambda r: r.local_share, default=None)),
        "worst": _row_dict(report.worst),
        "output": _row_dict(report.output),
        "min_cosine": report.min_cosine,
        "max_error": report.max_error,
        "max_lsb": report.max_lsb,
        "max_local_share": report.max_local_share,
        "kernels": report.kernels,
        "rows": _rows_around(report),
        "all_rows": [r.to_dict() for r in report.rows],
    }


def refresh_fidelity(r):
    """Recomputes a cached result's verdicts from its rows with the current
    `FidelityReport` rules (the rows are what was measured)."""
    f = r.get("fidelity")
    if not f or "all_rows" not in f:
        return
    r["fidelity"] = fidelity_record(export.FidelityReport.from_dict({
        "rows": f["all_rows"], "examples": f["examples"], "min_cosine": f["min_cosine"],
        "max_error": f["max_error"], "max_lsb": f["max_lsb"],
        "max_local_share": f.get("max_local_share", 0.02),
        "kernels": f.get("kernels", "built-in")}))


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def agreement_cell(r):
    """Top-1 agreement, and how many of the images it misses are ties in
    the Keras logits (`model_zoo._disagreements_on_ties`)."""
    text = _fmt(r["agreement"], ".3f")
    if r.get("disagreements_on_ties"):
        text += f" ({r['disagreements_on_ties']} on ties)"
    return text


def _tfmot_cell(r, tfmot):
    if r["technique"] != "qat" or r["model"] not in tfmot:
        return "-"
    v = tfmot[r["model"]]
    return f"ok, {v['bytes'] / 1024:,.0f} KiB" if v["status"] == "ok" else v["status"]


def _departure(r):
    f = r.get("fidelity")
    if r.get("fidelity_error"):
        return "comparison fails: " + r["fidelity_error"]
    if not f:
        return "-"
    first = f["first_departure"]
    if first is None:
        return f"none ({f['compared']}/{f['layers']} compared)"
    lsb = "" if first.get("lsb") is None else f", {first['lsb']:.0f} LSB"
    return (f"{first['path']} ({first['layer_type']}): cos {first['cosine']:.3f}, "
            f"err {first['max_error']:.0%}{lsb}")


def _local(r):
    """The first layer that computes differently on its own .tflite inputs,
    else the most-off layer's share."""
    f = r.get("fidelity")
    if not f or not f.get("local_compared"):
        return "-"
    first = f.get("first_local_departure")
    if first is not None:
        return (f"{first['path']} ({first['layer_type']}): {first['local_share']:.1%} "
                f"off, max {first['local_lsb']:.0f} LSB")
    worst = f["worst_local"]
    return f"none (worst {worst['local_share']:.1%} at {worst['path']})"


def _xnnpack_cell(r):
    """The share of operators XNNPACK runs; when not all, the partitions and
    the operators left to LiteRT's built-in kernels (the three most common)."""
    if not r.get("xnnpack"):
        return "-"
    x = Delegation(**r["xnnpack"])
    share = f"{x.share:.0%}"
    if x.complete:
        return share
    parts = "partition" if x.partitions == 1 else "partitions"
    return f"{share} ({x.partitions} {parts}; built-in: {x.outside_text(limit=3)})"


def table_rows(results, tfmot=None):
    header = ["model", "technique", "wrap/train/export", "int8 ops", "agreement",
              "logit cos", "XNNPACK vs built-in",
              "acc Keras / LiteRT", "KiB", "latency ms [min-max]", "XNNPACK ops",
              "wrap s", "step ms", "export s", "zeros", "uniq/ch", "first departing layer",
              "computes differently (own inputs)"]
    if tfmot:
        header.append("tfmot QAT (untrained)")
    rows = [header]
    for r in results:
        if r["status"] != "ok":
            rows.append([r["model"], r["technique"], r["status"]] + ["-"] * (len(header) - 3))
            if tfmot:
                rows[-1][-1] = _tfmot_cell(r, tfmot)
            continue
        spread = r.get("latency_spread_us")
        latency = f"{r['latency_us'] / 1000:.2f}" + (
            f" [{spread[0] / 1000:.2f}-{spread[1] / 1000:.2f}]" if spread else "")
        int8 = f"{r['int8_fraction']:.0%}"
        if r["technique"] in INTEGER and r["int8_fraction"] < 1.0:
            int8 += " (float: " + ", ".join(r["float_ops"]) + ")"
        rows.append([
            r["model"], r["technique"], "ok", int8,
            agreement_cell(r), _fmt(r["logit_cosine"], ".4f"),
            "-" if "kernels_agreement" not in r else
            f"{r['kernels_agreement']:.3f} / {r['kernels_cosine']:.4f}",
            f"{_fmt(r['keras_accuracy'], '.3f')} / {_fmt(r['accuracy'], '.3f')}",
            f"{r['bytes'] / 1024:,.0f}", latency, _xnnpack_cell(r), f"{r['wrap_s']:.1f}",
            _fmt(r.get("step_ms"), ".0f"), f"{r['export_s']:.1f}",
            f"{r['sparsity']:.0%}", _fmt(r["max_unique_per_channel"], "d"), _departure(r),
            _local(r),
        ] + ([_tfmot_cell(r, tfmot)] if tfmot else []))
    return rows


def paired_accuracy(results, first="qat", second="ptq"):
    """Per model, `first`'s .tflite against `second`'s on the same test
    images: `(model, acc first, acc second, only first right, only second
    right, McNemar p)` for the models where both recorded `test_correct`.
    With a few hundred images one image is 0.3 points of accuracy; p says
    whether a difference is more than which images fell on which side."""
    by_key = {(r["model"], r["technique"]): r for r in results}
    rows = []
    for model in sorted({r["model"] for r in results}):
        a, b = by_key.get((model, first)), by_key.get((model, second))
        if not (a and b and a.get("test_correct") and b.get("test_correct")):
            continue
        x, y = np.asarray(a["test_correct"]), np.asarray(b["test_correct"])
        if x.shape != y.shape:
            continue
        only_a, only_b = int(np.sum(x > y)), int(np.sum(y > x))
        rows.append((model, float(x.mean()), float(y.mean()), only_a, only_b,
                     mcnemar_exact(only_a, only_b)))
    return rows


def paired_section(results):
    rows = paired_accuracy(results)
    if not rows:
        return []
    lines = [
        "", "## QAT against PTQ, image by image", "",
        "Each integer .tflite on the same test images (LiteRT, XNNPACK): the images "
        "only the QAT model classifies right, those only the PTQ model does, and the "
        "two-sided exact McNemar p-value of \"equally accurate\" (`stats.mcnemar_exact`). "
        "A small p says the accuracies differ by more than which images happened to "
        "fall on which side.", "",
        "| model | QAT acc | PTQ acc | only QAT right | only PTQ right | McNemar p |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {m} | {qa:.3f} | {pa:.3f} | {oq} | {op} | {p:.2f} |"
              for m, qa, pa, oq, op, p in rows]
    return lines


def to_markdown(results, args, tfmot_note, tfmot=None):
    for r in results:
        refresh_fidelity(r)
    rows = table_rows(results, tfmot)
    models = sorted({r["model"] for r in results})
    missing = [m for m in all_models() if m not in models]
    r0 = results[0] if results else {}
    lines = [
        f"# {args.title}",
        "",
        "Generated by `benchmarks/model_zoo.py` "
        f"(`python benchmarks/model_zoo.py --models {','.join(models)} "
        f"--techniques {','.join(t for t in TECHNIQUES if any(r['technique'] == t for r in results))} "
        f"--size {args.size} --epochs {r0.get('epochs', args.epochs)} "
        f"--train-examples {args.train_examples} --test-examples {args.test_examples} "
        f"--steps {r0.get('steps', args.steps)}{page_flags(args)}`).",
        "",
        f"**Covers {len(models)} of the {len(all_models())} `keras.applications` models** "
        f"({', '.join(models)}) at **{args.size}x{args.size}x3**, `weights=None`, 10 "
        f"classes, trained {r0.get('epochs', args.epochs)} epoch(s) on "
        f"{args.train_examples} digits images (scikit-learn's bundled 8x8 digits, "
        f"upsampled; Adam at {FLOAT_LEARNING_RATE:g}, {FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM:g} "
        f"for a model without BatchNorm); each technique then fine-tunes {r0.get('steps', args.steps)} steps of "
        f"{args.batch_size} (Adam at {rates_text(results)}). Accuracy, agreement and logit cosine are on "
        f"{args.test_examples} held-out images. After training, the float model's "
        "BatchNorm statistics are recomputed from its final weights "
        "(`recalibrate_batch_norms`): trained this briefly, the moving averages lag "
        "the weights, and the MobileNets predicted one class in inference without it. "
        "Where a model's top-1 margins are small, agreement moves with near ties, and "
        "the logit cosine is the steadier measure of whether the .tflite computes what "
        "its Keras model computes.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU core(s) shared with other "
        f"work; Keras {keras.__version__}, TensorFlow {_tf_version()}; LiteRT with "
        f"XNNPACK, {args.threads} thread(s).",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * 13 + ["---"] * (len(rows[0]) - 16)) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    lines += [
        "",
        "Columns: *int8 ops*, the report's `int8_fraction` (share of the operators "
        "handling data that touch no float tensor; integer exports have an int8 "
        "interface, so 100% means nothing runs in float); *agreement*, top-1 agreement "
        "of LiteRT with the Keras model the .tflite was exported from (for `ptq`, the "
        "float model), and how many of the images it misses are ties in the Keras "
        "model's logits (a QAT model's output is fake-quantized: two classes on the "
        "same integer, of which the Keras top-1 is the first); *logit cos*, mean cosine of the two logit vectors; *XNNPACK vs "
        "built-in*, for the integer exports, agreement / logit cosine of the same "
        ".tflite run by LiteRT's built-in kernels against XNNPACK (`kernel_spread`): "
        "both are correct integer runtimes that round differently in the last bit, so "
        "this is how far the .tflite disagrees with itself, the floor under the "
        "agreement a non-bit-exact simulation can reach on that model; *latency*, "
        "median over interleaved rounds of each round's median single-example LiteRT "
        "time, with the spread of the round medians; *XNNPACK ops*, the share of the "
        "operators LiteRT's XNNPACK delegate runs, and when not all, its partitions and "
        "the operators left to LiteRT's built-in kernels (`TFLiteModel.xnnpack_delegation`; "
        "on this x86 wheel XNNPACK takes no int8 standalone RELU, HARD_SWISH, AVERAGE_POOL_2D, "
        "GELU, RSQRT or SQUARED_DIFFERENCE, nor a 1x1 MAX_POOL_2D in any type, "
        "which is where an int8 file can run slower than the float one); *wrap s*, *step ms*, *export s*: "
        "wall time of wrapping, the median training step (first step excluded), and "
        "`export_model` (conversion, then the report's reading of operators, weights and "
        "latency; the agreement and layer-fidelity passes are not counted); *zeros*, *uniq/ch*: zero kernel weights and most distinct values "
        "in one output channel, as stored; *first departing layer*: for the QAT "
        "exports, `export.layer_fidelity` on a few test images (a layer departs at "
        "cosine < 0.99 or max error > 10% of its output's range, except an int8 "
        "tensor within 2 quantization steps (LSB) of the Keras output); differences "
        "of one step grow along a deep graph, so a faithful export of a deep model can "
        "depart somewhere; "
        "*computes differently (own inputs)*: each Keras layer run on the .tflite's own "
        "values of its inputs, the first that lands on another integer in more than 2% "
        "of its elements (else the most-off layer). Both read the tensors XNNPACK "
        "computes (the .tflite with every operator output listed among the graph's "
        "outputs, `export/taps.py`) where a row's summary below says \"XNNPACK kernels\"; "
        "rows measured before that read LiteRT's built-in kernels (XNNPACK had kept no "
        "intermediate tensors), whose int8 MEAN rounds a share of its outputs one step "
        "off the exact mean (docs/export.md) and whose LOGISTIC misses the exactly "
        "rounded sigmoid that XNNPACK and Keras give on a few percent of its outputs, "
        "and MobileNetV3's first layer (Rescaling 1/127.5, offset -1), which puts every "
        "output on a half step, read one step off on most elements (a tie the built-in "
        "kernels break the other way).",
        "",
        "## Layer fidelity of the QAT exports",
        "",
    ]
    any_fidelity = False
    for r in results:
        f = r.get("fidelity")
        if not f:
            continue
        any_fidelity = True
        lines.append(f"* **{r['model']} {r['technique']}**: {f['summary']}.")
        raw = next((row for row in f.get("all_rows", ())
                    if row["cosine"] is not None and row["cosine"] < f["min_cosine"]), None)
        if raw is not None:
            lsb = "" if raw.get("lsb") is None else f", {raw['lsb']:.0f} LSB"
            lines.append(f"  First layer under cosine {f['min_cosine']} counting rounding: "
                         f"`{raw['path']}` ({raw['layer_type']}) cos {raw['cosine']:.3f}, "
                         f"err {raw['max_error']:.1%}{lsb}.")
        out = f.get("output")
        if out:
            lines.append(f"  Model output: cosine {out['cosine']:.4f}, max error "
                         f"{out['max_error']:.1%} of its range.")
        if f["rows"]:
            lines.append("  Around the first departure: " + "; ".join(
                f"`{row['path']}` ({row['layer_type']}) cos {row['cosine']:.3f}, err "
                f"{row['max_error']:.1%}" + ("" if row.get("lsb") is None
                                             else f", {row['lsb']:.0f} LSB")
                for row in f["rows"]) + ".")
    if not any_fidelity:
        lines.append("No QAT export in this run.")
    lines += paired_section(results)
    failures = [r for r in results if r["status"] != "ok"]
    lines += ["", "## Failures", ""]
    lines += [f"* {r['model']} {r['technique']}: {r['status']}" for r in failures] or [
        "None in this run."]
    lines += [
        "",
        "## tensorflow-model-optimization side by side",
        "",
        tfmot_note,
        "",
        "## Not in this run",
        "",
        (", ".join(missing) + ": run `python benchmarks/model_zoo.py --models NAME` "
         "to add them (results are cached, the page is rewritten from the cache)."
         ) if missing else "Every model is covered.",
        "",
    ]
    return "\n".join(lines)


def page_flags(args):
    """The command-line flags that name this page, where not the defaults."""
    flags = ""
    for flag, attr, name in (("--markdown", "markdown", PAGE), ("--plot", "plot", PLOT)):
        value = getattr(args, attr)
        if os.path.abspath(value) != os.path.abspath(os.path.join(args.output, name)):
            flags += f" {flag} {os.path.relpath(value, ROOT)}"
    if args.title != DEFAULT_TITLE:
        flags += f' --title "{args.title}"'
    return flags

def _tf_version():
    from tfmot_lite.quiet import import_tensorflow

    return import_tensorflow().__version__


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfmot_lite.atomic_file import atomic_write

    models = sorted({r["model"] for r in results})
    techniques = [t for t in TECHNIQUES if any(r["technique"] == t for r in results)]
    by = {(r["model"], r["technique"]): r for r in results}
    fig, axes = plt.subplots(1, 3, figsize=(6 + 2.2 * len(models), 4.4))
    width = 0.8 / max(1, len(techniques))
    x = np.arange(len(models))
    panels = (
        ("top-1 agreement with Keras (%)", lambda r: 100 * r["agreement"]),
        ("size (KiB)", lambda r: r["bytes"] / 1024),
        ("LiteRT latency (ms)", lambda r: r["latency_us"] / 1000),
    )
    for ax, (label, value) in zip(axes, panels):
        for k, t in enumerate(techniques):
            values = []
            for m in models:
                r = by.get((m, t))
                ok = r is not None and r["status"] == "ok" and r.get("agreement") is not None
                values.append(value(r) if ok else np.nan)
            ax.bar(x + (k - (len(techniques) - 1) / 2) * width, values, width, label=t)
        ax.set_title(label, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
    if any(r["status"] == "ok" and r.get("bytes") for r in results):
        axes[1].set_yscale("log")  # not on an empty panel (every row failed)
    axes[0].set_ylim(0, 105)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(techniques), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path
