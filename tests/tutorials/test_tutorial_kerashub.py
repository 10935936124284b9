"""The KerasHub tutorial (pruning and clustering a ViTBackbone model) runs
end to end on its short setting. The tutorial runs once for the module;
each test checks one of its claims."""

import contextlib
import io

import numpy as np
import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow
keras_hub = pytest.importorskip("keras_hub")

from tfmot_lite.core import graph  # noqa: E402

BACKBONE = "vi_t_backbone"
INNER = f"{BACKBONE}/vit_encoder/encoder_layers"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("kerashub_optimization")
    tutorial = load_tutorial("kerashub_optimization")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = tutorial.main(["--quick", "--output-dir", str(output_dir)])
    return results, printed.getvalue(), output_dir


def test_table_and_files(quick_run):
    results, table, output_dir = quick_run
    for label in (
        "float", "pruned (50%)", "clustered (16)", "Keras accuracy", ".tflite accuracy",
        "agreement", ".tflite bytes", "gzipped bytes", "weight zeros",
        "max unique/channel", "latency us", "ViTBackbone", f"{INNER}/0/mha",
    ):
        assert label in table
    reports = results["reports"]
    assert set(reports) == {"float", "pruned", "clustered"}
    for name, report in reports.items():
        path = output_dir / f"{name}.tflite"
        assert report.path == str(path)
        assert path.stat().st_size == report.bytes
        assert f"{report.bytes:,}" in table and f"{report.gzip_bytes:,}" in table
        assert report.examples == 359
        assert report.latency_us > 0
        # The .tflite predicts what the Keras model predicts.
        assert report.agreement >= 0.99
        assert abs(report.accuracy - report.keras_accuracy) <= 0.01
    assert reports["float"].keras_accuracy > 0.3  # it trained (10 classes)
    keras_file = output_dir / "pruned.keras"
    assert keras_file.stat().st_size == results["pruned_keras_bytes"]


def test_pruning_reaches_the_encoder_blocks_and_strips_to_kerashub(quick_run):
    results, _, _ = quick_run
    for path in (f"{INNER}/0/mha", f"{INNER}/0/mlp/dense_1", f"{INNER}/1/mha",
                 f"{INNER}/1/mlp/dense_2"):
        assert path in results["pruned_paths"]
        assert path in results["clustered_paths"]
    for key in ("stripped_pruned", "stripped_clustered"):
        backbone = results[key].get_layer(BACKBONE)
        assert type(backbone) is keras_hub.models.ViTBackbone
        kinds = {type(layer).__name__ for _, layer in graph.iter_layers(results[key])}
        assert not {"SublayerHost", "PruneLowMagnitude", "ClusterWeights"} & kinds
    assert set(results["models"].values()) == {
        "keras_hub.src.models.vit.vit_backbone.ViTBackbone"}
    # The zeros sit in the KerasHub layers' own kernels after stripping.
    layers = dict(graph.iter_layers(results["stripped_pruned"]))
    kernel = np.asarray(layers[f"{INNER}/1/mlp/dense_2"].kernel)
    assert abs((kernel == 0).mean() - 0.5) < 0.01


def test_pruned_export_is_sparse_and_smaller(quick_run):
    reports = quick_run[0]["reports"]
    # `sparsity` counts the kernels of FULLY_CONNECTED/CONV_2D operators
    # (biases and LayerNormalization are not pruned, and not counted).
    assert reports["pruned"].sparsity >= 0.4
    assert reports["float"].sparsity < 0.01
    assert reports["pruned"].sparse_storage
    assert reports["pruned"].bytes < reports["float"].bytes
    assert reports["pruned"].gzip_bytes < reports["float"].gzip_bytes


def test_clustered_export_repeats_few_values(quick_run):
    reports = quick_run[0]["reports"]
    assert reports["clustered"].max_unique_per_channel <= 16
    assert reports["float"].max_unique_per_channel > 16
    assert reports["clustered"].gzip_bytes < reports["float"].gzip_bytes


def test_pruned_keras_file_reloads_with_equal_predictions(quick_run):
    results = quick_run[0]
    assert results["reload_equal"]
    assert results["reload_max_difference"] == 0.0


def test_clustering_keeps_accuracy(quick_run):
    reports = quick_run[0]["reports"]
    assert reports["clustered"].keras_accuracy >= 0.8 * reports["float"].keras_accuracy
