"""The recurrent-models tutorial runs end to end on its short setting: every
LSTM/GRU export runs in LiteRT and predicts what its Keras model predicts,
and the pruned zeros and clustered values reach the .tflite files."""

import contextlib
import io

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow

VARIANTS = [
    ("float", "float32"),
    ("float", "dynamic_range"),
    ("float", "int8"),
    ("float", "int16x8"),
    ("pruned 50%", "float32"),
    ("clustered 16", "float32"),
    ("QAT", "int8"),
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run (about a minute), shared by the tests below."""
    output_dir = tmp_path_factory.mktemp("recurrent")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = load_tutorial("recurrent_models").main(
            ["--quick", "--output-dir", str(output_dir)])
    return results, printed.getvalue(), output_dir


def _reports(results, kind):
    return {(variant, r.mode): r for variant, r in results["models"][kind]["reports"]}


def test_every_export_ran_and_wrote_its_file(quick_run):
    results, table, output_dir = quick_run
    assert sorted(results["models"]) == ["gru", "lstm"]
    for kind, figures in results["models"].items():
        reports = _reports(results, kind)
        assert sorted(reports) == sorted(VARIANTS)
        for (variant, mode), r in reports.items():
            path = output_dir / f"{kind}_{variant.split()[0]}_{mode}.tflite"
            assert path.stat().st_size == r.bytes
            assert r.examples == 359 and r.latency_us > 0
        # Trained well past chance even in the short run (about 0.95).
        assert figures["float_accuracy"] > 0.85
        assert figures["train_seconds"] > 0
    for label in ("LSTM: float Keras test accuracy", "GRU:", "pruned 50%", "clustered 16",
                  "int16x8", "max unique/ch", "latency us", "(weight_stats)"):
        assert label in table


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float_and_post_training_exports_agree_with_keras(quick_run, kind):
    reports = _reports(quick_run[0], kind)
    # Float graphs compute what Keras computes: agreement is exact but for ties.
    for variant in ("float", "pruned 50%", "clustered 16"):
        assert reports[(variant, "float32")].agreement >= 0.99
        r = reports[(variant, "float32")]
        assert r.accuracy == pytest.approx(r.keras_accuracy, abs=0.01)
    assert reports[("float", "dynamic_range")].agreement >= 0.97
    assert reports[("float", "int8")].agreement >= 0.95
    # Dynamic range stores int8 kernels, a quarter of the float bytes. (The
    # int8 file can be larger than the float one: one int32 bias per step.)
    float_report = reports[("float", "float32")]
    assert reports[("float", "dynamic_range")].bytes < float_report.bytes
    assert reports[("float", "dynamic_range")].gzip_bytes < float_report.gzip_bytes
    if kind == "lstm":
        assert reports[("float", "int16x8")].agreement >= 0.97
    # QAT: the integer steps compute what the Keras QAT model computes.
    assert reports[("QAT", "int8")].agreement >= 0.98
    assert reports[("QAT", "int8")].int8_fraction >= 0.95


@pytest.mark.xfail(
    strict=True,
    reason="TFLite's 16x8 quantizer stores a reset_after GRU's recurrent kernel as "
    "all zero codes (step 0: zero state plus recurrent bias); see the tutorial's "
    "docstring. Remove this mark when the export works around it.",
)
def test_gru_int16x8_agrees_with_keras(quick_run):
    results = quick_run[0]
    assert _reports(results, "gru")[("float", "int16x8")].agreement >= 0.97
    stored = results["models"]["gru"]["stored_kernels"][("float", "int16x8")]
    assert all(k["zeros"] < 0.1 for k in stored["recurrent_kernel"])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_pruned_and_clustered_recurrent_kernels_survive_conversion(quick_run, kind):
    figures = quick_run[0]["models"][kind]
    pruned = figures["stored_kernels"][("pruned", "float32")]
    clustered = figures["stored_kernels"][("clustered", "float32")]
    for name in ("kernel", "recurrent_kernel"):
        # One tensor each (shared by the 8 unrolled steps), half zeros.
        assert len(pruned[name]) == 1 and len(clustered[name]) == 1
        assert pruned[name][0]["zeros"] == pytest.approx(0.5, abs=0.02)
        assert 2 <= clustered[name][0]["unique"] <= 16
    reports = _reports(quick_run[0], kind)
    assert reports[("pruned 50%", "float32")].sparsity == pytest.approx(0.5, abs=0.02)
    assert reports[("pruned 50%", "float32")].sparse_storage
    assert reports[("clustered 16", "float32")].max_unique_per_channel <= 16
    # Clustering leaves the raw size as is; its few values gzip well.
    float_report = reports[("float", "float32")]
    assert reports[("clustered 16", "float32")].gzip_bytes < 0.7 * float_report.gzip_bytes
    assert reports[("pruned 50%", "float32")].gzip_bytes < float_report.gzip_bytes
