"""tutorials/pruning_for_xnnpack.py on a short setting, and its CIFAR-10 path."""

import pathlib
import re

import numpy as np
import pytest
from tutorial_modules import load_tutorial

from tfmot_lite import data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tutorial():
    return load_tutorial("pruning_for_xnnpack")


def test_quick_run_reproduces_the_guide(tutorial, tmp_path, capsys):
    result = tutorial.main([
        "--quick", "--verbose", "0",
        "--log-dir", str(tmp_path / "logs"),
        "--out-dir", str(tmp_path / "out"),
    ])
    out = capsys.readouterr().out
    # Step 2: the policy refuses the guide's model and names the layer.
    assert re.search(
        r"layer 'global_average_pooling2d(_\d+)?': "
        r"GlobalAveragePooling2D needs keepdims=True",
        result["policy_error"],
    )
    # Step 3: only the two 1x1 convolutions are pruned.
    assert len(result["pruned_layers"]) == 2
    # Step 4: PruningSummaries wrote TensorBoard events.
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    # Steps 5-6: the files written; the pruned ones (plain and distilled) are
    # sparse and ready.
    dense, pruned, distilled = result["rows"]
    for path in result["paths"]:
        assert pathlib.Path(path).stat().st_size > 0
    assert not dense["sparse_ready"]
    for row in (pruned, distilled):
        assert row["sparse_ready"]
        assert len(row["report"].sparse_operators) == 2
        assert all(
            op.zero_fraction == pytest.approx(0.75, abs=0.01)
            for op in row["report"].sparse_operators
        )
        assert row["gzipped"] < dense["gzipped"]
    # The exported models compute what the Keras models do.
    assert pruned["accuracy"] == pytest.approx(result["pruned_accuracy"], abs=0.01)
    assert distilled["accuracy"] == pytest.approx(result["distilled_accuracy"], abs=0.01)
    assert "| model " in out and "XNNPACK sparse-ready" in out
    assert result["table"] in out
    assert "sparse kernels engage on ARM" in out or "decided at run time" in out


def test_cifar10_path_with_mocked_tfds(tutorial):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        (train, val, test), _ = data.cifar10(batch_size=8)
        x, y = next(iter(train))
        assert tuple(x.shape) == (8, 32, 32, 3) and str(x.dtype) == "<dtype: 'float32'>"
        assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
        assert tuple(y.shape) == (8,)
        assert len(val) == 3 and len(test) == 3

        splits = tutorial.load_splits("cifar10", batch_size=8)
        assert splits.steps_per_epoch == 3
        assert splits.x_test.shape == (24, 32, 32, 3)
        assert set(np.unique(splits.y_test)) <= set(range(10))
        model = tutorial.build_model(keepdims=True)
        tutorial.compile_model(model)
        tutorial.fit(model, splits, epochs=1, verbose=0)


def test_prune_epochs_must_leave_room_for_the_final_sparsity(tutorial):
    with pytest.raises(SystemExit):
        tutorial.parse_args(["--prune-epochs", "1"])
