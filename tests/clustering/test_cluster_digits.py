"""The issue's proof on the bundled digits CNN, run through the tutorial."""

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_tutorial("weight_clustering").run(output_dir=str(tmp_path_factory.mktemp("clustering")))


def test_sixteen_clusters_keep_at_most_sixteen_values_per_kernel(results):
    assert results["number_of_clusters"] == 16
    assert results["max_unique_values"] <= 16
    assert results["strip_is_exact"]


def test_accuracy_within_one_point_of_the_float_model(results):
    assert results["float_accuracy"] > 0.9  # a trained baseline, not chance
    assert results["clustered_accuracy"] >= results["float_accuracy"] - 0.01
    # The exported model runs in LiteRT with the same accuracy.
    assert abs(results["clustered_tflite_accuracy"] - results["clustered_accuracy"]) <= 0.01


def test_gzipped_tflite_is_several_times_smaller(results):
    # Same float graph: the raw flatbuffer does not shrink ...
    assert abs(results["clustered_bytes"] - results["float_bytes"]) < 0.01 * results["float_bytes"]
    # ... but its repeated values compress.
    assert results["float_gzipped"] / results["clustered_gzipped"] >= 3.0
