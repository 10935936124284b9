"""Files are written whole or not at all (`tfmot_lite/atomic_file.py`).

A failure while writing (an exception from the writer, a full disk) leaves
no target and no temporary file behind, and an existing target unchanged;
every writer of the library (.tflite, JSON, Markdown, PNG, the demo's
report.txt) goes through the helper.
"""

import errno
import os
import re
import stat

import keras
import numpy as np
import pytest

from tfmot_lite import atomic_file, export
from tfmot_lite.export import report as report_module


def listing(directory):
    return sorted(os.listdir(directory))


def test_writes_bytes_and_text(tmp_path):
    target = tmp_path / "a.bin"
    assert atomic_file.write_bytes_atomic(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    atomic_file.write_text_atomic(tmp_path / "b.txt", "héllo\n")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert listing(tmp_path) == ["a.bin", "b.txt"]


def test_failure_mid_write_leaves_no_target_and_no_temporary(tmp_path):
    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file.atomic_write(target) as f:
            f.write(b"half a model")
            raise RuntimeError("boom")
    assert listing(tmp_path) == []


def test_failure_keeps_the_existing_target(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file.atomic_write(target, "w", encoding="utf-8") as f:
            f.write("new, partial")
            raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old"
    assert listing(tmp_path) == ["report.json"]


def test_full_disk_leaves_nothing(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_file.os, "fsync", no_space)
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous")
    with pytest.raises(OSError, match="No space"):
        atomic_file.write_bytes_atomic(target, b"x" * 1000)
    assert target.read_bytes() == b"previous"
    assert listing(tmp_path) == ["m.tflite"]


def test_replacing_keeps_permissions_and_new_files_follow_the_umask(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("1")
    os.chmod(old, 0o640)
    atomic_file.write_text_atomic(old, "2")
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o640
    umask = os.umask(0o022)
    try:
        atomic_file.write_text_atomic(tmp_path / "new.txt", "3")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o644


def test_a_directory_target_fails_cleanly(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError):
        atomic_file.write_bytes_atomic(tmp_path / "out", b"x")
    assert listing(tmp_path) == ["out"]
    assert listing(tmp_path / "out") == []


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(inputs))


def test_tflite_export_failing_mid_write_keeps_the_old_file(small_model, tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    export.to_tflite(small_model, path=target)
    good = target.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_file.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        export.export_model(small_model, "float32", path=target, latency_runs=1)
    assert target.read_bytes() == good
    assert listing(tmp_path) == ["model.tflite"]


def test_every_report_writer_is_atomic(small_model, tmp_path, monkeypatch):
    report = export.export_model(small_model, "float32", latency_runs=1, name="m")
    for name in ("r.json", "r.md", "r.png"):
        (tmp_path / name).write_text("old")

    def broken_json(*args, **kwargs):
        raise TypeError("cannot serialize")

    monkeypatch.setattr(report_module.json, "dump", broken_json)
    monkeypatch.setattr(report_module, "to_markdown", broken_json)
    with pytest.raises(TypeError):
        export.save_json([report], tmp_path / "r.json")
    with pytest.raises(TypeError):
        export.save_markdown([report], tmp_path / "r.md")
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_json)
    with pytest.raises(TypeError):
        export.plot_reports([report], tmp_path / "r.png")
    assert listing(tmp_path) == ["r.json", "r.md", "r.png"]
    assert all((tmp_path / n).read_text() == "old" for n in ("r.json", "r.md", "r.png"))
    monkeypatch.undo()
    export.plot_reports([report], tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(report.bytes)


def test_no_library_module_writes_files_itself():
    """Every writer goes through atomic_file (a grep of the package for
    `open(..., 'w')`-style modes, `savefig` to a path, `np.save`,
    `Path.write_bytes/text`)."""
    import tfmot_lite

    writers = re.compile(
        r"""\bopen\([^)]*["'][rwax+bt]*[wax][rwax+bt]*["']"""
        r"|\.savefig\((?!f\b)|\bnp\.save[z]?\(|\.write_(?:bytes|text)\(|\.to_file\(")
    root = os.path.dirname(tfmot_lite.__file__)
    offenders = []
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".py") or name == "atomic_file.py":
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if writers.search(line):
                        offenders.append(f"{os.path.relpath(path, root)}:{number}: {line.strip()}")
    assert offenders == []
