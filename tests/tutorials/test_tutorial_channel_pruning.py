"""The channel pruning tutorial runs end to end on its short setting."""

import pytest
from tutorial_modules import load_tutorial

pytestmark = pytest.mark.slow


def test_tutorial_quick_run(tmp_path, capsys):
    tutorial = load_tutorial("channel_pruning")

    results = tutorial.main(["--quick", "--output-dir", str(tmp_path)])

    table = capsys.readouterr().out
    for label in ("dense float", "shrunk float", "shrunk + QAT int8", "parameters", "MACs",
                  "shrunk float distilled", "shrunk + QAT int8 distilled"):
        assert label in table
    rows = {r["model"]: r for r in results["rows"]}
    assert (tmp_path / "shrunk.tflite").stat().st_size == rows["shrunk float"]["bytes"]
    assert ((tmp_path / "shrunk_qat_int8_distilled.tflite").stat().st_size
            == rows["shrunk + QAT int8 distilled"]["bytes"])
    for distilled in ("", " distilled"):
        assert rows["shrunk float" + distilled]["bytes"] < 0.6 * rows["dense float"]["bytes"]
        assert (rows["shrunk + QAT int8" + distilled]["bytes"]
                < rows["shrunk float" + distilled]["bytes"])
    assert results["shrink_max_abs_diff"] <= 1e-4
    summary = results["summary"]
    assert summary.params_after < 0.5 * summary.params_before
    # A smoke run trains briefly: the models must still beat chance by far.
    assert all(r["accuracy"] > 0.5 for r in rows.values())
