"""Pruning, clustering and QAT reach the stock layers inside subclassed
layers and KerasHub models: {user block, BERT, ViT, KerasHub ResNet
classifier} x {prune, cluster, QAT}: wrap, train 2 steps, strip, export,
`.keras` round-trip and resumed training, the input model untouched; BERT's
QAT export runs every operator int8 and agrees with the Keras model."""

import numpy as np
import keras
import pytest

import tfmot_lite as tfmot
from tfmot_lite.core import graph, techniques
from tfmot_lite.export import export_model
from sublayer_models import BUILDERS
from tflite_helpers import op_report

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
quantization = tfmot.quantization.keras


def _prune(model):
    return sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))


def _cluster(model):
    return clustering.cluster_weights(
        model, number_of_clusters=8,
        cluster_centroids_init=clustering.CentroidInitialization.LINEAR)


TECHNIQUES = {
    "prune": (_prune, sparsity.strip_pruning, techniques.PRUNING),
    "cluster": (_cluster, clustering.strip_clustering, techniques.CLUSTERING),
    "qat": (quantization.quantize_model, quantization.strip_quantization, techniques.QAT),
}
# The fast tier keeps the user's own block under pruning and clustering
# (about 3.5 s each); its QAT case converts and compares an int8 export
# (about 8 s) and runs with the KerasHub models in the slow tier.
FAST_CASES = {("user_block", "prune"), ("user_block", "cluster")}
CASES = [
    pytest.param(m, t, marks=[] if (m, t) in FAST_CASES else [pytest.mark.slow])
    for m in BUILDERS for t in TECHNIQUES if (m, t) != ("vit", "qat")
]


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _fit(model, x, steps=2, run_eagerly=False):
    y = np.arange(len(keras.tree.flatten(x)[0])) % 2
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=run_eagerly)
    pruned = techniques.PRUNING in techniques.in_model(model)
    model.fit(x, y, batch_size=len(y) // steps, epochs=1, verbose=0, shuffle=False,
              callbacks=[sparsity.UpdatePruningStep()] if pruned else [])


def _check_nearest_centroids(clustered, model):
    originals = dict(graph.iter_layers(model))
    checked = 0
    for path, layer in graph.iter_layers(clustered):
        if techniques.technique_of(layer) is not techniques.CLUSTERING or "/" not in path:
            continue
        # The wrapped copy lists its weights in the original's order.
        positions = [id(w) for w in layer.layer.weights]
        for variable, value in zip(layer.target_weights(), layer.transformed_weights(False)):
            original = keras.ops.convert_to_numpy(
                originals[path].weights[positions.index(id(variable))])
            value = keras.ops.convert_to_numpy(value)
            spacing = (original.max() - original.min()) / 7
            assert len(np.unique(value)) <= 8
            assert np.abs(value - original).max() <= spacing / 2 + 1e-6, path
            checked += 1
    assert checked


@pytest.mark.parametrize("model_name,technique", CASES)
def test_wrap_train_strip_save_resume(model_name, technique, tmp_path):
    pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(1)
    model, x = BUILDERS[model_name]()
    apply, strip, row = TECHNIQUES[technique]
    before = [w.copy() for w in model.get_weights()]
    reference = _predict(model, x)

    wrapped = apply(model)
    inner = [p for p, layer in graph.iter_layers(wrapped)
             if techniques.technique_of(layer) is row and "/" in p]
    assert inner, "no layer inside a subclassed layer was wrapped"
    # Before training, the inner wrappers start from the model's weights:
    # pruning computes the same (no mask yet), clustering replaces each
    # weight by its nearest of 8 linearly spaced centroids.
    if technique == "prune":
        np.testing.assert_allclose(_predict(wrapped, x), reference, atol=1e-5)
    if technique == "cluster":
        _check_nearest_centroids(wrapped, model)
    _fit(wrapped, x)
    out = _predict(wrapped, x)
    assert np.isfinite(out).all()

    # The input model is untouched.
    np.testing.assert_array_equal(_predict(model, x), reference)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)

    # Strip: the original classes are back (QAT keeps folds as Identity).
    stripped = strip(wrapped)
    assert not techniques.in_model(stripped)
    kinds = {type(layer).__name__ for _, layer in graph.iter_layers(stripped)}
    if technique == "qat":
        # Activation fake-quant is dropped by strip_quantization, and a
        # folded BatchNormalization stays an Identity (so a KerasHub
        # backbone with folds stays hosted).
        np.testing.assert_allclose(_predict(stripped, x), out, atol=0.25)
    else:
        assert "SublayerHost" not in {type(layer).__name__ for layer in stripped.layers}
        np.testing.assert_allclose(_predict(stripped, x), out, atol=1e-5)
        original_kinds = {type(layer).__name__ for _, layer in graph.iter_layers(model)}
        assert kinds == original_kinds
        for original, plain in zip(model.layers, stripped.layers):
            assert type(plain) is type(original)

    # Export sees the inner layers: their zeros and shared values reach the
    # .tflite, which predicts what the Keras model predicts.
    tflite = tmp_path / "m.tflite"
    report = export_model(wrapped, "int8" if technique == "qat" else "float32", path=tflite,
                          data=x)
    if technique == "prune":
        assert report.sparsity > 0.3
    if technique == "cluster":
        assert report.max_unique_per_channel <= 8
    if (model_name, technique) == ("bert", "qat"):
        # Attention, layer normalization, embeddings and the embeddings' sum
        # inside KerasHub's BERT are quantized where TFLite computes them:
        # every operator runs int8 (the float interface aside), and the
        # .tflite predicts what the Keras QAT model predicts.
        assert "bert_backbone/transformer_layer_0/_self_attention_layer" in " ".join(inner)
        assert op_report(tflite.read_bytes())[1] == []
        assert report.int8_fraction > 0.95  # The output's DEQUANTIZE is float.
        assert report.agreement == 1.0
    assert report.agreement >= (0.75 if technique == "qat" else 1.0)

    # .keras round-trip, no custom_objects, and training resumes exactly
    # (one step each, eagerly: nothing to trace).
    path = tmp_path / "m.keras"
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(_predict(loaded, x), out, atol=1e-6)
    keras.utils.set_random_seed(2)
    _fit(wrapped, x, steps=1, run_eagerly=True)
    keras.utils.set_random_seed(2)
    _fit(loaded, x, steps=1, run_eagerly=True)
    for a, b in zip(wrapped.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_pruning_reaches_bert_attention_and_keeps_kerashub_classes():
    keras_hub = pytest.importorskip("keras_hub")
    model, x = BUILDERS["bert"]()
    pruned = _prune(model)
    paths = [p for p, layer in graph.iter_layers(pruned)
             if techniques.technique_of(layer) is techniques.PRUNING]
    assert "bert_backbone/transformer_layer_0/_self_attention_layer" in paths
    assert "bert_backbone/transformer_layer_1/_feedforward_output_dense" in paths
    _fit(pruned, x, steps=2)
    stripped = sparsity.strip_pruning(pruned)
    backbone = stripped.get_layer("bert_backbone")
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    encoder = backbone.transformer_layers[0]
    assert isinstance(encoder, keras_hub.layers.TransformerEncoder)
    kernel = keras.ops.convert_to_numpy(encoder._feedforward_intermediate_dense.kernel)
    assert abs((kernel == 0).mean() - 0.5) < 0.01
