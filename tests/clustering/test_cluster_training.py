import keras
import numpy as np
import pytest
from tfmot_lite.example_models import build_cnn as small_cnn

from tfmot_lite.core import graph
from tfmot_lite.clustering.keras import (
    CentroidInitialization,
    ClusterWeights,
    cluster_weights,
    strip_clustering,
)


def wrappers(model):
    return [l for _, l in graph.iter_layers(model) if isinstance(l, ClusterWeights)]


def compile_(model, lr=1e-3, run_eagerly=False):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )
    return model


def unique_per_channel(kernel):
    flat = kernel.reshape(-1, kernel.shape[-1])
    return max(len(np.unique(flat[:, c])) for c in range(flat.shape[1]))


@pytest.fixture
def digits_small(digits32):
    (x, y), _ = digits32
    return x[:128], y[:128]


@pytest.mark.slow
def test_training_moves_centroids_and_reassigns_weights(digits_small):
    x, y = digits_small
    clustered = compile_(cluster_weights(small_cnn(), 8), lr=1e-2)
    before = [
        (w.cluster_centroids[0].numpy().copy(), w.pulling_indices()[0])
        for w in wrappers(clustered)
    ]
    kernels_before = [w.clustered_weights[0].numpy().copy() for w in wrappers(clustered)]
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for w, (c0, idx0), k0 in zip(wrappers(clustered), before, kernels_before):
        assert not np.allclose(w.cluster_centroids[0].numpy(), c0), w.name
        assert not np.array_equal(w.clustered_weights[0].numpy(), k0), w.name  # STE trains w
        assert (w.pulling_indices()[0] != idx0).any(), w.name
        # What the layer sees always has at most k values, each a centroid.
        seen = w.transformed_weights(True)[0].numpy()
        assert set(np.unique(seen)) <= set(w.sorted_centroids(0).numpy())
        assert len(np.unique(seen)) <= 8
        # ... and each weight gets its nearest centroid.
        kernel = w.clustered_weights[0].numpy()
        best = np.min(np.abs(kernel[..., None] - w.sorted_centroids(0).numpy()), axis=-1)
        np.testing.assert_allclose(np.abs(kernel - seen), best, rtol=0, atol=1e-7)


def test_centroid_gradient_is_the_sum_over_its_cluster():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients taken with tf.GradientTape")
    layer = cluster_weights(keras.layers.Dense(3), 4, cluster_centroids_init="LINEAR")
    x = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    layer(x)
    with tf.GradientTape() as tape:
        out = layer(x, training=True)
        loss = tf.reduce_sum(out**2)
    d_kernel_seen = tf.convert_to_tensor(
        tape.gradient(loss, layer.layer.kernel)
    ).numpy()  # straight-through: the kernel's gradient is dL/dW
    with tf.GradientTape() as tape:
        out = layer(x, training=True)
        loss = tf.reduce_sum(out**2)
    d_centroids = tf.convert_to_tensor(tape.gradient(loss, layer.cluster_centroids[0])).numpy()
    idx = layer.pulling_indices()[0]
    order = np.argsort(layer.cluster_centroids[0].numpy())
    expected = np.zeros(4, "float32")
    for j in range(4):
        expected[order[j]] = d_kernel_seen[idx == j].sum()
    np.testing.assert_allclose(d_centroids, expected, rtol=1e-5, atol=1e-6)


def assert_strips_exactly(clustered, x, k):
    stripped = strip_clustering(clustered)
    assert not wrappers(stripped)
    kernels = [l.kernel.numpy() for l in stripped.layers if hasattr(l, "kernel")]
    assert kernels and all(len(np.unique(kernel)) <= k for kernel in kernels)
    np.testing.assert_array_equal(clustered.predict(x, verbose=0), stripped.predict(x, verbose=0))
    return stripped


@pytest.mark.parametrize("init", list(CentroidInitialization))
def test_every_init_strips_to_k_values_and_predicts_exactly(digits_small, init):
    x, _ = digits_small
    assert_strips_exactly(cluster_weights(small_cnn(), 16, cluster_centroids_init=init), x, 16)


@pytest.mark.slow
def test_strip_after_training_predicts_exactly_and_leaves_the_model_alone(digits_small):
    x, y = digits_small
    clustered = compile_(cluster_weights(small_cnn(), 16))
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert_strips_exactly(clustered, x, 16)
    # Stripping does not touch the clustered model: it still trains.
    clustered.fit(x[:32], y[:32], epochs=1, verbose=0)


@pytest.mark.slow
def test_per_channel_keeps_k_values_per_output_channel(digits_small):
    x, y = digits_small
    clustered = compile_(cluster_weights(small_cnn(), 4, cluster_per_channel=True))
    clustered.fit(x, y, batch_size=64, epochs=1, verbose=0)
    stripped = strip_clustering(clustered)
    convs = [l for l in stripped.layers if isinstance(l, keras.layers.Conv2D)]
    for conv in convs:
        kernel = conv.kernel.numpy()
        assert unique_per_channel(kernel) <= 4
        assert len(np.unique(kernel)) > 4  # channels have their own centroids
    dense = [l for l in stripped.layers if isinstance(l, keras.layers.Dense)][0]
    assert len(np.unique(dense.kernel.numpy())) <= 4
    np.testing.assert_array_equal(
        clustered.predict(x[:32], verbose=0), stripped.predict(x[:32], verbose=0)
    )


def prune_kernels(model, fraction, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            k = layer.kernel.numpy()
            k[rng.random(k.shape) < fraction] = 0.0
            layer.kernel.assign(k)
    return model


@pytest.mark.parametrize("per_channel", [False, True])
def test_preserve_sparsity_keeps_zeros_through_training_and_strip(digits_small, per_channel):
    x, y = digits_small
    model = prune_kernels(small_cnn(), 0.5)
    zeros = {
        l.name: l.kernel.numpy() == 0 for l in model.layers if hasattr(l, "kernel")
    }
    # Four steps, eagerly: they run faster than tracing the step.
    clustered = compile_(
        cluster_weights(model, 8, preserve_sparsity=True, cluster_per_channel=per_channel),
        lr=5e-3, run_eagerly=True,
    )
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for w in wrappers(clustered):
        mask = zeros[w.layer.name]
        assert np.all(w.clustered_weights[0].numpy()[mask] == 0)  # variables stay zero
        assert np.all((w.sorted_centroids(0).numpy() == 0).any(axis=-1))  # zero centroid
    stripped = strip_clustering(clustered)
    for layer in stripped.layers:
        if hasattr(layer, "kernel"):
            kernel = layer.kernel.numpy()
            mask = zeros[layer.name]
            assert np.all(kernel[mask] == 0), layer.name
            # The zero centroid is one of the k values.
            count = unique_per_channel(kernel) if per_channel and kernel.ndim == 4 else len(
                np.unique(kernel)
            )
            assert count <= 8
    np.testing.assert_array_equal(
        clustered.predict(x[:32], verbose=0), stripped.predict(x[:32], verbose=0)
    )


@pytest.mark.slow
def test_sequence_model_trains_and_strips_with_k_values():
    rng = np.random.default_rng(0)
    tokens = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(30, 8)(tokens)
    x = keras.layers.MultiHeadAttention(2, 4)(x, x)
    x = keras.layers.LSTM(6, unroll=True)(x)
    model = keras.Model(tokens, keras.layers.Dense(2)(x))
    clustered = compile_(cluster_weights(model, 4))
    data = rng.integers(0, 30, size=(32, 4)).astype("int32")
    labels = rng.integers(0, 2, size=32).astype("int32")
    before = [w.cluster_centroids[0].numpy().copy() for w in wrappers(clustered)]
    clustered.fit(data, labels, batch_size=32, epochs=1, verbose=0)
    for w, c0 in zip(wrappers(clustered), before):
        assert not np.allclose(w.cluster_centroids[0].numpy(), c0), w.name
    stripped = strip_clustering(clustered)
    clustered_names = {w.layer.name: w.weight_names for w in wrappers(clustered)}
    checked = 0
    for layer in stripped.layers:
        if layer.name in clustered_names:
            for var in layer.weights:
                if "kernel" in var.path or "embeddings" in var.path:
                    if "bias" not in var.path:
                        assert len(np.unique(var.numpy())) <= 4, var.path
                        checked += 1
    assert checked == 1 + 4 + 2 + 1  # embedding, mha, lstm, dense
    np.testing.assert_allclose(
        clustered.predict(data, verbose=0), stripped.predict(data, verbose=0), rtol=0, atol=0
    )
