"""Distillation trains on the JAX backend (stateless training step: the
teacher's weights travel as non-trainable state). Run in a subprocess, as
the backend is fixed at import."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax"])
def test_distillation_on_backend(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(HERE / "backend_script.py")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["teacher_unchanged"]
    assert result["trainable"] == result["student_trainable"]
    assert all(s == pytest.approx(0.5, abs=0.02) for s in result["sparsity"])
    for name in ("prune_loss", "cluster_loss", "qat_loss"):
        assert result[name][-1] < result[name][0]
    # The loss on this backend is the formula (T=3, alpha=0.7).
    s, t = np.array(result["logits"]), np.array(result["teacher_logits"])
    log_t, log_s = _log_softmax(t / 3), _log_softmax(s / 3)
    soft = 9 * (np.exp(log_t) * (log_t - log_s)).sum(-1).mean()
    assert result["computed"] == pytest.approx(0.3 * result["task"] + 0.7 * soft, rel=1e-4)
