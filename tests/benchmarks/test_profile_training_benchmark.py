"""benchmarks/profile_training.py, one profiled step at batch 2 of
MobileNetV2's stem and first three blocks (`--blocks 3`), with one
inter-op thread, in a process of its own (TensorFlow's executor threads are
set once, before anything runs): the op types QAT adds come out of the
trace, and the plain model has none of them."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _row(lines, op):
    """`(plain ms, qat ms)` of an op type's row."""
    fields = next(line for line in lines if line.startswith(op + " ")).split()
    numbers = [float(f.strip("()")) for f in fields[1:] if f.strip("()")]
    return numbers[0], numbers[2]


@pytest.mark.slow
def test_one_op_at_a_time_profile_names_the_fake_quant_passes():
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "profile_training.py"),
         "--technique", "qat", "--steps", "1", "--repeats", "1", "--batch-size", "2",
         "--inter-op-threads", "1", "--top", "40", "--blocks", "3"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "1 inter-op thread(s)" in lines[0]
    plain_fq, qat_fq = _row(lines, "FakeQuantWithMinMaxVars")
    assert plain_fq == 0.0 and qat_fq > 0.0
    plain_relu6, qat_relu6 = _row(lines, "Relu6")
    assert plain_relu6 > 0.0 and qat_relu6 == 0.0  # folded into the fake-quant's range
