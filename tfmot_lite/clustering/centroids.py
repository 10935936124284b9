"""Initial centroids for a weight, by each `CentroidInitialization`.

Runs once per clustered weight when its wrapper is built, on NumPy copies of
the values, so it is the same on every backend and adds nothing to the
training step. Each method maps a 1-D array `v` of weights and a count `k`
to `k` centroids:

* LINEAR: `linspace(min v, max v, k)`.
* RANDOM: `k` draws from `Uniform(min v, max v)`.
* DENSITY_BASED: the inverse empirical CDF at the middle of `k` equal
  probability slices, `c_i = quantile(v, (i + 1/2) / k)`: each centroid
  starts with `1/k` of the weights, so dense regions get more centroids
  (tfmot interpolates the CDF on a 30-point grid for the same effect).
* KMEANS_PLUS_PLUS: greedy k-means++ (Arthur & Vassilvitskii, "k-means++:
  the advantages of careful seeding", 2007): the first centroid is a random
  weight; each next one is the best, by resulting potential
  `sum_i min_j (v_i - c_j)^2`, of `2 + floor(ln k)` weights drawn with
  probability `D(v)^2 / sum D^2` (D: distance to the nearest centroid so far).

Sparsity-preserving initialisation (`preserve_sparsity=True`) reserves a
centroid at exactly 0 and places it first; the other `k - 1` are shared
between the negative and the positive weights in proportion to their counts
(each non-empty side gets at least one when `k - 1 >= 2`) and initialised on
each side separately, as tfmot does.
"""

import math

import numpy as np

from tfmot_lite.clustering.config import CentroidInitialization


def _linear(values, k, rng):
    return np.linspace(values.min(), values.max(), k)


def _random(values, k, rng):
    return np.sort(rng.uniform(values.min(), values.max(), size=k))


def _density_based(values, k, rng):
    return np.quantile(values, (np.arange(k) + 0.5) / k)


def _kmeans_plus_plus(values, k, rng):
    n = values.shape[0]
    retries = 2 + int(math.log(k))
    centroids = [values[rng.integers(n)]]
    d2 = (values - centroids[0]) ** 2
    for _ in range(1, k):
        cumulative = np.cumsum(d2)
        total = cumulative[-1]
        if total <= 0.0:
            # Fewer distinct values than centroids: repeat one.
            centroids.append(centroids[-1])
            continue
        picks = np.searchsorted(cumulative, rng.uniform(0.0, total, size=retries))
        candidates = values[np.minimum(picks, n - 1)]
        new_d2 = np.minimum(d2[None, :], (values[None, :] - candidates[:, None]) ** 2)
        best = int(np.argmin(new_d2.sum(axis=1)))
        centroids.append(candidates[best])
        d2 = new_d2[best]
    return np.sort(np.asarray(centroids))


_METHODS = {
    CentroidInitialization.LINEAR: _linear,
    CentroidInitialization.RANDOM: _random,
    CentroidInitialization.DENSITY_BASED: _density_based,
    CentroidInitialization.KMEANS_PLUS_PLUS: _kmeans_plus_plus,
}


def _split_counts(negatives, positives, k):
    """How many of `k` centroids go to the negative and positive weights."""
    total = negatives + positives
    if total == 0:
        return 0, 0
    k_neg = int(round(k * negatives / total))
    if k >= 2:
        if negatives and k_neg == 0:
            k_neg = 1
        if positives and k_neg == k:
            k_neg = k - 1
    return k_neg, k - k_neg


def _on_interval(method, values, k, rng):
    if k == 0:
        return np.zeros((0,))
    if values.size == 0:
        return np.zeros((k,))
    return method(values, k, rng)


def initial_centroids(values, k, method, preserve_sparsity=False, rng=None):
    """`k` initial centroids for the weights `values` (any shape), float64.

    With `preserve_sparsity`, index 0 holds the zero centroid.
    """
    method = _METHODS[CentroidInitialization(method)]
    rng = rng if rng is not None else np.random.default_rng(0)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not preserve_sparsity:
        return method(values, k, rng)
    negative, positive = values[values < 0], values[values > 0]
    k_neg, k_pos = _split_counts(negative.size, positive.size, k - 1)
    if negative.size + positive.size == 0:
        k_neg, k_pos = 0, k - 1
    return np.concatenate(
        [
            [0.0],
            _on_interval(method, negative, k_neg, rng),
            _on_interval(method, positive, k_pos, rng),
        ]
    )


def initial_centroids_per_channel(kernel, k, method, preserve_sparsity=False, rng=None):
    """`(channels, k)` centroids, one set per output channel (last axis)."""
    kernel = np.asarray(kernel)
    channels = kernel.shape[-1]
    per_channel = kernel.reshape(-1, channels)
    rng = rng if rng is not None else np.random.default_rng(0)
    return np.stack(
        [
            initial_centroids(per_channel[:, c], k, method, preserve_sparsity, rng)
            for c in range(channels)
        ]
    )
