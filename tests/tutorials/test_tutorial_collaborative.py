"""tutorials/collaborative_optimization.py on its short setting."""

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


def test_quick_run(capsys):
    result = load_tutorial("collaborative_optimization").main(["--quick", "--verbose", "0"])
    out = capsys.readouterr().out
    rows = {r["model"]: r for r in result["rows"]}
    techniques = ("QAT", "PQAT", "CQAT", "PCQAT")
    assert list(rows) == ["float"] + [f"{t}{d}" for t in techniques for d in ("", " distilled")]
    assert "gzip bytes" in out and "max/ch" in out and "PCQAT distilled" in out
    kernels = result["kernels"]
    for distilled in ("", " distilled"):  # distillation keeps what each scheme keeps
        for name in techniques:
            name += distilled
            assert result["agreement"][name] >= 0.99
            assert rows[name]["bytes"] < rows["float"]["bytes"] / 2
        assert len(kernels["PQAT" + distilled]) == 5  # four convolutions and the Dense head
        for _, _, zeros, _, _ in kernels["PQAT" + distilled] + kernels["PCQAT" + distilled]:
            assert zeros >= 0.49
        for _, _, _, _, per_channel in kernels["CQAT" + distilled] + kernels["PCQAT" + distilled]:
            assert per_channel <= 8
        # Zeros and repeated values compress: smaller downloads than plain QAT.
        for name in ("PQAT", "CQAT", "PCQAT"):
            assert rows[name + distilled]["gzip_bytes"] < rows["QAT" + distilled]["gzip_bytes"]
