"""Pruning trains on every Keras backend that is installed.

Each backend runs in its own process (the backend is fixed at import).
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("prune_script.py")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_prune_train_strip_on_backend(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["max_diff"] <= 1e-6
    # Schedule: 0.2 -> 0.8 by step 12, updates every 4 steps; 16 steps run.
    for value in result["sparsity"]:
        assert value == pytest.approx(0.8, abs=0.01)
    assert result["original_zeros"] == 0  # the input model was not touched
