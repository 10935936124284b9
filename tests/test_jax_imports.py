"""On the JAX backend, importing tfmot-lite imports no TensorFlow.

TensorFlow takes seconds and hundreds of MB to import; a JAX user who never
exports to TFLite should not pay for it (the export edge imports it when
called). Checked in a fresh interpreter: this process has TensorFlow loaded.
"""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]

PROBE = """
import sys
import tfmot_lite
import tfmot_lite.sparsity.keras
import tfmot_lite.quantization.keras
import tfmot_lite.clustering.keras
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
print("TENSORFLOW_MODULES", len(loaded), loaded[:5])
"""


def test_importing_the_api_on_jax_does_not_import_tensorflow():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("TENSORFLOW_MODULES")][-1]
    assert line.startswith("TENSORFLOW_MODULES 0 "), line
