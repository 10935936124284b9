"""The transformer QAT tutorial runs end to end on its short setting: the
float, PTQ and QAT (int8 and 16x8) ViT exports run in LiteRT, the QAT ones
fully integer and predicting what the Keras QAT model predicts."""

import contextlib
import io

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow
pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("transformer")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        figures = load_tutorial("transformer_qat").main(
            ["--quick", "--output-dir", str(output_dir)])
    return figures, printed.getvalue(), output_dir


def _reports(figures):
    return {(variant, r.mode): r for variant, r in figures["reports"]}


def test_every_variant_ran_or_says_why(quick_run):
    figures, table, output_dir = quick_run
    reports = _reports(figures)
    assert {("float", "float32"), ("PTQ", "int8"), ("QAT", "int8"),
            ("QAT", "int16x8")} <= set(reports)
    # TensorFlow's 16x8 calibration refuses LayerNormalization's NEG: the
    # table says so instead of stopping.
    assert set(reports) | set(figures["failures"]) == {
        ("float", "float32"), ("PTQ", "int8"), ("PTQ", "int16x8"), ("QAT", "int8"),
        ("QAT", "int16x8")}
    for (variant, mode), r in reports.items():
        path = output_dir / f"vit_{variant.lower()}_{mode}.tflite"
        assert path.stat().st_size == r.bytes
        assert r.examples == 359 and r.latency_us > 0
    assert figures["float_accuracy"] > 0.8
    for label in ("Digits ViT", "QAT", "int16x8", "integer ops", "float tensor"):
        assert label in table


def test_qat_exports_are_fully_integer_and_agree(quick_run):
    figures, _, _ = quick_run
    reports = _reports(figures)
    for mode in ("int8", "int16x8"):
        assert figures["float_operators"][("QAT", mode)] == []
        assert reports[("QAT", mode)].agreement >= 0.99
        # Within a point of the Keras QAT model's own accuracy.
        assert abs(reports[("QAT", mode)].accuracy
                   - figures["qat_keras_accuracy"][mode]) <= 0.01
