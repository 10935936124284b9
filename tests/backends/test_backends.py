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

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow

HERE = pathlib.Path(__file__).parent
BACKENDS = ["jax", "torch"]
# What training does on the backend: losses, reloads, strips.
TRAINING_SCRIPTS = ["prune_script.py", "qat_cluster_script.py", "sublayers_script.py",
                    "transformer_qat_script.py"]
# What the backend's compiler makes of the integer arithmetic: to the bit.
EXACT_SCRIPTS = ["integer_paths_script.py", "compiled_script.py", "wide_float_script.py"]
# On JAX the training scripts run in a process of their own with LLVM's
# backend optimization at level 0: XLA compiles their steps and eager ops
# about a quarter faster (141 s -> 106 s alone, 2026-12-07), and what they
# check does not depend on the machine code. The exact scripts run with
# XLA's default flags, as users' programs do.
FAST_CODEGEN = {"jax": {"XLA_FLAGS": "--xla_backend_optimization_level=0"}}


def _integer_paths_model(inputs):
    """Conv-BN-ReLU, a raw residual add, an Add into the ReLU after it, a
    convolution into a Concatenate, a standalone BatchNorm-ReLU, and a
    nested LayerNorm and strided convolution ending the graph:
    convolutions, ADDs, a concatenation, a BatchNorm's MUL and ADD and a
    LayerNorm on the int8 integers in inference, the Add, a convolution and
    the BatchNorm into their reader's range."""
    layers = keras.layers
    x = layers.ReLU()(layers.BatchNormalization()(
        layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)))
    x = x + layers.Conv2D(16, 1)(x)
    x = layers.ReLU()(layers.Add()([x, layers.Conv2D(16, 1)(x)]))
    x = layers.Concatenate()([layers.Conv2D(8, 1)(x), x])
    x = layers.ReLU()(layers.BatchNormalization()(x))
    down = keras.Sequential([layers.LayerNormalization(epsilon=1e-6),
                             layers.Conv2D(8, 2, strides=2)], name="down")
    return down(x)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A QAT model on TensorFlow, saved with its inputs and outputs for
    `integer_paths_script.py`: its BatchNorm's statistics those of the
    inputs under drawn gamma and beta, its biases near minus the mean they
    are added to (as trained ones), ranges from training-mode calls. Inputs
    of 4x4 blocks of equal pixels repeat each output's near ties."""
    from tfmot_lite.quantization import keras as quantization

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    small = 4.0 + rng.integers(0, 8, size=(256, 4, 4, 3)) / 7.0
    x = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2).astype("float32")
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, _integer_paths_model(inputs))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            before = keras.Model(model.input, layer.input)(x)
            layer.moving_mean.assign(np.mean(before, axis=(0, 1, 2)))
            layer.moving_variance.assign(np.var(before, axis=(0, 1, 2)))
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.3, layer.beta.shape))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.zeros(layer.bias.shape))
            before = keras.ops.convert_to_numpy(keras.Model(model.input, layer.output)(x))
            layer.bias.assign(-np.mean(before, axis=(0, 1, 2)) + rng.normal(0, 0.1, layer.bias.shape))
    qat = quantization.quantize_model(model)
    for k in range(0, len(x), 64):
        qat(x[k:k + 64], training=True)
    folder = tmp_path_factory.mktemp("reference")
    qat.save(folder / "m.keras")
    np.save(folder / "x.npy", x)
    np.save(folder / "tensorflow.npy", qat.predict(x, verbose=0))
    return folder


@pytest.fixture(scope="module", params=BACKENDS)
def results(request, reference):
    """Every script's results on one backend, from one process."""
    backend = request.param
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               TFMOT_LITE_REFERENCE=str(reference))
    fast = FAST_CODEGEN.get(backend)
    runs = ([(TRAINING_SCRIPTS, dict(env, **fast)), (EXACT_SCRIPTS, env)] if fast
            else [(TRAINING_SCRIPTS + EXACT_SCRIPTS, env)])
    by_script = {}
    for scripts, script_env in runs:
        done = subprocess.run(
            [sys.executable, str(HERE / "run_scripts.py"), *scripts], env=script_env,
            capture_output=True, text=True, timeout=1200,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        by_script.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return backend, by_script


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


def test_integer_paths_compute_what_tensorflow_computes(results):
    """A QAT model saved on TensorFlow predicts the same outputs, to the
    bit, on the other backends, under JAX's `jit` too: XLA had rewritten
    the range step's exact arithmetic (`integer_grid._as_written`), and a
    nested model ending the graph is linked on its first call there as on
    TensorFlow (`input_range.link_models_in_call`)."""
    result = script_result(results, "integer_paths_script.py")
    assert result["predict_differ"] == 0, result
    assert result["call_differ"] == 0, result
    assert not any(result["range_step_misses"].values()), result
    assert not any(result["quotient_misses"].values()), result
    assert result["bias_misses"] == 0, result
    assert result["range_bias_misses"] == 0, result
    assert result["constant_misses"] == 0, result


def test_compiled_functions_compute_what_they_compute_as_written(results):
    """`fast.compiled`: the same values with a variable and a static setting
    among the arguments; on JAX an eager call compiles one program where
    the function as written compiles one per op, none when called again,
    and it differentiates under `jit`."""
    backend, _ = results
    result = script_result(results, "compiled_script.py")
    assert result["variable_differ"] == result["static_differ"] == 0, result
    assert result["device_sum_differ"] == 0, result
    if backend == "jax":
        assert result["first_call_programs"] == 1, result
        assert result["second_call_programs"] == 0, result
        assert result["as_written_programs"] > 1, result
        assert result["gradient_finite"], result


def test_double_arithmetic_on_backend(results):
    """The converter's steps, biases and multipliers as numpy's double
    arithmetic computes them: on PyTorch Keras' `floor` had rounded the
    31-bit multipliers to float32 (`integer_grid.floor_wide`); JAX without
    x64 computes the step and bias in exact float32 and has no float64
    multipliers."""
    result = script_result(results, "wide_float_script.py")
    x64 = result["widest_float"] == "float64"
    assert x64 == (result["backend"] != "jax"), result
    assert result["step_misses"] == 0 and result["bias_misses"] == 0, result
    assert result["multiplier_misses"] == (0 if x64 else None), result


def test_double_arithmetic_under_jax_with_x64():
    """With x64 on, JAX computes the converter's steps, biases and
    multipliers in double as TensorFlow does: Keras' `floor` and its result
    type of float64 and float32 had rounded them to float32 there
    (`integer_grid.floor_wide`, `exact_quotient`)."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(HERE / "wide_float_script.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"backend": "jax", "widest_float": "float64", "step_misses": 0,
                      "bias_misses": 0, "multiplier_misses": 0}
