"""tutorials/post_training_quantization.py on its short setting."""

import pytest
from tutorial_modules import load_tutorial

from tfmot_lite import export

pytestmark = pytest.mark.slow


def test_quick_run_prints_the_table_with_every_mode(capsys):
    result = load_tutorial("post_training_quantization").main(["--quick", "--verbose", "0"])
    out = capsys.readouterr().out
    table = out[out.index("mode"):]
    for mode in export.MODES:
        assert mode in table
    rows = {r["mode"]: r for r in result["rows"]}
    for mode, row in rows.items():
        flatbuffer = result["tflite"][mode]
        assert row["bytes"] == len(flatbuffer)
        assert row["gzip_bytes"] < row["bytes"]
        assert row["latency_us"] > 0
    # int8 weights take about a quarter of float32's bytes, float16 half.
    assert rows["int8"]["bytes"] < rows["float32"]["bytes"] / 2.5
    assert rows["float16"]["bytes"] < rows["float32"]["bytes"] * 0.6
