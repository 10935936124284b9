"""tutorials/quantization_aware_training.py on its short setting."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "tutorials" / "quantization_aware_training.py"


def _load():
    spec = importlib.util.spec_from_file_location("quantization_aware_training", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run(capsys):
    sys.path.insert(0, str(ROOT / "tests" / "quantization"))
    try:
        from qat_helpers import op_report
    finally:
        sys.path.pop(0)
    result = _load().main(["--quick", "--verbose", "0"])
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
