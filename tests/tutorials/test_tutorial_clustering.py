"""The weight clustering tutorial runs end to end on its short setting."""

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


def test_tutorial_quick_run(tmp_path, capsys):
    tutorial = load_tutorial("weight_clustering")

    results = tutorial.main(["--quick", "--clusters", "8", "--output-dir", str(tmp_path)])

    table = capsys.readouterr().out
    for label in ("float", "clustered (8)", "clustered (8) distilled", "ratio", "gzipped bytes"):
        assert label in table
    assert (tmp_path / "float.tflite").stat().st_size == results["float_bytes"]
    assert (tmp_path / "clustered.tflite").stat().st_size == results["clustered_bytes"]
    assert results["max_unique_values"] <= 8
    assert results["strip_is_exact"]
    assert results["clustered_gzipped"] < results["float_gzipped"]
    assert (tmp_path / "clustered_distilled.tflite").stat().st_size == results["distilled_bytes"]
    assert results["distilled_gzipped"] < results["float_gzipped"]
