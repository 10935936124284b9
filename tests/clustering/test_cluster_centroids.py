import numpy as np
import pytest

from tfmot_lite.clustering import centroids
from tfmot_lite.clustering.keras import CentroidInitialization as Init


def rng(seed=0):
    return np.random.default_rng(seed)


def test_linear_is_evenly_spaced_over_the_range():
    w = rng().normal(size=500)
    c = centroids.initial_centroids(w, 5, Init.LINEAR)
    np.testing.assert_allclose(c, np.linspace(w.min(), w.max(), 5))


def test_random_is_uniform_within_the_range_and_seeded():
    w = rng().normal(size=500)
    a = centroids.initial_centroids(w, 64, Init.RANDOM, rng=rng(1))
    b = centroids.initial_centroids(w, 64, Init.RANDOM, rng=rng(1))
    c = centroids.initial_centroids(w, 64, Init.RANDOM, rng=rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert w.min() <= a.min() and a.max() <= w.max()
    # Uniform over the range, not following the (normal) weights: about as
    # many centroids in the outer halves of the range as in the inner ones.
    lo, hi = w.min(), w.max()
    outer = np.mean((a < lo + (hi - lo) / 4) | (a > hi - (hi - lo) / 4))
    assert 0.3 < outer < 0.7


def test_density_based_puts_more_centroids_where_weights_are_dense():
    # 90% of the weights near 0, 10% spread over [-1, 1].
    r = rng()
    w = np.concatenate([r.normal(0, 0.01, 900), r.uniform(-1, 1, 100)])
    dense = centroids.initial_centroids(w, 10, Init.DENSITY_BASED)
    linear = centroids.initial_centroids(w, 10, Init.LINEAR)
    near_zero = lambda c: np.sum(np.abs(c) < 0.05)  # noqa: E731
    assert near_zero(dense) >= 7
    assert near_zero(linear) <= 1
    # Each centroid starts with about 1/k of the weights.
    np.testing.assert_allclose(dense, np.quantile(w, (np.arange(10) + 0.5) / 10))


def test_kmeans_plus_plus_finds_separated_clusters():
    r = rng()
    means = np.array([-3.0, -1.0, 0.5, 4.0])
    w = np.concatenate([m + r.normal(0, 0.05, 200) for m in means])
    for seed in range(5):
        c = centroids.initial_centroids(w, 4, Init.KMEANS_PLUS_PLUS, rng=rng(seed))
        # One centroid per cluster, each a data point of that cluster.
        assert np.all(np.abs(np.sort(c) - means) < 0.3)
        assert all(np.isclose(w, x).any() for x in c)


def test_kmeans_plus_plus_with_fewer_distinct_values_than_clusters():
    w = np.array([1.0, 1.0, 2.0, 2.0, 2.0])
    c = centroids.initial_centroids(w, 4, Init.KMEANS_PLUS_PLUS, rng=rng())
    assert c.shape == (4,)
    assert set(np.unique(c)) == {1.0, 2.0}


@pytest.mark.parametrize("method", list(Init))
def test_preserve_sparsity_reserves_zero_first_and_splits_signs(method):
    r = rng()
    w = np.concatenate([-np.abs(r.normal(size=300)), np.abs(r.normal(size=100)), np.zeros(600)])
    c = centroids.initial_centroids(w, 9, method, preserve_sparsity=True, rng=r)
    assert c.shape == (9,) and c[0] == 0.0
    rest = c[1:]
    # 8 non-zero centroids split 3:1 like the weights' signs.
    assert np.sum(rest < 0) == 6 and np.sum(rest > 0) == 2


def test_preserve_sparsity_gives_each_nonempty_side_a_centroid():
    w = np.concatenate([np.full(999, 0.5), [-0.5]])
    c = centroids.initial_centroids(w, 4, Init.LINEAR, preserve_sparsity=True)
    assert c[0] == 0.0 and np.sum(c < 0) == 1 and np.sum(c > 0) == 2


def test_per_channel_initialises_each_output_channel_from_its_own_weights():
    r = rng()
    kernel = r.normal(size=(3, 3, 4, 5)) * np.arange(1, 6)  # channel scales differ
    c = centroids.initial_centroids_per_channel(kernel, 6, Init.LINEAR)
    assert c.shape == (5, 6)
    for ch in range(5):
        np.testing.assert_allclose(c[ch, [0, -1]], [kernel[..., ch].min(), kernel[..., ch].max()])
