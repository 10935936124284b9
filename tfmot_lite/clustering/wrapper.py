"""`ClusterWeights`: a layer whose kernels are rebuilt from shared centroids.

State per clustered weight, saved with the model:

* `<name>_cluster_centroids`, trainable: `(k,)`, or `(channels, k)` per
  channel;
* `<name>_sparsity_mask`, with `preserve_sparsity` only: 1 where the weight
  was non-zero when clustering began.

The wrapped layer keeps its own variable for each clustered weight (the
"original" weights that the straight-through gradient trains). At every
call the layer sees instead

    W = c[nearest(w, c)]                  (* mask with preserve_sparsity)

computed by a `ClusteringAlgorithm` over the centroids sorted ascending.
With `preserve_sparsity` centroid 0 is pinned at exactly zero (it is
multiplied by 0 before use, so it neither moves nor passes gradient) and the
mask keeps the pruned weights at zero and their gradients at zero.
`strip_clustering` writes `W` as computed in inference into the layer's
variables, so the stripped layer computes exactly what the wrapper did.

Centroids are initialised (k-means++ or another `CentroidInitialization`)
once, when the wrapper is first built on data. Restoring a wrapper from its
build config (`keras.models.load_model`, `graph.copy_layer`) only creates the
state variables, which are then assigned the saved values.
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.clustering import registry
from tfmot_lite.clustering.algorithm import (
    ClusteringAlgorithm,
    ClusteringAlgorithmPerChannel,
    pulling_indices,
)
from tfmot_lite.clustering.centroids import (
    initial_centroids,
    initial_centroids_per_channel,
)
from tfmot_lite.clustering.config import CentroidInitialization, check_clustering_params
from tfmot_lite.core import checks, techniques
from tfmot_lite.core.weight_wrapper import WeightTransformWrapper


def weight_count_problems(layer, named_weights, number_of_clusters, per_channel):
    """Reasons why `layer`'s weights are too few for `number_of_clusters`."""
    problems = []
    for name, weight in named_weights:
        shape = tuple(weight.shape)
        size = int(np.prod(shape))
        count = size // shape[-1] if per_channel else size
        if number_of_clusters > count:
            where = "per output channel " if per_channel else ""
            problems.append(
                f"{layer.name}: '{name}' has {count} weights {where}(shape "
                f"{shape}), fewer than number_of_clusters={number_of_clusters}"
            )
    return problems


def per_channel_applies(layer, cluster_per_channel):
    """Per-channel clustering applies to Conv2D only (ignored elsewhere)."""
    return bool(cluster_per_channel) and isinstance(layer, keras.layers.Conv2D)


@keras.saving.register_keras_serializable(package="tfmot_lite")
class ClusterWeights(WeightTransformWrapper):
    """Wraps a layer and clusters its kernels during training.

    Build it with `cluster_weights`; train as usual (no callback needed);
    remove it with `strip_clustering`.

    Args:
      layer: the layer to cluster (see `ClusterableLayer` for custom ones).
      number_of_clusters: unique values per clustered weight (per output
        channel with `cluster_per_channel`).
      cluster_centroids_init: a `CentroidInitialization`.
      preserve_sparsity: keep exactly-zero weights at zero.
      cluster_per_channel: one set of centroids per output channel of a
        Conv2D kernel; ignored for other layers, as in tfmot.
    """

    technique = techniques.CLUSTERING

    def __init__(
        self,
        layer,
        number_of_clusters,
        cluster_centroids_init=CentroidInitialization.KMEANS_PLUS_PLUS,
        preserve_sparsity=False,
        cluster_per_channel=False,
        **kwargs,
    ):
        params = check_clustering_params(
            number_of_clusters, cluster_centroids_init, preserve_sparsity, cluster_per_channel
        )
        if isinstance(layer, ClusterWeights):
            raise ValueError(f"Layer '{layer.name}' is already clustered.")
        if isinstance(layer, keras.layers.Layer):
            if not registry.is_supported(layer):
                raise registry.unsupported_layer_error(
                    [f"{layer.name} ({layer.__class__.__name__})"]
                )
            if not registry.has_clusterable_weights(layer):
                raise ValueError(
                    f"Layer '{layer.name}' ({layer.__class__.__name__}) has no "
                    "weights that tfmot_lite clusters; use it unwrapped."
                )
        super().__init__(layer, **kwargs)
        self.number_of_clusters = params["number_of_clusters"]
        self.cluster_centroids_init = params["cluster_centroids_init"]
        self.preserve_sparsity = params["preserve_sparsity"]
        self.cluster_per_channel = per_channel_applies(layer, params["cluster_per_channel"])

    @classmethod
    def _name_prefix(cls):
        return "cluster"

    def target_weights(self):
        return [weight for _, weight in registry.clusterable_weights(self.layer)]

    def build_from_config(self, config):
        # Keras assigns the saved centroids and masks right after: create
        # the variables without computing initial centroids.
        self._restoring = True
        try:
            super().build_from_config(config)
        finally:
            self._restoring = False

    def _initial_values(self, weight):
        """The weight's values, from which the first centroids are computed."""
        try:
            return ops.convert_to_numpy(weight)
        except (NotImplementedError, TypeError, ValueError) as e:
            raise ValueError(
                f"Layer '{self.layer.name}' is being built inside a traced "
                "training step (its model had no input shape), where its "
                "centroids cannot be computed from its weights. Build the "
                "model before clustering: start it with `keras.Input(shape)` "
                "or give its first layer `input_shape=`."
            ) from e

    def build_transform(self):
        named = registry.clusterable_weights(self.layer)
        problems = weight_count_problems(
            self.layer, named, self.number_of_clusters, self.cluster_per_channel
        )
        if problems:
            raise checks.problems_error(
                "Too few weights to cluster", problems,
                "Lower `number_of_clusters`, or leave these layers unclustered.",
            )
        restoring = getattr(self, "_restoring", False)
        rng = None if restoring else np.random.default_rng(np.random.randint(2**31 - 1))
        initialise = (
            initial_centroids_per_channel if self.cluster_per_channel else initial_centroids
        )
        default = (
            ClusteringAlgorithmPerChannel if self.cluster_per_channel else ClusteringAlgorithm
        )
        self.weight_names = [name for name, _ in named]
        self.clustered_weights = [weight for _, weight in named]
        self.cluster_centroids = []
        self.sparsity_masks = []
        self._algorithm_classes = []
        for name, weight in named:
            values = None if restoring else self._initial_values(weight)
            shape = tuple(weight.shape)
            k = self.number_of_clusters
            self.cluster_centroids.append(self._state(
                f"{name}_cluster_centroids",
                (shape[-1], k) if self.cluster_per_channel else (k,),
                weight.dtype,
                None if restoring else initialise(
                    values, k, self.cluster_centroids_init, self.preserve_sparsity, rng
                ),
            ))
            if self.preserve_sparsity:
                self.sparsity_masks.append(self._state(
                    f"{name}_sparsity_mask", shape, weight.dtype,
                    None if restoring else values != 0, trainable=False,
                ))
            self._algorithm_classes.append(registry.algorithm_for(self.layer, name) or default)
        # Centroid 0 is the zero centroid with preserve_sparsity.
        pin = np.ones((self.number_of_clusters,), dtype="float32")
        pin[0] = 0.0
        self._zero_pin = pin

    def _state(self, name, shape, dtype, value, trainable=True):
        """A variable of the wrapper, set to `value` (left at zero when None:
        a restored value follows)."""
        variable = self.add_weight(
            name=name, shape=shape, initializer="zeros", dtype=dtype, trainable=trainable
        )
        if value is not None:
            variable.assign(np.asarray(value).astype(variable.dtype))
        return variable

    # -- the forward pass -----------------------------------------------------

    def sorted_centroids(self, i):
        """Centroids of weight `i` as the layer uses them: ascending along
        the last axis, the zero centroid pinned with preserve_sparsity."""
        centroids = self.cluster_centroids[i]
        if self.preserve_sparsity:
            centroids = centroids * ops.cast(self._zero_pin, centroids.dtype)
        return ops.sort(centroids, axis=-1)

    def algorithm(self, i):
        """The clustering algorithm of weight `i` over its current centroids."""
        return self._algorithm_classes[i](self.sorted_centroids(i))

    def transformed_weights(self, training):
        values = []
        for i, weight in enumerate(self.clustered_weights):
            algorithm = self.algorithm(i)
            indices = pulling_indices(algorithm, weight, bool(training))
            clustered = algorithm.get_clustered_weight(indices, weight)
            if self.preserve_sparsity:
                clustered = clustered * self.sparsity_masks[i]
            values.append(clustered)
        return values

    def pulling_indices(self):
        """The current cluster of every weight (indices into the sorted
        centroids), one integer array per clustered weight."""
        return [
            ops.convert_to_numpy(self.algorithm(i).get_pulling_indices(w))
            for i, w in enumerate(self.clustered_weights)
        ]

    # -- serialization ------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "number_of_clusters": self.number_of_clusters,
                "cluster_centroids_init": self.cluster_centroids_init.value,
                "preserve_sparsity": self.preserve_sparsity,
                "cluster_per_channel": self.cluster_per_channel,
            }
        )
        return config
