"""Export of models with dict inputs (issue 20): KerasHub models and
Functional models built on `{name: keras.Input}`.

`TFLiteConverter.from_keras_model` cannot trace a Keras 3 model with dict
inputs; `to_tflite` converts those through a SavedModel in a temporary
directory. Data for several inputs is a dict keyed by input name, for
calibration, agreement, accuracy and latency alike, in Python and in the
CLI (a .npz archive with one array per input name).
"""

import os
import tempfile

import keras
import numpy as np
import pytest

from tfmot_lite import cli, export

L = keras.layers


def feature_and_ids_model():
    """A float feature vector and int32 ids (through an Embedding), joined,
    then a Dense head: 3 classes."""
    keras.utils.set_random_seed(0)
    inputs = {
        "features": keras.Input((6,), name="features"),
        "ids": keras.Input((5,), dtype="int32", name="ids"),
    }
    ids = L.GlobalAveragePooling1D()(L.Embedding(20, 4)(inputs["ids"]))
    hidden = L.Dense(8, activation="relu")(L.Concatenate()([inputs["features"], ids]))
    return keras.Model(inputs, L.Dense(3)(hidden))


def feature_and_ids_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(n, 6)).astype("float32"),
        "ids": rng.integers(0, 20, size=(n, 5)).astype("int32"),
    }


@pytest.fixture(scope="module")
def model():
    return feature_and_ids_model()


def test_float32_export_matches_keras(model, tmp_path):
    data = feature_and_ids_data()
    path = tmp_path / "dict.tflite"
    report = export.export_model(model, "float32", path=path, data=data, latency_runs=3)
    assert report.agreement == 1.0 and report.examples == 40
    assert report.latency_us > 0
    reference = model.predict(data, verbose=0)
    runner = export.TFLiteModel(str(path))
    assert sorted(runner.inputs) == ["features", "ids"]
    assert np.abs(runner.predict(data) - reference).max() < 1e-5
    # A list follows `input_names`; given the Keras order, the same outputs.
    in_keras_order = export.TFLiteModel(str(path), input_names=["features", "ids"])
    listed = in_keras_order.predict([data["features"], data["ids"]])
    assert np.abs(listed - reference).max() < 1e-5


def test_int8_calibrates_on_dict_data(model):
    data = feature_and_ids_data()
    report = export.export_model(
        model, "int8", data=data, representative_data=feature_and_ids_data(64, seed=1),
        int8_io=True, latency_runs=3)
    assert report.calibration == "64 representative examples"
    assert report.agreement >= 0.8
    flatbuffer = export.quantize_post_training(
        model, "int8", representative_data=data, int8_io=True)
    runner = export.TFLiteModel(flatbuffer)
    # Each input by its own scale: the features are quantized, ids are not.
    assert runner.inputs["features"]["dtype"] == np.int8
    assert runner.inputs["features"]["quantization"][0] > 0
    assert runner.inputs["ids"]["dtype"] == np.int32
    reference = model.predict(data, verbose=0)
    spread = reference.max() - reference.min()
    assert np.abs(runner.predict(data) - reference).max() <= 0.1 * spread


@pytest.mark.parametrize("change, fragments", [
    (lambda d: {"features": d["features"]}, ["features, ids", "missing ids"]),
    (lambda d: {**d, "mask": d["ids"]}, ["extra mask"]),
    (lambda d: {"feature": d["features"], "ids": d["ids"]},
     ["missing features", "extra feature"]),
])
def test_dict_that_does_not_fit_names_the_inputs(model, change, fragments):
    with pytest.raises(ValueError) as error:
        export.export_model(model, "float32", data=change(feature_and_ids_data(8)))
    for fragment in fragments:
        assert fragment in str(error.value)
    with pytest.raises(ValueError, match="missing ids"):
        export.TFLiteModel(export.to_tflite(model)).predict(
            {"features": feature_and_ids_data(2)["features"]})


def test_the_saved_model_directory_is_removed(model, tmp_path, monkeypatch):
    tf = export.convert.import_tensorflow()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []
    real = tempfile.TemporaryDirectory

    def recording(*args, **kwargs):
        directory = real(*args, **kwargs)
        made.append(directory.name)
        return directory

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    export.to_tflite(model)
    assert len(made) == 1 and made[0].startswith(str(tmp_path))
    assert not os.path.exists(made[0])
    # Full integer without calibration data: the converter fails after
    # the SavedModel was written.
    with pytest.raises(ValueError, match="representative_dataset"):
        export.to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT],
                         supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
    assert len(made) == 2 and not os.path.exists(made[1])
    # Only TensorFlow's own autograph files are left there, no directory.
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_kerashub_bert_classifier_predicts_as_keras():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=500, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=32)
    inputs = {k: keras.Input((32,), dtype="int32", name=k)
              for k in ("token_ids", "padding_mask", "segment_ids")}
    bert = keras.Model(inputs, L.Dense(2)(backbone(inputs)["pooled_output"]))
    rng = np.random.default_rng(0)
    mask = (np.arange(32) < rng.integers(5, 33, size=(8, 1))).astype("int32")
    data = {
        "token_ids": rng.integers(1, 500, size=(8, 32)).astype("int32") * mask,
        "padding_mask": mask,
        "segment_ids": np.zeros((8, 32), "int32"),
    }
    flatbuffer = export.to_tflite(bert)
    report = export.measure(flatbuffer, data=data, keras_model=bert, latency_runs=3)
    assert report.agreement == 1.0 and report.examples == 8
    predicted = export.TFLiteModel(flatbuffer).predict(data)
    assert np.abs(predicted - bert.predict(data, verbose=0)).max() < 1e-4


def test_cli_export_reads_inputs_by_name_from_npz(model, tmp_path, capsys):
    model.save(tmp_path / "dict.keras")
    data = feature_and_ids_data()
    np.savez(tmp_path / "x.npz", **data)
    np.save(tmp_path / "y.npy", model.predict(data, verbose=0).argmax(-1))
    out = tmp_path / "dict.tflite"
    assert cli.main(["export", str(tmp_path / "dict.keras"), "--mode", "int8",
                     "--representative-data", str(tmp_path / "x.npz"),
                     "--data", str(tmp_path / "x.npz"), "--labels", str(tmp_path / "y.npy"),
                     "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "agreement" in printed
    assert cli.main(["bench", str(out), "--runs", "3"]) == 0
    printed = capsys.readouterr().out
    assert "us median over 3 runs" in printed
    assert "ids (5,)" in printed and "features (6,)" in printed

    np.savez(tmp_path / "wrong.npz", features=data["features"], tokens=data["ids"])
    np.save(tmp_path / "x.npy", data["features"])
    for name in ("wrong.npz", "x.npy"):
        with pytest.raises(SystemExit):
            cli.main(["export", str(tmp_path / "dict.keras"), "--data", str(tmp_path / name)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tfmot-lite: error:")
        assert "--data" in lines[0] and "features, ids" in lines[0]
