"""QAT of LSTM, GRU and SimpleRNN layers: every operator of each unrolled step
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


def _fit(model, x, y, epochs, learning_rate=1e-2, run_eagerly=False):
    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=run_eagerly)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "layer", [lambda: L.LSTM(16), lambda: L.GRU(16), lambda: L.GRU(16, reset_after=False),
              lambda: L.SimpleRNN(16)],
    ids=["lstm", "gru", "gru_reset_before", "simple_rnn"])
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
    # Three steps, eagerly: they run faster than tracing the step.
    qat = _fit(quantization.quantize_model(_model(L.LSTM(8))), x, y, epochs=1,
               run_eagerly=True)
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(qat(x)), atol=1e-6)


def test_recurrent_layer_with_other_activations_is_refused_with_its_path():
    with pytest.raises(ValueError, match=r"relu_lstm \(LSTM\)"):
        quantization.quantize_model(_model(L.LSTM(8, activation="relu", name="relu_lstm")))


@pytest.mark.slow
def test_pqat_keeps_the_zeros_of_both_recurrent_kernels(tmp_path):
    sparsity = tfmot.sparsity.keras
    combine = tfmot.experimental.combine
    x, y = _sequences(200)
    model = _fit(_model(L.LSTM(16)), x, y, epochs=3)
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    pqat = quantization.quantize_model(
        sparsity.strip_pruning(pruned), combine.Default8BitPrunePreserveQuantizeScheme())
    _fit(pqat, x, y, epochs=1, learning_rate=1e-3)
    report = export_model(pqat, "int8", path=tmp_path / "m.tflite", data=x)
    # (64, 8) input kernel and (64, 16) recurrent kernel, each stored once.
    recurrent = [w for w in report.weights
                 if w["op_type"] == "FULLY_CONNECTED" and w["shape"][0] == 64]
    assert len(recurrent) >= 2
    for w in recurrent:
        assert w["zero_fraction"] >= 0.45, w
