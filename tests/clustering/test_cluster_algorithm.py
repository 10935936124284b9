import keras
import numpy as np
import pytest
from keras import ops

from tfmot_lite.clustering import algorithm
from tfmot_lite.clustering.keras import ClusteringAlgorithm

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="gradients taken with tf.GradientTape"
)


def brute_force_nearest(w, c):
    return np.argmin(np.abs(w[..., None] - c), axis=-1)


@pytest.mark.parametrize("k", [2, 3, 16, 33])
def test_sorted_search_matches_brute_force_nearest(k):
    r = np.random.default_rng(k)
    w = r.normal(size=(7, 5, 11)).astype("float32")
    c = np.sort(r.normal(size=k)).astype("float32")
    idx = ops.convert_to_numpy(algorithm.nearest_sorted(w, c))
    assert idx.shape == w.shape
    chosen = np.abs(w - c[idx])
    best = np.abs(w - c[brute_force_nearest(w, c)])
    np.testing.assert_array_equal(chosen, best)  # nearest (ties may differ)


def test_sorted_search_handles_duplicate_centroids_and_extremes():
    c = np.array([-1.0, 0.0, 0.0, 2.0], "float32")
    w = np.array([-5.0, -0.6, -0.4, 0.0, 0.9, 1.1, 9.0], "float32")
    idx = ops.convert_to_numpy(algorithm.nearest_sorted(w, c))
    np.testing.assert_array_equal(c[idx], [-1.0, -1.0, 0.0, 0.0, 0.0, 2.0, 2.0])


def test_lookup_gradients_sum_per_cluster_and_pass_straight_through():
    w = tf.Variable([[0.1, 0.9], [1.1, -0.2], [0.05, 2.0]])
    c = tf.Variable([0.0, 1.0, 2.0])
    upstream = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    for fn in (algorithm.lookup, algorithm._lookup_reference):
        with tf.GradientTape() as tape:
            alg = ClusteringAlgorithm(c)
            idx = alg.get_pulling_indices(w)
            out = fn(w, c, idx)
            loss = tf.reduce_sum(out * upstream)
        np.testing.assert_array_equal(out.numpy(), [[0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])
        dw, dc = tape.gradient(loss, [w, c])
        np.testing.assert_array_equal(dw.numpy(), upstream.numpy())  # straight through
        np.testing.assert_array_equal(tf.convert_to_tensor(dc).numpy(), [1 + 4 + 5, 2 + 3, 6])


def test_per_channel_assigns_within_each_channel():
    r = np.random.default_rng(0)
    w = r.normal(size=(3, 3, 4, 5)).astype("float32") * np.arange(1, 6, dtype="float32")
    c = (np.sort(r.normal(size=(5, 6)), axis=-1) * np.arange(1, 6)[:, None]).astype("float32")
    alg = algorithm.ClusteringAlgorithmPerChannel(ops.convert_to_tensor(c))
    idx = ops.convert_to_numpy(alg.get_pulling_indices(w))
    for ch in range(5):
        chosen = np.abs(w[..., ch] - c[ch][idx[..., ch]])
        best = np.abs(w[..., ch] - c[ch][brute_force_nearest(w[..., ch], c[ch])])
        np.testing.assert_allclose(chosen, best, rtol=0, atol=0)
    out = ops.convert_to_numpy(alg.get_clustered_weight(idx, w))
    for ch in range(5):
        assert set(np.unique(out[..., ch])) <= set(c[ch])


def test_only_sum_aggregation_is_accepted():
    with pytest.raises(ValueError, match="SUM"):
        ClusteringAlgorithm(np.zeros(3, "float32"), cluster_gradient_aggregation="AVG")
