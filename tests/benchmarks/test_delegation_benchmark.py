"""benchmarks/delegation.py on two small models: the three conversions are
made, measured and compared, and the table shows what constant shapes
change (MobileNetV3Small's Flatten: its shape arithmetic leaves LiteRT's
kernels; the decoder's Conv2DTranspose: XNNPACK runs it only on a fixed
batch size)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # six conversions of MobileNetV3Small and a decoder: 13.6 s
def test_table(capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    sys.modules.pop("delegation", None)
    import delegation

    delegation.main(["--models", "MobileNetV3Small,decoder", "--modes", "float32",
                     "--size", "32", "--rounds", "1", "--runs", "2"])
    lines = capsys.readouterr().out.splitlines()
    rows = {(line.split("|")[0].strip(), line.split("|")[2].strip()):
            [c.strip() for c in line.split("|")]
            for line in lines if line.startswith(("MobileNetV3Small ", "decoder ")) and "|" in line}
    constant, run_time = rows["MobileNetV3Small", "constant"], rows["MobileNetV3Small", "run-time"]
    assert constant[3] == "1" and constant[5] == "-"
    assert "SHAPE float32 x1" in run_time[5]
    done, total = map(int, run_time[4].split("/"))
    assert done < total
    assert float(run_time[7]) == 0.0  # the same outputs either way
    fixed = rows["MobileNetV3Small", "batch 1"]
    assert fixed[3] == "1" and fixed[5] == "-" and float(fixed[7]) == 0.0

    free, fixed = rows["decoder", "constant"], rows["decoder", "batch 1"]
    assert "TRANSPOSE_CONV float32 x3" in free[5]
    assert fixed[3] == "1" and fixed[5] == "-"
    assert float(fixed[7]) < 1e-4  # XNNPACK's kernel: float rounding only
