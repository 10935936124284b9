"""Pruning, QAT and clustering train on the other Keras backends that are
installed: JAX and PyTorch, each in its own process (the backend is fixed at
import). TensorFlow is the backend of the rest of the suite, which runs
these paths in process (tests/sparsity, tests/clustering, tests/sublayers,
tests/quantization/test_transformer_qat.py and test_recurrent_qat.py).
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

HERE = pathlib.Path(__file__).parent
BACKENDS = ["jax", "torch"]
SCRIPTS = ["prune_script.py", "qat_cluster_script.py", "sublayers_script.py",
           "transformer_qat_script.py"]


@pytest.fixture(scope="module", params=BACKENDS)
def results(request):
    """Every script's results on one backend, from one process."""
    backend = request.param
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(HERE / "run_scripts.py"), *SCRIPTS], env=env,
        capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return backend, json.loads(done.stdout.strip().splitlines()[-1])


def script_result(results, name):
    backend, by_script = results
    result = by_script[name]
    assert "error" not in result, result.get("error")
    assert result["backend"] == backend
    return result


def test_prune_train_strip_on_backend(results):
    result = script_result(results, "prune_script.py")
    assert result["max_diff"] <= 1e-6
    # Schedule: 0.2 -> 0.8 by step 12, updates every 4 steps; 16 steps run.
    for value in result["sparsity"]:
        assert value == pytest.approx(0.8, abs=0.01)
    assert result["original_zeros"] == 0  # the input model was not touched


def test_qat_and_clustering_train_on_backend(results):
    result = script_result(results, "qat_cluster_script.py")
    assert result["qat_finite"]
    assert result["qat_loss"][-1] < result["qat_loss"][0]
    assert result["cluster_loss"][-1] < result["cluster_loss"][0]
    # Conv2D, DepthwiseConv2D and Dense kernels, 4 clusters each.
    assert len(result["unique_values"]) == 3
    assert all(count <= 4 for count in result["unique_values"])
    assert result["strip_diff"] <= 1e-5
    assert result["input_untouched"]


def test_layers_inside_subclassed_blocks_train_on_backend(results):
    result = script_result(results, "sublayers_script.py")
    for model in ("user_block", "vit"):
        for technique, figures in result.get(model, {}).items():
            assert figures["inner_wrapped"] > 0, (model, technique)
            assert figures["finite"], (model, technique)
            assert figures["reload_diff"] <= 1e-5, (model, technique)
            # strip_quantization drops activation fake-quant, whose ranges
            # two epochs of SGD leave wide; the others are exact.
            bound = 0.3 * figures["output_range"] if technique == "qat" else 1e-5
            assert figures["strip_diff"] <= bound, (model, technique)


def test_transformer_qat_trains_on_backend(results):
    result = script_result(results, "transformer_qat_script.py")
    for case in ("patches_int8", "tokens_int16x8", "lstm_int8"):
        figures = result[case]
        assert figures["finite"] and figures["loss_fell"], case
        assert figures["reload_diff"] <= 1e-5, case
        # Stripped: Keras' own LayerNormalization and attention with the
        # rounded weights, which the QAT layers compute with fake-quant off.
        assert figures["strip_diff"] <= 1e-3 * max(figures["output_range"], 1.0), case
