"""PQAT and PCQAT train on JAX and PyTorch where installed (each in its own
process: the backend is fixed at import); on TensorFlow, the suite's own
backend, tests/experimental/test_combine_*.py train them in process."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

HERE = pathlib.Path(__file__).parent


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_preserving_qat_trains_on_backend(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(HERE / "combine_backend_script.py")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    for name in ("pqat", "pcqat"):
        run = result[name]
        assert np.all(np.isfinite(run["loss"])) and run["loss"][-1] < run["loss"][0]
        assert run["kernels"] == 2  # the fused convolution and the Dense head
        assert run["zeros"] >= 0.5
    assert result["pcqat"]["unique"] <= 8
