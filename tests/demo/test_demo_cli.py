"""The demo, run as a user runs it (`tfmot-lite demo --quick` in a
subprocess), and its CIFAR-10 path under `tfds.testing.mock_data`."""

import json
import os
import subprocess
import sys

import pytest

from tfmot_lite import demo, export

pytestmark = pytest.mark.slow


def test_quick_demo_writes_models_reports_and_plot(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "tfmot_lite.cli", "demo", "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=900, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # No TensorFlow log noise.
    stdout = result.stdout
    assert "float epoch 1/2" in stdout  # Progress while it trains.
    reports = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in reports]
    assert names == [v.name for v in demo.QUICK_VARIANTS]
    assert "QAT int8 distilled" in names
    for report in reports:
        path = out / (demo.slug(report["name"]) + ".tflite")
        assert report["path"] == str(path)
        data = path.read_bytes()
        assert report["bytes"] == len(data)
        # The table's numbers, from an independent reading of the file.
        stats = export.weight_stats(data)
        kernels = [s for s in stats if s.op_type in export.weights.KERNEL_OPS]
        zeros = sum(s.size * s.zero_fraction for s in kernels) / sum(s.size for s in kernels)
        assert report["sparsity"] == pytest.approx(zeros)
        assert f"{report['bytes']:,}" in stdout
    by_name = {r["name"]: r for r in reports}
    assert by_name["pruned 75%"]["sparse_ready"] and by_name["pruned 75%"]["sparse_storage"]
    assert not by_name["float"]["sparse_ready"]
    assert by_name["clustered 16"]["max_unique_per_channel"] <= 16
    assert by_name["clustered 16 int8"]["max_unique_per_channel"] <= 16
    assert by_name["QAT int8"]["int8_fraction"] > 0.8
    for name in ("float", "pruned 75%", "QAT int8", "clustered 16"):
        assert by_name[name]["agreement"] >= 0.97
    markdown = (out / "report.md").read_text()
    assert "| pruned 75% | float32 |" in markdown
    assert (out / "report.txt").read_text().splitlines()[1].startswith("variant")
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_cifar10_path_with_mocked_tfds(tmp_path, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=64):
        splits = demo.load_splits("cifar10", batch_size=16)
        assert splits.x_test.shape == (64, 32, 32, 3)
        assert splits.x_calibrate.shape[1:] == (32, 32, 3)
        assert splits.steps_per_epoch == 4
        variants = [v for v in demo.VARIANTS if v.name in ("float", "pruned 75%")]
        result = demo.run("cifar10", str(tmp_path), quick=True, variants=variants,
                          latency_runs=3)
    assert [r.name for r in result["reports"]] == ["float", "pruned 75%"]
    assert "CIFAR-10" in result["title"]
    assert (tmp_path / "pruned_75.tflite").exists()


def test_bad_demo_arguments_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfmot_lite.demo", "--dataset", "mnist"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--dataset" in result.stderr


def test_pruning_learning_rate_holds_while_masks_change_then_decays_to_zero():
    """The pruning fine-tune's rate: the float model's initial rate until the
    masks stop changing, then a cosine down to 0 at the last step."""
    splits = demo.Splits("digits", (), {}, None, None, None, None, steps_per_epoch=10)
    ctx = demo.Context(splits, dict(demo.FULL_EPOCHS))
    total = demo.FULL_EPOCHS["prune"] * 10
    rate = demo.pruning_learning_rate(ctx, end_step=30, initial=3e-3)
    values = [float(rate(step)) for step in range(total + 1)]
    assert values[:31] == pytest.approx([3e-3] * 31)
    assert all(a > b for a, b in zip(values[30:], values[31:]))
    assert values[45] == pytest.approx(1.5e-3)
    assert values[total] == pytest.approx(0.0, abs=1e-9)
