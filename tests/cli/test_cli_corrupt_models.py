"""A damaged .keras file given to `tfmot-lite check|export` is one error
line naming the file and saying it is not a readable Keras model: a
truncated file, random bytes, an empty file, a zip without config.json, a
zip with a damaged member or weights file. No traceback, no log noise.
"""

import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.save(root / "good.keras")
    return root


def write_variants(root):
    """{file name: bytes or builder} of damaged models made from good.keras."""
    good = (root / "good.keras").read_bytes()
    (root / "truncated.keras").write_bytes(good[: len(good) // 2])
    (root / "head.keras").write_bytes(good[:64])
    (root / "random.keras").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "empty.keras").write_bytes(b"")
    (root / "random.h5").write_bytes(np.random.default_rng(1).bytes(4096))
    with zipfile.ZipFile(root / "good.keras") as source:
        members = {name: source.read(name) for name in source.namelist()}
    with zipfile.ZipFile(root / "no_config.keras", "w") as z:
        for name, data in members.items():
            if name != "config.json":
                z.writestr(name, data)
    with zipfile.ZipFile(root / "bad_config.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, b"{not json" if name == "config.json" else data)
    with zipfile.ZipFile(root / "truncated_weights.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data[:300] if name.endswith(".h5") else data)
    # Flip bytes inside a compressed member: the zip's CRC check fails on read.
    with zipfile.ZipFile(root / "crc.keras", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    damaged = bytearray((root / "crc.keras").read_bytes())
    middle = len(damaged) // 3
    damaged[middle:middle + 16] = bytes(16)
    (root / "crc.keras").write_bytes(bytes(damaged))


CASES = [
    ("truncated.keras", "not a zip archive"),
    ("head.keras", "not a zip archive"),
    ("random.keras", "not a zip archive"),
    ("empty.keras", "empty"),
    ("no_config.keras", "no config.json"),
    ("bad_config.keras", "could not be loaded"),
    ("truncated_weights.keras", "could not be loaded"),
    ("crc.keras", ""),
    ("random.h5", "could not be loaded"),
]


@pytest.fixture(scope="module")
def damaged(saved):
    write_variants(saved)
    return saved


@pytest.mark.parametrize("command", ["check", "export"])
@pytest.mark.parametrize("name, reason", CASES)
def test_damaged_model_is_one_clean_line(damaged, command, name, reason, capsys):
    from tfmot_lite import cli

    with pytest.raises(SystemExit) as exited:
        cli.main([command, str(damaged / name)])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"tfmot-lite: error: '{damaged / name}' is not a readable "
                               "Keras model"), lines[0]
    assert reason in lines[0]
    assert not (damaged / (os.path.splitext(name)[0] + ".tflite")).exists()


@pytest.mark.slow  # a fresh interpreter imports TensorFlow (~30 s here)
def test_truncated_model_from_the_command_line(damaged):
    env = dict(os.environ)
    env.pop("TFMOT_LITE_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "tfmot_lite.cli", "export", str(damaged / "truncated.keras")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"tfmot-lite: error: '{damaged / 'truncated.keras'}' is not a readable Keras "
        "model: not a zip archive (truncated or corrupted?); save it again with "
        "`model.save('model.keras')`."
    ]


def test_the_intact_model_still_loads(saved):
    from tfmot_lite import cli

    model = cli.load_keras_model(saved / "good.keras")
    assert model.output_shape == (None, 3)
