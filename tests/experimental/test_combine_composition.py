"""The preserving schemes compose with what QAT supports: nested models,
Conv-BatchNorm folding, saving, stripping. Synthetic weights, a few steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tflite_helpers import kernel_stats

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.experimental import combine

L = keras.layers
qk = tfmot.quantization.keras


def _model():
    """Conv-BN-ReLU, a nested Sequential with a 1x1 Conv-BN-ReLU, a Dense head."""
    block = keras.Sequential([
        keras.Input((8, 8, 8)),
        L.Conv2D(16, 1, use_bias=False, name="pointwise"),
        L.BatchNormalization(name="block_bn"),
        L.ReLU(name="block_relu"),
    ], name="block")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    x = block(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(10, name="head")(x))
    rng = np.random.default_rng(0)
    for layer in (model.get_layer("stem_bn"), block.get_layer("block_bn")):
        n = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
        layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    return model


def _kernels(model):
    return [layer.kernel for _, layer in tfmot_lite_layers(model) if hasattr(layer, "kernel")]


def tfmot_lite_layers(model):
    from tfmot_lite.core import graph

    return list(graph.iter_layers(model))


def _prune(model, fraction=0.5, seed=0):
    """Zeros the smallest `fraction` of every kernel (a stripped pruned model)."""
    for kernel in _kernels(model):
        w = keras.ops.convert_to_numpy(kernel)
        threshold = np.quantile(np.abs(w), fraction)
        kernel.assign(np.where(np.abs(w) <= threshold, 0.0, w).astype("float32"))
    return model


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 8, 8, 3)).astype("float32"),
            rng.integers(0, 10, n).astype("int32"))


def _train(model, steps=4, lr=1e-2):
    x, y = _data()
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=steps // 4, verbose=0)


def _int8(model):
    return export.to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT])


def _fused(model):
    return [layer for _, layer in tfmot_lite_layers(model)
            if isinstance(layer, qk.QuantizeConvBatchNorm)]


@pytest.fixture(scope="module")
def sparse_clustered():
    """Pruned 50%, then clustered to 8 values with sparsity kept, stripped."""
    pruned = _prune(_model())
    clustered = tfmot.clustering.keras.cluster_weights(
        pruned, 8, preserve_sparsity=True)
    return tfmot.clustering.keras.strip_clustering(clustered)


def test_pqat_keeps_zeros_through_nested_folding_and_export():
    pruned = _prune(_model())
    pqat = qk.quantize_apply(qk.quantize_annotate_model(pruned),
                             combine.Default8BitPrunePreserveQuantizeScheme())
    fused = _fused(pqat)
    assert [f.conv.name for f in fused] == ["stem", "pointwise"]
    assert all(isinstance(f.kernel_transform, combine.SparsityPreserve) for f in fused)
    _train(pqat)
    stats = kernel_stats(_int8(pqat))
    assert [s.op_type for s in stats] == ["CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    for s in stats:
        assert s.zero_fraction >= 0.5, s
    # The pruned model itself is untouched.
    assert all(k.trainable for k in _kernels(pruned))


@pytest.mark.slow
def test_plain_qat_loses_the_zeros_the_preserving_scheme_keeps():
    """Control: the same training with the default scheme."""
    pruned = _prune(_model())
    qat = qk.quantize_apply(qk.quantize_annotate_model(pruned))
    _train(qat)
    stats = kernel_stats(_int8(qat))
    assert min(s.zero_fraction for s in stats) < 0.4


@pytest.mark.slow
def test_pcqat_keeps_zeros_and_clusters_through_folding_and_export(sparse_clustered):
    source = [keras.ops.convert_to_numpy(k).copy() for k in _kernels(sparse_clustered)]
    for w in source:
        assert len(np.unique(w)) <= 8 and np.mean(w == 0) >= 0.5
    pcqat = qk.quantize_apply(qk.quantize_annotate_model(sparse_clustered),
                              combine.Default8BitClusterPreserveQuantizeScheme(True))
    assert all(isinstance(f.kernel_transform, combine.ClusterPreserve) for f in _fused(pcqat))
    _train(pcqat)
    stats = kernel_stats(_int8(pcqat))
    for s in stats:
        assert s.zero_fraction >= 0.5, s
        assert s.max_unique_per_channel <= 8, s
    dense = stats[-1]
    assert dense.op_type == "FULLY_CONNECTED" and dense.unique_values <= 8
    # The trained kernels, written back into the layers, keep the structure.
    for kernel in [l.kernel for _, l in tfmot_lite_layers(pcqat) if hasattr(l, "kernel")]:
        w = keras.ops.convert_to_numpy(kernel)
        assert len(np.unique(w)) <= 8 and np.mean(w == 0) >= 0.5
    # The input model is not modified.
    for kernel, w in zip(_kernels(sparse_clustered), source):
        assert kernel.trainable
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), w)


@pytest.mark.slow
def test_cqat_per_channel_clusters_survive_the_folded_scale():
    model = _model()
    clustered = tfmot.clustering.keras.strip_clustering(
        tfmot.clustering.keras.cluster_weights(model, 4, cluster_per_channel=True))
    cqat = qk.quantize_apply(qk.quantize_annotate_model(clustered),
                             combine.Default8BitClusterPreserveQuantizeScheme(False))
    transforms = [f.kernel_transform for f in _fused(cqat)]
    assert [t.per_channel for t in transforms] == [True, True]
    _train(cqat)
    for s in kernel_stats(_int8(cqat)):
        assert s.max_unique_per_channel <= 4, s


def test_quantize_model_accepts_the_schemes(sparse_clustered):
    pcqat = qk.quantize_model(sparse_clustered,
                              combine.Default8BitClusterPreserveQuantizeScheme())
    assert len(_fused(pcqat)) == 2
    head = pcqat.get_layer("quant_head")
    assert isinstance(head.quantize_config.weight_quantizer, combine.PreservingQuantizer)


@pytest.mark.slow
def test_keras_round_trip(tmp_path, sparse_clustered):
    """PCQAT: cluster state, sparsity mask and PreservingQuantizer configs
    (the PQAT mask is the same kind of state) load with no custom_objects."""
    scheme = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
    model = qk.quantize_apply(qk.quantize_annotate_model(sparse_clustered), scheme)
    _train(model)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x, _ = _data(8, seed=1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    quantizer = loaded.get_layer("quant_head").quantize_config.weight_quantizer
    assert isinstance(quantizer, combine.PreservingQuantizer)
    assert isinstance(quantizer.transform, combine.ClusterPreserve)
    for a, b in zip(_fused(model), _fused(loaded)):
        assert a.kernel_transform.get_config() == b.kernel_transform.get_config()
    # Training goes on from the loaded state with the structure intact.
    _train(loaded)
    for fused in _fused(loaded):
        kernel, _ = fused.transformed_weights(False)
        w = keras.ops.convert_to_numpy(kernel)
        assert np.mean(w == 0) >= 0.5
        if isinstance(fused.kernel_transform, combine.ClusterPreserve):
            assert max(len(np.unique(w[..., c])) for c in range(w.shape[-1])) <= 8


@pytest.mark.slow
def test_strip_clustering_cqat(sparse_clustered):
    pcqat = qk.quantize_apply(qk.quantize_annotate_model(sparse_clustered),
                              combine.Default8BitClusterPreserveQuantizeScheme())
    _train(pcqat)
    stripped = combine.strip_clustering_cqat(pcqat)
    names = [w.name for w in stripped.weights]
    assert not any("cluster" in n or "sparsity_mask" in n for n in names)
    assert any("cluster" in w.name for w in pcqat.weights)  # input not modified
    x, _ = _data(16, seed=2)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pcqat.predict(x, verbose=0),
                               atol=1e-6)
    assert all(k.trainable for k in (l.kernel for _, l in tfmot_lite_layers(stripped)
                                     if hasattr(l, "kernel")))
    for s in kernel_stats(_int8(stripped)):
        assert s.zero_fraction >= 0.5 and s.max_unique_per_channel <= 8, s


def test_strip_clustering_cqat_rejects_subclassed_models():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        combine.strip_clustering_cqat(Net())
