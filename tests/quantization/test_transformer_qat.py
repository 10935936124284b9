"""QAT of transformers: LayerNormalization, MultiHeadAttention, Embedding,
EinsumDense, Dense over sequences, GELU and residual Adds.

With the activation fake-quant off (`float_activations`) the quantized
layers compute what the float layers compute (masks and causal attention
included), so the rewritten calls are the same function; with it on, the
exported .tflite runs every operator integer and predicts what the Keras
QAT model predicts, in int8 and in 16x8."""

import numpy as np
import keras
import pytest
from keras import layers as L

import tfmot_lite as tfmot
from tfmot_lite.core import graph, techniques
from tfmot_lite.export import export_model, float_operators
from tfmot_lite.export.runtime import TFLiteModel
from tfmot_lite.quantization.quantizers import float_activations
from tflite_helpers import op_report

quantization = tfmot.quantization.keras
VOCAB, SEQ, DIM = 40, 8, 16


def _block(x, causal=False):
    h = L.LayerNormalization(epsilon=1e-6)(x)
    h = L.MultiHeadAttention(2, DIM // 2)(h, h, use_causal_mask=causal)
    x = L.Add()([x, h])
    h = L.LayerNormalization(epsilon=1e-6)(x)
    h = L.Dense(2 * DIM, activation="gelu")(h)
    return L.Add()([x, L.Dense(DIM)(h)])


def token_model(mask_zero=False, causal=False):
    """Embedding -> pre-norm encoder block -> first token's head (token ids
    in; a masked mean pooling would run float: TFLite has no integer DIV)."""
    ids = keras.Input((SEQ,), dtype="int32")
    x = _block(L.Embedding(VOCAB, DIM, mask_zero=mask_zero)(ids), causal)
    x = L.LayerNormalization()(x)[:, 0, :]
    return keras.Model(ids, L.Dense(3)(x))


def patch_model():
    """Float patches in (a ViT's): Dense patch embedding, EinsumDense, block."""
    inputs = keras.Input((SEQ, 12))
    x = L.Dense(DIM)(inputs)
    x = L.EinsumDense("abc,cd->abd", output_shape=(None, DIM), bias_axes="d")(x)
    x = L.GlobalAveragePooling1D()(_block(x))
    return keras.Model(inputs, L.Dense(3)(x))


def _tokens(n=48, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype("int32")
    ids[: n // 2, SEQ // 2:] = 0  # Padding, masked when mask_zero.
    return ids


def _patches(n=48, seed=0):
    return np.random.default_rng(seed).normal(size=(n, SEQ, 12)).astype("float32")


def _labels(x):
    """A task the model can learn: the parity of the first token (ids) or
    the sign of the first patch's first value (patches)."""
    first = np.asarray(x)[:, 0] if np.asarray(x).ndim == 2 else np.asarray(x)[:, 0, 0] > 0
    return (first.astype(int) % 3) if np.asarray(x).ndim == 2 else first.astype(int)


def _train(model, x, steps=3, epochs=1, run_eagerly=False):
    y = _labels(x)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=run_eagerly)
    model.fit(x, y, batch_size=len(x) // steps, epochs=epochs, verbose=0, shuffle=False)
    return model


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _quantized_paths(model):
    return {type(layer.layer).__name__ for _, layer in graph.iter_layers(model)
            if techniques.technique_of(layer) is techniques.QAT and hasattr(layer, "layer")}


@pytest.mark.slow
def test_quantized_layers_compute_the_float_layers_with_fake_quant_off():
    # (A masked position gets the scores' range minimum instead of -1e9, so
    # with masks the two differ by design: see quantization/attention.py;
    # the exports below check masked models against the .tflite.)
    model = token_model()
    x = _tokens()
    qat = quantization.quantize_model(model)
    assert {"LayerNormalization", "MultiHeadAttention", "Embedding", "Dense"} <= (
        _quantized_paths(qat))
    _train(qat, x, steps=1)  # Sets the weights' ranges; moves the weights.
    stripped = quantization.strip_quantization(qat)
    with float_activations():
        simulated = _predict(qat, x)
    # The stripped model is the float layers (Keras' own LayerNormalization
    # and attention) with the QAT model's rounded weights baked in.
    assert {type(layer).__name__ for _, layer in graph.iter_layers(stripped)} >= {
        "LayerNormalization", "MultiHeadAttention"}
    np.testing.assert_allclose(_predict(stripped, x), simulated, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", [
    {"rms_scaling": True}, {"center": False}, {"scale": False, "center": False},
    {"axis": [-2, -1]},
])
def test_layer_norm_variants_compute_what_keras_computes(config):
    inputs = keras.Input((SEQ, DIM))
    model = keras.Model(inputs, L.LayerNormalization(**config)(inputs))
    model.layers[-1].set_weights([
        np.random.default_rng(1).normal(size=w.shape).astype("float32")
        for w in model.layers[-1].get_weights()])
    qat = quantization.quantize_model(model)
    x = np.random.default_rng(2).normal(size=(8, SEQ, DIM)).astype("float32") * 3
    qat(x, training=True)  # Sets gamma's int8 range.
    # Keras' own LayerNormalization, with gamma rounded as QAT rounds it.
    stripped = quantization.strip_quantization(qat)
    assert type(stripped.layers[-1]) is L.LayerNormalization
    with float_activations():
        np.testing.assert_allclose(_predict(qat, x), _predict(stripped, x), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("builder,data", [
    pytest.param(lambda: token_model(mask_zero=True), _tokens, marks=pytest.mark.slow,
                 id="padding-mask"),
    pytest.param(lambda: token_model(causal=True), _tokens, marks=pytest.mark.slow,
                 id="causal"),
    pytest.param(patch_model, _patches, marks=pytest.mark.slow, id="patches"),
])
def test_int8_export_is_fully_integer_and_agrees(builder, data, tmp_path):
    x = data(n=96)
    model = _train(builder(), x, epochs=10)
    qat = _train(quantization.quantize_model(model), x)
    path = tmp_path / "m.tflite"
    report = export_model(qat, "int8", path=path, data=x)
    _, float_ops = op_report(path.read_bytes())
    assert float_ops == []
    assert float_operators(path) == []  # the library's reading agrees
    assert report.agreement >= 0.99


@pytest.mark.slow
def test_16x8_scheme_exports_int16_activations(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    x = _patches(n=96)
    model = _train(patch_model(), x, epochs=10)
    qat = _train(quantization.quantize_model(model, quantization.Default16x8QuantizeScheme()), x)
    with pytest.raises(ValueError, match="mode='int16x8'"):
        export_model(qat, "int8", data=x)
    path = tmp_path / "m.tflite"
    report = export_model(qat, "int16x8", path=path, data=x)
    _, float_ops = op_report(path.read_bytes())
    assert float_ops == []
    # The logits agree (top-1 can flip on a near tie). The converter
    # calibrates the ranges: an example beyond a trained range (which Keras
    # clips) may differ more, hence the 95th percentile.
    logits = TFLiteModel(path.read_bytes()).predict(x)
    reference = _predict(qat, x)
    spread = reference.max() - reference.min()
    per_example = np.abs(logits - reference).max(axis=1)
    assert np.percentile(per_example, 95) <= 0.01 * spread
    assert report.agreement >= 0.97
    interpreter = Interpreter(model_path=str(path))
    dtypes = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "int16" in dtypes and "int8" in dtypes  # int16 values, int8 weights


@pytest.mark.slow  # about 5 s: the QAT transformer trains eagerly, before and after loading
def test_save_load_with_no_custom_objects(tmp_path):
    """Saved and loaded, the QAT transformer predicts and trains as the
    model it was saved from (eagerly: a few steps, no tracing to wait for;
    the traced step is the other tests')."""
    x = _tokens()
    qat = _train(quantization.quantize_model(token_model(mask_zero=True)), x, run_eagerly=True)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(_predict(loaded, x), _predict(qat, x), atol=1e-6)
    keras.utils.set_random_seed(3)
    _train(qat, x, steps=1, run_eagerly=True)
    keras.utils.set_random_seed(3)
    _train(loaded, x, steps=1, run_eagerly=True)
    for a, b in zip(qat.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_gated_attention_is_refused_with_its_path():
    inputs = keras.Input((SEQ, DIM))
    outputs = L.MultiHeadAttention(2, 8, use_gate=True, name="gated")(inputs, inputs)
    with pytest.raises(ValueError, match=r"gated \(MultiHeadAttention\)"):
        quantization.quantize_model(keras.Model(inputs, outputs))


@pytest.mark.slow
def test_collaborative_schemes_keep_zeros_and_clusters_in_attention(tmp_path):
    """PQAT and CQAT on the attention projections, the EinsumDense and the
    Dense layers over the sequence: the .tflite keeps the zeros and the
    shared values, and every operator runs integer."""
    sparsity, clustering = tfmot.sparsity.keras, tfmot.clustering.keras
    combine = tfmot.experimental.combine
    x = _patches(n=96)
    model = _train(patch_model(), x, epochs=5)

    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, _labels(x), epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    pqat = quantization.quantize_model(
        sparsity.strip_pruning(pruned), combine.Default8BitPrunePreserveQuantizeScheme())
    _train(pqat, x)

    clustered = clustering.cluster_weights(
        model, number_of_clusters=8,
        cluster_centroids_init=clustering.CentroidInitialization.LINEAR)
    cqat = quantization.quantize_model(
        clustering.strip_clustering(_train(clustered, x)),
        combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False))
    _train(cqat, x)

    for name, qat in (("pqat", pqat), ("cqat", cqat)):
        path = tmp_path / f"{name}.tflite"
        # The file's operators and weights: no data to measure on.
        report = export_model(qat, "int8", path=path, latency_runs=0)
        assert op_report(path.read_bytes())[1] == []
        kernels = [w for w in report.weights if w["op_type"] == "FULLY_CONNECTED"]
        assert len(kernels) == 9  # patches, einsum, q/k/v/o, 2 MLP, head
        if name == "pqat":
            for w in kernels:
                assert w["zero_fraction"] >= 0.45, w
        else:
            for w in kernels:
                assert w["unique_values"] <= 8, w


@pytest.mark.slow  # over 5 s in the fast tier
def test_layer_norm_over_flat_positions_trains_and_exports(tmp_path):
    """A position whose values are all equal has variance 0, and with an
    epsilon far below one step of the variance's range `rsqrt(0)` is inf.
    TFLite's int8 RSQRT gives it the largest value of its range; a training
    step keeps that inf out of the tracked range, which it used to turn to
    NaN along with the loss (ConvNeXt's stem on the digits' flat
    background)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SEQ, DIM))
    h = L.LayerNormalization(epsilon=1e-6)(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(h)))
    x = _patches(n=96)[..., :1].repeat(DIM, axis=-1) * np.linspace(1, 2, DIM, dtype="float32")
    x[:, 1::2, :] = 1.5  # every other position flat
    qat = quantization.quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = qat.fit(x, _labels(x), batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all(), history.history["loss"]
    ranges = [v for v in qat.variables if v.path.endswith(("_min", "_max"))]
    assert ranges and all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in ranges)
    path = tmp_path / "m.tflite"
    report = export_model(qat, "int8", path=path, data=x)
    assert float_operators(path) == [] and report.agreement >= 0.99
