"""A bilinear UpSampling2D under QAT: int8 RESIZE_BILINEAR keeps its
input's scale, so the layer has no range of its own
(`same_scale.QuantizeBilinearResize`) and rounds its output into its
input's, as XNNPACK rounds (ties up). With a range of its own after it, the
converter had handed that narrower range to the convolution before it,
clipping its outputs: 38% of a Conv -> UpSampling -> Conv model's outputs
off XNNPACK's, by up to 21 steps."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.export.runtime import TFLiteModel
from tfmot_lite.quantization.same_scale import QuantizeBilinearResize

L = keras.layers


def _qat(outputs_of, x, size=2):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:], batch_size=1)
    up = L.UpSampling2D(size, interpolation="bilinear", name="up")
    qat = tfmot.quantization.keras.quantize_model(
        keras.Model(inputs, outputs_of(up, inputs)))
    for k in range(0, len(x), 16):
        qat(x[k:k + 16], training=True)
    return qat


def _steps_off(qat, x, tmp_path, xnnpack=True):
    path = tmp_path / "m.tflite"
    report = export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    assert report.int8_fraction == 1.0 and "RESIZE_BILINEAR" in report.operators
    runner = TFLiteModel(path.read_bytes(), xnnpack=xnnpack)
    tflite = runner.predict(x)
    return np.abs(np.asarray(qat(x, training=False)) - tflite) / runner.output["quantization"][0]


X = np.random.default_rng(0).normal(size=(48, 8, 8, 3)).astype("float32")


def test_the_layer_borrows_its_inputs_range():
    qat = _qat(lambda up, x: up(L.Conv2D(8, 3, padding="same")(x)), X)
    wrapper = qat.get_layer("quant_up")
    assert isinstance(wrapper, QuantizeBilinearResize) and wrapper.rounds
    assert not wrapper.weights  # no range of its own


@pytest.mark.parametrize("size", [2, 3])
def test_the_resize_lands_on_xnnpacks_integers(size, tmp_path):
    """Every output, ties included (the built-in kernel sends a 2x
    resize's ties away from zero instead, and weighs a 3x one with 10-bit
    fractions)."""
    qat = _qat(lambda up, x: up(L.Conv2D(8, 3, padding="same")(x)), X, size)
    steps = _steps_off(qat, X, tmp_path)
    assert steps.max() < 0.01, (np.mean(steps > 0.5), steps.max())
    builtin = _steps_off(qat, X, tmp_path, xnnpack=False)
    assert 0.01 < np.mean(builtin > 0.5) and builtin.max() < 2.01


def test_a_decoder_lands_on_xnnpacks_integers_and_round_trips(tmp_path):
    qat = _qat(lambda up, x: L.Conv2D(4, 3, padding="same")(
        up(L.Conv2D(8, 3, padding="same", activation="relu")(x))), X)
    steps = _steps_off(qat, X, tmp_path)
    assert np.mean(steps > 0.5) < 0.005 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("quant_up"), QuantizeBilinearResize)
    assert loaded.get_layer("quant_up").rounds
    np.testing.assert_allclose(loaded(X, training=False), qat(X, training=False), atol=1e-6)
