"""benchmarks/delegation.py on one small model: both conversions are made,
measured and compared, and the table shows what the constant reshapes
change (MobileNetV3Small's Flatten: its shape arithmetic leaves LiteRT's
kernels)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_table(capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    sys.modules.pop("delegation", None)
    import delegation

    delegation.main(["--models", "MobileNetV3Small", "--modes", "float32", "--size", "32",
                     "--rounds", "1", "--runs", "2"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")]
            for line in lines if line.startswith("MobileNetV3Small ") and "|" in line}
    constant, run_time = rows["constant"], rows["run-time"]
    assert constant[3] == "1" and constant[5] == "-"
    assert "SHAPE float32 x1" in run_time[5]
    done, total = map(int, run_time[4].split("/"))
    assert done < total
    assert float(constant[7]) == 0.0  # the same outputs either way
