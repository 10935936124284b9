"""QAT of LSTM and SimpleRNN layers: every operator of each unrolled step
runs integer in the exported .tflite (the initial zero state's FILL aside),
which predicts what the Keras QAT model predicts; with the activation
fake-quant off the quantized step is Keras' own cell."""

import numpy as np
import keras
import pytest
from keras import layers as L

import tfmot_lite as tfmot
from tfmot_lite.data import digits
from tfmot_lite.export import export_model
from tfmot_lite.quantization.quantizers import float_activations
from tflite_helpers import op_report

quantization = tfmot.quantization.keras


def _sequences(n=400):
    (x, y), _ = digits(image_size=8, channels=1)
    return x[:n].reshape(-1, 8, 8), y[:n]


def _model(layer):
    inputs = keras.Input((8, 8))
    return keras.Model(inputs, L.Dense(10)(layer(inputs)))


def _fit(model, x, y, epochs, learning_rate=1e-2):
    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("layer", [lambda: L.LSTM(16), lambda: L.SimpleRNN(16)],
                         ids=["lstm", "simple_rnn"])
def test_recurrent_qat_exports_integer_steps_and_agrees(layer, tmp_path):
    x, y = _sequences()
    model = _fit(_model(layer()), x, y, epochs=8)
    qat = _fit(quantization.quantize_model(model), x, y, epochs=2, learning_rate=1e-3)
    path = tmp_path / "m.tflite"
    report = export_model(qat, "int8", path=path, data=x, labels=y)
    _, float_ops = op_report(path.read_bytes())
    assert set(float_ops) <= {"FILL"}  # the initial zero state, quantized next
    assert report.agreement >= 0.98
    # Stripped: Keras' own layer with the rounded kernels, which the QAT
    # step computes with the activation fake-quant off.
    stripped = quantization.strip_quantization(qat)
    assert type(stripped.layers[-2]) is type(model.layers[1])
    with float_activations():
        simulated = keras.ops.convert_to_numpy(qat(x[:32]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stripped(x[:32])), simulated,
                               atol=1e-4)


def test_recurrent_qat_round_trips_through_keras_files(tmp_path):
    x, y = _sequences(96)
    qat = _fit(quantization.quantize_model(_model(L.LSTM(8))), x, y, epochs=1)
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(qat(x)), atol=1e-6)


def test_gru_qat_is_refused_with_its_path():
    with pytest.raises(ValueError, match=r"gru \(GRU\)"):
        quantization.quantize_model(_model(L.GRU(8, name="gru")))
