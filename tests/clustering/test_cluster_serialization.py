"""Clustering state round-trips: algorithms through their config, wrappers
through `model.save` without recomputing their centroids."""

import keras
import numpy as np
import pytest
from keras import ops

from tfmot_lite.core import graph
from tfmot_lite.clustering import algorithm, centroids, wrapper
from tfmot_lite.clustering.keras import ClusteringAlgorithm, ClusterWeights, cluster_weights


@pytest.mark.parametrize(
    "cls, values",
    [
        (ClusteringAlgorithm, [-1.0, 0.0, 0.5, 2.0]),
        (algorithm.ClusteringAlgorithmPerChannel, [[-1.0, 0.0, 1.0], [-2.0, 0.5, 3.0]]),
    ],
)
def test_algorithm_round_trips_with_its_centroids(cls, values):
    original = cls(np.asarray(values, "float32"))
    config = original.get_config()
    restored = cls.from_config(config)
    assert restored.get_config() == config
    np.testing.assert_array_equal(
        ops.convert_to_numpy(restored.cluster_centroids), np.asarray(values, "float32")
    )
    weight = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(restored.get_pulling_indices(weight)),
        ops.convert_to_numpy(original.get_pulling_indices(weight)),
    )
    by_keras = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(by_keras) is cls and by_keras.get_config() == config


def _forbid_initialisation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("centroids were recomputed")

    monkeypatch.setattr(wrapper, "initial_centroids", refuse)
    monkeypatch.setattr(wrapper, "initial_centroids_per_channel", refuse)


@pytest.mark.parametrize("options", [
    dict(cluster_centroids_init="KMEANS_PLUS_PLUS"),
    dict(cluster_per_channel=True, preserve_sparsity=True),
])
def test_loading_restores_centroids_without_recomputing_them(tmp_path, monkeypatch, options):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))
    clustered = cluster_weights(model, 4, **options)
    for layer in clustered.layers:  # centroids that no initialisation yields
        if isinstance(layer, ClusterWeights):
            for c in layer.cluster_centroids:
                c.assign(c + 0.125)
    path = str(tmp_path / "clustered.keras")
    clustered.save(path)

    _forbid_initialisation(monkeypatch)
    loaded = keras.models.load_model(path)
    copied = graph.rewrite(clustered, lambda layer: layer)  # graph.copy_layer
    for other in (loaded, copied):
        pairs = [
            (a, b) for a, b in zip(clustered.layers, other.layers) if isinstance(a, ClusterWeights)
        ]
        assert len(pairs) == 2
        for a, b in pairs:
            for va, vb in zip(a.weights, b.weights):
                np.testing.assert_array_equal(va.numpy(), vb.numpy())
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), clustered.predict(x, verbose=0))


def test_a_new_wrapper_still_initialises_its_centroids(monkeypatch):
    calls = []
    real = centroids.initial_centroids

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(wrapper, "initial_centroids", counting)
    layer = cluster_weights(keras.layers.Dense(4), 3)
    layer(np.ones((1, 5), "float32"))
    assert calls == [1]
    assert len(np.unique(layer.cluster_centroids[0].numpy())) == 3
