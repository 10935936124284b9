"""benchmarks/activation_passes.py, one round at batch 2 on MobileNetV2's
stem and first three blocks (`--blocks 3`, a smoke run): it finds the
activations QAT tracks (a range per Conv-BN output and per residual ADD,
most of them after a ReLU6) and times every kind of pass over them beside
the plain step."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_passes_over_the_tracked_activations(capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    sys.modules.pop("activation_passes", None)
    import activation_passes

    activation_passes.main(["--rounds", "1", "--batch-size", "2", "--blocks", "3"])
    lines = capsys.readouterr().out.splitlines()
    tracked = next(line for line in lines if "tracked activations" in line).split()
    count, relu = int(tracked[0]), int(tracked[tracked.index("them") - 2])
    # The ReLU6 outputs of the stem and the blocks (1 + 1 + 2 + 2); besides
    # them the input, the three projections, the Add, the mean and the logits.
    assert (count, relu) == (13, 6)
    timed = {line.split("  ")[0] for line in lines[3:]}
    assert set(activation_passes.PASSES) | {"plain fused step"} <= timed
