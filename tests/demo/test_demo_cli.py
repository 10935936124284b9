import pytest

from tfmot_lite import cli, demo


def test_demo_quick_prunes_exports_and_prints_a_table(capsys):
    assert cli.main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "Keras acc" in out and "LiteRT acc" in out and "pruned 75%" in out
    assert "max |pruned - stripped| prediction difference = 0.00e+00" in out


def test_demo_rows_are_consistent():
    rows, max_diff = demo.run(epochs=1, prune_epochs=2)
    dense, pruned = rows
    assert dense["sparsity"] == 0.0
    assert pruned["sparsity"] == pytest.approx(0.75, abs=0.005)
    assert pruned["gzip_bytes"] < dense["gzip_bytes"]
    for row in rows:  # LiteRT runs the exported graph as Keras does
        assert abs(row["tflite_acc"] - row["keras_acc"]) <= 0.01
    assert max_diff <= 1e-6
