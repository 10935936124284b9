"""Keras 3 recurrent models export to TFLite (unrolled at export time):
float and integer modes run in LiteRT and predict what Keras predicts;
pruned and clustered recurrent kernels keep their zeros and values."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite.export import TFLiteModel, export_model, to_tflite, weight_stats
from tfmot_lite.export.recurrent import needs_unrolling

RNNS = {
    "lstm": lambda: keras.layers.LSTM(12),
    "gru": lambda: keras.layers.GRU(12),
    "simple_rnn": lambda: keras.layers.SimpleRNN(12),
    "bidirectional": lambda: keras.layers.Bidirectional(keras.layers.LSTM(6)),
    "stacked_cells": lambda: keras.layers.RNN([keras.layers.LSTMCell(6), keras.layers.GRUCell(6)]),
}


def _sequence_model(rnn, timesteps=10):
    inputs = keras.Input((timesteps, 5))
    return keras.Model(inputs, keras.layers.Dense(3)(rnn(inputs)))


def _data(n=24, timesteps=10):
    return np.random.default_rng(0).normal(size=(n, timesteps, 5)).astype("float32")


@pytest.mark.parametrize("name", sorted(RNNS))
def test_float_export_predicts_what_keras_predicts(name):
    model = _sequence_model(RNNS[name]())
    x = _data()
    flatbuffer = to_tflite(model)
    np.testing.assert_allclose(TFLiteModel(flatbuffer).predict(x), model.predict(x, verbose=0),
                               atol=1e-5)
    assert needs_unrolling(model)  # the user's model keeps its loop


# int8 in the fast tier; each mode converts and runs two models (about 3 s).
@pytest.mark.parametrize("mode", [pytest.param("dynamic_range", marks=pytest.mark.slow),
                                  "int8", pytest.param("int16x8", marks=pytest.mark.slow)])
def test_quantized_exports_of_lstm_and_gru_run(mode):
    x = _data(48)
    for rnn in (RNNS["lstm"], RNNS["gru"]):
        model = _sequence_model(rnn())
        report = export_model(model, mode, data=x)
        assert report.agreement >= 0.9, (mode, report.agreement)


@pytest.mark.slow
def test_pruned_and_clustered_recurrent_kernels_reach_the_tflite():
    x, y = _data(32), np.random.default_rng(1).normal(size=(32, 3)).astype("float32")
    sparsity, clustering = tfmot.sparsity.keras, tfmot.clustering.keras
    model = _sequence_model(RNNS["lstm"]())
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("sgd", "mse")
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert export_model(pruned, "float32", data=x).agreement == 1.0
    stats = weight_stats(to_tflite(sparsity.strip_pruning(pruned)))
    # The LSTM's kernel (5 x 48) and recurrent kernel (12 x 48).
    big = [s for s in stats if s.size in (5 * 48, 12 * 48)]
    assert len(big) == 2 and all(abs(s.zero_fraction - 0.5) < 0.02 for s in big)

    clustered = clustering.cluster_weights(
        _sequence_model(RNNS["gru"]()), number_of_clusters=8)
    flatbuffer = to_tflite(clustering.strip_clustering(clustered))
    kernels = [s for s in weight_stats(flatbuffer) if s.size in (5 * 36, 12 * 36)]
    assert len(kernels) == 2 and all(s.unique_values <= 8 for s in kernels)


def test_unknown_sequence_length_is_refused_with_the_fix():
    inputs = keras.Input((None, 5))
    model = keras.Model(inputs, keras.layers.GRU(4, name="encoder")(inputs))
    with pytest.raises(ValueError, match=r"'encoder' \(GRU\) runs over sequences of unknown length"):
        to_tflite(model)


def test_stateful_layers_are_refused_with_the_fix():
    inputs = keras.Input((10, 5), batch_size=2)
    model = keras.Model(inputs, keras.layers.LSTM(4, stateful=True, name="lstm")(inputs))
    with pytest.raises(ValueError, match=r"'lstm' \(LSTM\) is stateful"):
        to_tflite(model)


def test_gru_16x8_breakage_is_warned():
    """TF 2.21's 16x8 quantizer zeroes a reset_after GRU's recurrent kernel
    when its recurrent bias is nonzero (an upstream bug): said, not silent."""
    from tfmot_lite.export import quantize_post_training

    model = _sequence_model(keras.layers.GRU(6, name="gru"))
    kernel, recurrent, bias = model.get_layer("gru").get_weights()
    bias[1] = 0.1
    model.get_layer("gru").set_weights([kernel, recurrent, bias])
    with pytest.warns(UserWarning, match=r"'gru' \(GRU, reset_after=True\)"):
        quantize_post_training(model, "int16x8", representative_data=_data(16))
