"""Nearest-centroid assignment and the centroid lookup, with their gradients.

A clustered weight `W` is rebuilt at every forward pass from its centroids
`c` (`k` values, or `channels x k` per channel) and the assignment of each
weight to its nearest centroid:

    idx_i = argmin_j |w_i - c_j|        W_i = c[idx_i]

The assignment is recomputed from the current weights at every step, so a
weight that training moves past the midpoint of two centroids changes
cluster (tfmot does the same). The lookup's gradient is the one tfmot uses:

    dL/dc_j = sum_{i: idx_i = j} dL/dW_i     (every weight of a cluster
                                              pushes its shared centroid)
    dL/dw_i = dL/dW_i                        (straight-through estimator:
                                              Bengio et al., 2013)

so the centroids move with the summed gradient of their cluster while the
underlying weights keep training and may migrate to another cluster.

Speed: the wrapper hands the algorithm its centroids sorted ascending
(`ops.sort`, differentiable, on `k` values). For sorted 1-D centroids the
nearest one is found by binary search over the `k - 1` midpoints
`m_j = (c_j + c_{j+1}) / 2`: `idx = #{j : m_j < w}` (`ops.searchsorted`,
O(n log k), no `n x k` intermediate). The lookup's custom gradient sums the
upstream gradient per cluster with one weighted `bincount` instead of the
scatter-add that differentiating a gather would cost.
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.fast import ops as fast_ops


def _lookup_reference(weight, table, indices):
    """`table[indices]` with the straight-through term, plain autodiff.

    `weight - stop_gradient(weight)` is exactly zero in the forward pass and
    passes the upstream gradient to `weight` in the backward pass.
    """
    return ops.take(table, indices) + (weight - ops.stop_gradient(weight))


def _lookup_fused(weight, table, indices):
    """Same value and gradients as `_lookup_reference`, computed directly:
    one gather forward, one weighted bincount backward (TensorFlow only)."""
    size = table.shape[0]

    @ops.custom_gradient
    def lookup(weight, table):
        value = fast_ops.take_nonnegative(table, indices)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            d_table = ops.bincount(
                ops.reshape(indices, (-1,)),
                weights=ops.reshape(upstream, (-1,)),
                minlength=size,
            )
            return upstream, ops.cast(d_table, table.dtype)

        return value, grad

    return lookup(weight, table)


def lookup(weight, table, indices):
    """`table[indices]`, shaped like `indices`, with clustering gradients.

    Args:
      weight: the weight being clustered (receives the straight-through
        gradient).
      table: 1-D centroid values (receives the per-cluster gradient sums).
      indices: integer positions into `table`, shaped like `weight`.
    """
    weight = ops.convert_to_tensor(weight)
    table = ops.convert_to_tensor(table)
    indices = ops.convert_to_tensor(indices)
    if keras.backend.backend() == "tensorflow":
        return _lookup_fused(weight, table, indices)
    # JAX and PyTorch differentiate the reference form efficiently.
    return _lookup_reference(weight, table, indices)


def nearest_sorted(weight, sorted_centroids, training=False):
    """Index of the nearest of the ascending 1-D `sorted_centroids`, for
    every entry of `weight` (ties go to the smaller centroid). A training
    step searches with `fast_ops.searchsorted_left` (same integers)."""
    midpoints = (sorted_centroids[:-1] + sorted_centroids[1:]) * 0.5
    flat = ops.reshape(weight, (-1,))
    if training:
        indices = fast_ops.searchsorted_left(midpoints, flat)
    else:
        indices = ops.cast(ops.searchsorted(midpoints, flat, side="left"), "int32")
    return ops.reshape(indices, ops.shape(weight))


def pulling_indices(algorithm, weight, training):
    """`algorithm.get_pulling_indices(weight)`; for the default algorithm
    over 1-D centroids, a training step's search takes the fast path."""
    if training and type(algorithm) is ClusteringAlgorithm and len(
        algorithm.cluster_centroids.shape
    ) == 1:
        return nearest_sorted(weight, algorithm.cluster_centroids, training=True)
    return algorithm.get_pulling_indices(weight)


def nearest_by_distance(weight, centroids):
    """`argmin_j |w - c_j|` by broadcasting `weight[..., None]` against
    `centroids` (`(k,)`, or `(channels, k)` for a channels-last weight)."""
    distance = ops.abs(ops.expand_dims(weight, -1) - centroids)
    return ops.cast(ops.argmin(distance, axis=-1), "int32")


@keras.saving.register_keras_serializable(package="tfmot_lite")
class ClusteringAlgorithm:
    """Assigns weights to centroids and rebuilds the clustered weight.

    The default for every clustered weight of built-in layers; a
    `ClusterableLayer` may return a subclass from
    `get_clusterable_algorithm(weight_name)` to cluster a weight of another
    layout (tfmot's contract):

      * `get_pulling_indices(weight)`: integer indices into
        `self.cluster_centroids`, shaped like `weight`;
      * `get_clustered_weight(pulling_indices, original_weight)`: the
        clustered tensor (use `lookup` to keep the clustering gradients).

    A new instance is made at each call, over the layer's current centroids
    sorted ascending along their last axis (with the zero centroid pinned
    when sparsity is preserved); it holds no state of its own. Its config
    carries the centroids as a nested list, and `from_config` rebuilds them
    as an array, so `cls.from_config(a.get_config())` assigns as `a` does.

    Args:
      clusters_centroids: the centroids, `(k,)` (or another shape a
        subclass understands), sorted ascending.
      cluster_gradient_aggregation: accepted for tfmot compatibility; only
        'SUM' (the default) is implemented.
      data_format: accepted for tfmot compatibility; Keras 3 kernels are
        always channels-last.
    """

    def __init__(self, clusters_centroids, cluster_gradient_aggregation="SUM", data_format=None):
        aggregation = getattr(cluster_gradient_aggregation, "value", cluster_gradient_aggregation)
        if str(aggregation).upper() != "SUM":
            raise ValueError(
                "Only `cluster_gradient_aggregation='SUM'` is implemented: each "
                "centroid receives the sum of its weights' gradients. Received "
                f"{cluster_gradient_aggregation!r}."
            )
        self.cluster_centroids = clusters_centroids
        self.data_format = data_format

    def get_pulling_indices(self, weight):
        centroids = self.cluster_centroids
        if len(centroids.shape) == 1:
            return nearest_sorted(weight, centroids)
        return nearest_by_distance(weight, centroids)

    def get_clustered_weight(self, pulling_indices, original_weight):
        return lookup(original_weight, ops.reshape(self.cluster_centroids, (-1,)), pulling_indices)

    def get_config(self):
        return {
            "clusters_centroids": ops.convert_to_numpy(self.cluster_centroids).tolist(),
            "cluster_gradient_aggregation": "SUM",
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["clusters_centroids"] = np.asarray(config["clusters_centroids"], "float32")
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfmot_lite")
class ClusteringAlgorithmPerChannel(ClusteringAlgorithm):
    """One set of `k` centroids per output channel (the kernel's last axis).

    `cluster_centroids` has shape `(channels, k)`, each row ascending.
    Assignment counts the midpoints each weight exceeds within its channel,
    `idx = sum_j [w > m_cj]` (an `n x (k-1)` comparison); the lookup reads
    the flattened table at `channel * k + idx`.
    """

    def get_pulling_indices(self, weight):
        centroids = self.cluster_centroids
        midpoints = (centroids[:, :-1] + centroids[:, 1:]) * 0.5
        above = ops.greater(ops.expand_dims(weight, -1), midpoints)
        return ops.sum(ops.cast(above, "int32"), axis=-1)

    def get_clustered_weight(self, pulling_indices, original_weight):
        channels, k = self.cluster_centroids.shape
        offsets = ops.arange(channels, dtype="int32") * k
        flat_indices = pulling_indices + offsets
        return lookup(
            original_weight, ops.reshape(self.cluster_centroids, (-1,)), flat_indices
        )
