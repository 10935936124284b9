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


def guide_model(keepdims):
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        L.ZeroPadding2D(1), L.Conv2D(8, 3, strides=2, padding="valid"), L.ReLU(),
        L.Conv2D(16, 1, name="pointwise"), L.ReLU(),
        L.GlobalAveragePooling2D(keepdims=keepdims, name="mean"),
        L.Flatten(), L.Dense(10),
    ])


def test_xnnpack_check_prints_the_report_and_sets_the_exit_code(tmp_path, capsys):
    bad, good = str(tmp_path / "bad.keras"), str(tmp_path / "good.keras")
    guide_model(keepdims=False).save(bad)
    guide_model(keepdims=True).save(good)
    assert cli.main(["xnnpack-check", bad]) == 1
    assert "mean" in capsys.readouterr().out
    assert cli.main(["xnnpack-check", good]) == 0


def test_inspect_prints_every_operator(tmp_path, capsys):
    from tfmot_lite import export

    path = str(tmp_path / "m.tflite")
    export.to_tflite(guide_model(keepdims=True), path=path)
    assert cli.main(["inspect", path]) == 0
    out = capsys.readouterr().out
    assert "CONV_2D" in out and "MEAN" in out
