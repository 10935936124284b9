import keras
import numpy as np
import pytest
from tfmot_lite.example_models import build_cnn as small_cnn

from tfmot_lite.clustering.keras import (
    ClusteringSummaries,
    ClusterWeights,
    cluster_scope,
    cluster_weights,
    strip_clustering,
)


def wrappers(model):
    return [l for l in model.layers if isinstance(l, ClusterWeights)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        dict(number_of_clusters=8),
        dict(number_of_clusters=4, cluster_per_channel=True, preserve_sparsity=True,
             cluster_centroids_init="DENSITY_BASED"),
    ],
)
def test_keras_round_trip_without_custom_objects(tmp_path, digits32, options):
    (x, y), _ = digits32
    x, y = x[:64], y[:64]
    clustered = cluster_weights(small_cnn(), **options)
    clustered.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = str(tmp_path / "clustered.keras")
    clustered.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(wrappers(clustered), wrappers(loaded)):
        ca, cb = a.get_config(), b.get_config()
        assert ca.pop("layer")["config"] == cb.pop("layer")["config"]
        assert ca == cb
        for va, vb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())
    np.testing.assert_array_equal(clustered.predict(x, verbose=0), loaded.predict(x, verbose=0))
    # The loaded model strips to the same plain model.
    np.testing.assert_array_equal(
        strip_clustering(loaded).predict(x, verbose=0), clustered.predict(x, verbose=0)
    )
    # ... and keeps training (the optimizer state was saved too).
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)


def test_cluster_scope_loads_too(tmp_path):
    model = cluster_weights(keras.Sequential([keras.Input((5,)), keras.layers.Dense(8)]), 4)
    path = str(tmp_path / "m.keras")
    model.save(path)
    with cluster_scope():
        loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[0], ClusterWeights)


def test_stripped_model_round_trips_as_plain_keras(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    stripped = strip_clustering(
        cluster_weights(keras.Sequential([keras.Input((5,)), keras.layers.Dense(8)]), 4)
    )
    path = str(tmp_path / "plain.keras")
    stripped.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is keras.layers.Dense
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), stripped.predict(x, verbose=0))


def test_clustering_summaries_write_events(tmp_path, tiny_data):
    x, y = tiny_data
    model = cluster_weights(
        keras.Sequential([keras.Input((12,)), keras.layers.Dense(8), keras.layers.Dense(3)]), 4
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    log_dir = tmp_path / "logs"
    model.fit(
        x, y, epochs=1, batch_size=32, verbose=0,
        callbacks=[ClusteringSummaries(str(log_dir), cluster_update_freq=1)],
    )
    events = list(log_dir.rglob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 0
    from tfmot_lite.clustering.callbacks import clustering_metrics

    metrics = clustering_metrics(wrappers(model))
    name = f"clustering/{model.layers[0].layer.name}/kernel"
    assert 1 <= metrics[f"{name}/clusters_in_use"] <= 4
    assert metrics[f"{name}/centroids"].shape == (4,)
    with pytest.raises(ValueError, match="log_dir"):
        ClusteringSummaries("")
    with pytest.raises(ValueError, match="cluster_update_freq"):
        ClusteringSummaries("logs", cluster_update_freq=0)
