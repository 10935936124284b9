"""Data-parallel training equals one device on the same global batches.

Two replicas on one host: `tf.distribute.MirroredStrategy` over two logical
CPUs (TensorFlow) and `keras.distribution.DataParallel` over two forced host
devices (JAX). Each backend runs all three techniques in one subprocess
(devices are fixed when the framework starts) and reports, per technique,
the largest difference between replicas' copies of any variable and between
the distributed and the single-device run.
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
TECHNIQUES = ("prune", "qat", "cluster")


def run(script, backend, **env):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **env)
    done = subprocess.run(
        [sys.executable, str(HERE / script)], env=env, capture_output=True, text=True,
        timeout=600, cwd=HERE,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(result):
    assert result["replicas"] == 2
    for name in TECHNIQUES:
        r = result[name]
        assert r["same_layout"] and r["same_names"] and r["finite"], r
        # Every replica holds the same value of every variable ...
        assert r["replica_gap"] <= 1e-6, (name, r)
        # ... and the run is the single-device run up to float rounding.
        assert r["single_gap"] <= 1e-5, (name, r)
        # Training did what each technique does, identically.
        assert r["facts"].keys() == r["single_facts"].keys()
        for key, value in r["facts"].items():
            assert value == pytest.approx(r["single_facts"][key], abs=1e-5), key
    prune, cluster = result["prune"]["facts"], result["cluster"]["facts"]
    assert [v for k, v in prune.items() if k.endswith("/sparsity")] == [0.75] * 3
    # tfmot's clock: the step after N training steps is N.
    assert [v for k, v in prune.items() if k.endswith("/step")] == [6] * 3
    assert list(cluster.values()) == [4, 4, 4]
    assert any(k.endswith("output_max") for k in result["qat"]["facts"])


def test_mirrored_strategy_matches_one_device():
    check(run("tf_mirrored_script.py", "tensorflow"))


def test_jax_data_parallel_matches_one_device():
    result = run(
        "jax_data_parallel_script.py", "jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert all(result[name]["devices_per_variable"] == 2 for name in TECHNIQUES)
    check(result)
