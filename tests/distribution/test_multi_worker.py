"""Multi-worker training equals one device on the same global batches.

Two local worker processes, talking over loopback ports, train pruning, QAT
and clustering (`techniques.py`) on global batches of 8 split between them:

* `tf.distribute.MultiWorkerMirroredStrategy` (TF_CONFIG), with a custom
  training loop (Keras 3's `fit` does not run under it, keras#20585);
* Keras' `DataParallel` on JAX over two processes (`jax.distributed`,
  gloo collectives on CPU), with `fit`.

Process 0 also trains each technique on one device. The test compares
every variable: between the workers (they must hold the same value) and
against the single run (float rounding); the largest differences are
printed (`-s`).
"""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
TECHNIQUES = ("prune", "qat", "cluster")


def free_ports(count):
    """Ports the OS reports free on loopback (closed again before use)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(script, command, count=2):
    """Runs `count` processes of `script` at once; `command(index)` gives
    each one's `(arguments, environment variables)`. Returns their
    `(returncode, stdout, stderr)`."""
    workers = []
    for index in range(count):
        args, env = command(index)
        workers.append(subprocess.Popen(
            [sys.executable, str(HERE / script), *args], cwd=HERE,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    results = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=900)
            results.append((worker.returncode, stdout, stderr))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return results


def load(path):
    """`[(variable path, value)]` in the saved (model.variables) order."""
    with np.load(path) as values:
        return [(key.split("|", 1)[1], values[key]) for key in sorted(values.files)]


def largest_difference(a, b):
    """Largest |a - b| over every variable, matched by position."""
    assert [v.shape for _, v in a] == [v.shape for _, v in b]
    return max(float(np.abs(u - v).max(initial=0)) for (_, u), (_, v) in zip(a, b))


def compare(out, label):
    """Worker-vs-worker and worker-vs-one-device gaps per technique."""
    report = {}
    for name in TECHNIQUES:
        workers = [load(out / f"worker{i}_{name}.npz") for i in range(2)]
        single = load(out / f"single_{name}.npz")
        report[name] = {
            "worker_gap": largest_difference(workers[0], workers[1]),
            "single_gap": largest_difference(workers[0], single),
        }
        assert all(np.isfinite(v).all() for _, v in workers[0])
    print(f"\n{label}, 2 workers vs 1 device:", json.dumps(report))
    for name, gaps in report.items():
        assert gaps["worker_gap"] <= 1e-6, (name, gaps)  # the workers agree ...
        assert gaps["single_gap"] <= 1e-5, (name, gaps)  # ... with one device
    # Training did what each technique does: pruned to the schedule's 75%.
    masks = [v for k, v in load(out / "worker1_prune.npz") if k.endswith("kernel_mask")]
    assert len(masks) == 3
    assert all(float(1 - m.mean()) == pytest.approx(0.75, abs=0.02) for m in masks)
    return report


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_matches_one_device(tmp_path):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}

    def command(index):
        return [str(tmp_path)], dict(
            KERAS_BACKEND="tensorflow",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                               "index": index}}),
        )

    for rc, stdout, stderr in start_workers("tf_multi_worker_script.py", command):
        assert rc == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1])["replicas"] == 2
    compare(tmp_path, "MultiWorkerMirroredStrategy")


@pytest.mark.slow
def test_jax_data_parallel_over_two_processes_matches_one_device(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    (port,) = free_ports(1)

    def command(index):
        return [str(tmp_path), str(index), str(port)], dict(KERAS_BACKEND="jax")

    for rc, stdout, stderr in start_workers("jax_multi_process_script.py", command):
        assert rc == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1])["devices"] == 2
    compare(tmp_path, "JAX DataParallel over 2 processes")
