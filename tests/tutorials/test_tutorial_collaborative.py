"""tutorials/collaborative_optimization.py on its short setting."""

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


def test_quick_run(capsys):
    result = load_tutorial("collaborative_optimization").main(["--quick", "--verbose", "0"])
    out = capsys.readouterr().out
    rows = {r["model"]: r for r in result["rows"]}
    # --quick distills one scheme, PCQAT (pruning, clustering and QAT fine-tunes).
    assert list(rows) == ["float", "QAT", "PQAT", "CQAT", "PCQAT", "PCQAT distilled"]
    assert "gzip bytes" in out and "max/ch" in out and "PCQAT distilled" in out
    kernels = result["kernels"]
    for name in list(rows)[1:]:
        assert result["agreement"][name] >= 0.99, name
        assert rows[name]["bytes"] < rows["float"]["bytes"] / 2, name
    assert len(kernels["PQAT"]) == 5  # four convolutions and the Dense head
    # Distillation keeps what PCQAT keeps: zeros and at most 8 values per channel.
    for name in ("PQAT", "PCQAT", "PCQAT distilled"):
        assert all(zeros >= 0.49 for _, _, zeros, _, _ in kernels[name]), name
    for name in ("CQAT", "PCQAT", "PCQAT distilled"):
        assert all(per_channel <= 8 for *_, per_channel in kernels[name]), name
    # Zeros and repeated values compress: smaller downloads than plain QAT.
    for name in ("PQAT", "CQAT", "PCQAT", "PCQAT distilled"):
        assert rows[name]["gzip_bytes"] < rows["QAT"]["gzip_bytes"], name
