"""tutorials/quantization_aware_training.py on its short setting."""

import pytest
from tflite_helpers import op_report
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


def test_quick_run(capsys):
    result = load_tutorial("quantization_aware_training").main(["--quick", "--verbose", "0"])
    out = capsys.readouterr().out
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"float", "post-training int8", "QAT int8", "QAT int8 distilled"}
    assert "QAT int8" in out and "agreement" in out
    # The QAT export is int8 end to end (int8 in and out).
    names, float_ops = op_report(result["qat_tflite"])
    assert not float_ops and "DEQUANTIZE" not in names
    assert result["agreement"] >= 0.99
    for name in ("QAT int8", "QAT int8 distilled"):
        assert rows[name]["size_kb"] < rows["float"]["size_kb"] / 2
        assert rows[name]["accuracy"] > 0.5
