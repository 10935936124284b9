"""tutorials/collaborative_optimization.py on its short setting."""

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


def test_quick_run(capsys):
    result = load_tutorial("collaborative_optimization").main(["--quick", "--verbose", "0"])
    out = capsys.readouterr().out
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["float", "QAT", "PQAT", "CQAT", "PCQAT"]
    assert "gzip bytes" in out and "max/ch" in out and "PCQAT" in out
    for name in ("QAT", "PQAT", "CQAT", "PCQAT"):
        assert result["agreement"][name] >= 0.99
        assert rows[name]["bytes"] < rows["float"]["bytes"] / 2
    kernels = result["kernels"]
    assert len(kernels["PQAT"]) == 5  # four convolutions and the Dense head
    for _, _, zeros, _, _ in kernels["PQAT"] + kernels["PCQAT"]:
        assert zeros >= 0.49
    for _, _, _, _, per_channel in kernels["CQAT"] + kernels["PCQAT"]:
        assert per_channel <= 8
    # Zeros and repeated values compress: smaller downloads than plain QAT.
    for name in ("PQAT", "CQAT", "PCQAT"):
        assert rows[name]["gzip_bytes"] < rows["QAT"]["gzip_bytes"]
