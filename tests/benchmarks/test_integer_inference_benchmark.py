"""benchmarks/integer_inference.py, one round on a small MobileNetV3Small:
it times predict with the integer inference paths and without, and leaves
them switched on."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_times_both_ways_and_restores_the_integer_paths(capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    sys.modules.pop("integer_inference", None)
    import integer_inference

    from tfmot_lite.quantization.input_range import BorrowsInputRange

    shipped = BorrowsInputRange.integer_input
    integer_inference.main(["--models", "MobileNetV3Small", "--size", "32", "--images", "8",
                            "--rounds", "1"])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| MobileNetV3Small |") and float(row.split("|")[-2]) > 0
    assert BorrowsInputRange.integer_input is shipped
