"""The `tfmot-lite` command line, driven as a user drives it: a subprocess.

Every error case prints exactly one line on stderr (no traceback, no
TensorFlow log noise) and exits non-zero. A subprocess imports TensorFlow
afresh (seconds), so those tests are `slow`; the same code paths also run
in process, in the fast tier.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfmot_lite import export
from tfmot_lite.example_models import build_xnnpack_cnn

L = keras.layers


def run_cli(*args, cwd=None):
    env = dict(os.environ)
    env.pop("TFMOT_LITE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "tfmot_lite.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A .keras model that fits XNNPACK, one that does not, inputs, a .tflite."""
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    good = build_xnnpack_cnn()
    good.save(root / "good.keras")
    bad = keras.Sequential([
        keras.Input((32, 32, 3)), L.Conv2D(8, 3, strides=2, padding="same"),
        L.Conv2D(16, 1, name="pointwise"), L.GlobalAveragePooling2D(name="mean"),
        L.Dense(10)])
    bad.save(root / "bad.keras")
    x = np.random.default_rng(0).random((40, 32, 32, 3)).astype("float32")
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.arange(40) % 10)
    export.to_tflite(good, path=str(root / "good.tflite"))
    (root / "empty.tflite").write_bytes(b"")
    (root / "notes.tflite").write_text("not a model")
    data = (root / "good.tflite").read_bytes()
    (root / "truncated.tflite").write_bytes(data[:200])
    (root / "notes.keras").write_text("not a model")
    return root


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfmot-lite: error:")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_export_int8_writes_the_file_and_prints_the_report(files):
    out = files / "out.tflite"
    result = run_cli("export", files / "good.keras", "--mode", "int8",
                     "--representative-data", files / "x.npy", "-o", out,
                     "--data", files / "x.npy", "--labels", files / "y.npy",
                     "--json", files / "out.json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # No TensorFlow or converter log noise.
    assert out.exists() and f"wrote {out}" in result.stdout
    names = [s.dtype for s in export.weight_stats(str(out))]
    assert names and set(names) == {"int8"}
    report = export.load_json(files / "out.json")[0]
    assert report.bytes == out.stat().st_size and report.mode == "int8"
    assert f"{report.bytes:,}" in result.stdout and "agreement" in result.stdout


@pytest.mark.slow
def test_inspect_and_bench(files):
    result = run_cli("inspect", files / "good.tflite")
    assert result.returncode == 0 and result.stderr == ""
    assert "CONV_2D" in result.stdout and "MEAN" in result.stdout
    assert "weights:" in result.stdout and "max/ch" in result.stdout


def test_inspect_and_bench_in_process(files, capsys):
    from tfmot_lite import cli

    assert cli.main(["inspect", str(files / "good.tflite")]) == 0
    out = capsys.readouterr().out
    assert "CONV_2D" in out and "MEAN" in out and "max/ch" in out
    assert "XNNPACK runs " in out and " operators (" in out
    assert cli.main(["bench", str(files / "good.tflite"), "--threads", "2", "--runs", "5"]) == 0
    assert "us median over 5 runs, 2 thread(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_check_exit_status(files):
    result = run_cli("check", files / "bad.keras", "--policy", "xnnpack")
    assert result.returncode == 1 and "mean" in result.stdout
    assert result.stderr == ""


def test_check_exit_status_and_alias_in_process(files, capsys):
    from tfmot_lite import cli

    assert cli.main(["check", str(files / "bad.keras"), "--policy", "xnnpack"]) == 1
    assert "mean" in capsys.readouterr().out
    assert cli.main(["check", str(files / "good.keras")]) == 0
    assert cli.main(["xnnpack-check", str(files / "good.keras")]) == 0
    assert cli.main(["xnnpack-check", str(files / "bad.keras")]) == 1


ERRORS = [
    (("inspect", "{root}/missing.tflite"), ("missing.tflite", "no such file")),
    (("inspect", "{root}/empty.tflite"), ("empty.tflite", "empty")),
    (("inspect", "{root}/notes.tflite"), ("notes.tflite", "not a .tflite model")),
    (("inspect", "{root}/good.keras"), ("good.keras", "zip archive")),
    (("inspect", "{root}/truncated.tflite"), ("truncated.tflite",)),
    (("bench", "{root}/empty.tflite"), ("empty.tflite", "empty")),
    (("export", "{root}/missing.keras"), ("missing.keras", "no such file")),
    (("export", "{root}/notes.keras"), ("notes.keras", "not a readable Keras model")),
    (("export", "{root}/good.tflite"), ("good.tflite", "not a Keras model file")),
    (("export", "{root}/good.keras", "--mode", "int4"), ("--mode", "int4")),
    (("export", "{root}/good.keras", "--mode", "int8"), ("--representative-data",)),
    (("export", "{root}/good.keras", "--mode", "int8", "--representative-data",
      "{root}/good.tflite"), ("--representative-data", "good.tflite")),
    (("check", "{root}/missing.keras"), ("missing.keras",)),
    (("check", "{root}/good.keras", "--policy", "arm"), ("--policy",)),
    (("frobnicate",), ("frobnicate",)),
    (("export",), ("MODEL.keras",)),
]


@pytest.mark.parametrize("args, fragments", ERRORS)
def test_every_error_is_one_clean_line(files, args, fragments, capsys):
    """In process (fast): the same code path the executable runs."""
    from tfmot_lite import cli

    with pytest.raises(SystemExit) as exited:
        cli.main([a.format(root=files) for a in args])
    status = exited.value.code
    captured = capsys.readouterr()
    assert status != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tfmot-lite: error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", [0, 7])
def test_errors_from_the_executable_are_one_line(files, case):
    """Two of them through a real process (`inspect` of a missing file;
    `export` of a file Keras cannot load): no traceback, no TF log noise."""
    args, fragments = ERRORS[case]
    assert_one_line_error(run_cli(*(a.format(root=files) for a in args)), *fragments)


def test_python_api_errors_name_the_argument(files):
    with pytest.raises(ValueError, match="empty"):
        export.inspect_tflite(b"")
    with pytest.raises(ValueError, match="None"):
        export.inspect_tflite(None)
    with pytest.raises(ValueError, match="notes.tflite"):
        export.inspect_tflite(str(files / "notes.tflite"))
    with pytest.raises(ValueError, match="model.keras"):
        export.to_tflite("model.keras")
    with pytest.raises(ValueError, match="empty"):
        export.TFLiteModel(b"")
