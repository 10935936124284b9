"""`cluster_weights`, `strip_clustering` and `cluster_scope`."""

from tfmot_lite.clustering import registry
from tfmot_lite.clustering.config import CentroidInitialization, check_clustering_params
from tfmot_lite.clustering.wrapper import (
    ClusterWeights,
    per_channel_applies,
    weight_count_problems,
)
from tfmot_lite.core import checks, entry, graph, techniques


def cluster_weights(
    to_cluster,
    number_of_clusters,
    cluster_centroids_init=CentroidInitialization.KMEANS_PLUS_PLUS,
    preserve_sparsity=False,
    cluster_per_channel=False,
    **kwargs,
):
    """Prepares a layer or model for weight clustering (tfmot's API).

    Every layer with clusterable kernels (see `ClusterableLayer` for custom
    layers) is wrapped in `ClusterWeights`, whose centroids are initialised
    from the layer's current weights; other layers are copied unchanged.
    Fine-tune the result as usual (no callback is needed) and remove the
    wrappers with `strip_clustering` before export. Cluster a trained model:
    the centroids start from its weights.

    Args:
      to_cluster: a layer, a list of layers, or a Sequential/Functional model
        (models nested inside it are clustered too).
      number_of_clusters: unique values per clustered weight, >= 2 (>= 3 with
        `preserve_sparsity`, which reserves a zero centroid).
      cluster_centroids_init: a `CentroidInitialization` (or its name).
      preserve_sparsity: keep the weights that are exactly zero at zero
        through training and stripping (cluster a pruned, stripped model).
      cluster_per_channel: one set of `number_of_clusters` centroids per
        output channel of each Conv2D kernel (ignored for other layers).
      **kwargs: passed to the `ClusterWeights` wrapper (a layer only).

    Returns:
      A new layer or model; `to_cluster` is not modified.

    Raises:
      ValueError: naming the argument or every offending layer, before
        anything is built.
    """
    params = check_clustering_params(
        number_of_clusters, cluster_centroids_init, preserve_sparsity, cluster_per_channel
    )
    return entry.wrap(to_cluster, _ClusterPlan(params), **kwargs)


class _ClusterPlan(entry.Plan):
    """`cluster_weights` for the entry path (`core/entry.py`)."""

    technique = techniques.CLUSTERING
    entry = "cluster_weights"
    argument = "to_cluster"
    gerund = "clustering"
    needs_inputs = True
    needs_inputs_why = (
        ", so its layers hold no weights to cluster (tfmot-lite initialises "
        "the centroids from them; train it, then cluster it)"
    )

    def __init__(self, params):
        self.params = params
        self.clustered = {}

    def check_layers(self, named_layers):
        """One error for the layers we cannot classify, one for the weights
        too small for `number_of_clusters`."""
        unknown, problems = [], []
        for path, layer in named_layers:
            if entry.already_wrapped(layer, self):
                continue
            if not registry.is_supported(layer):
                unknown.append(f"{path} ({layer.__class__.__name__})")
                continue
            clustered = self.clustered[id(layer)] = registry.has_clusterable_weights(layer)
            if clustered and layer.built:
                problems += weight_count_problems(
                    layer,
                    registry.clusterable_weights(layer),
                    self.params["number_of_clusters"],
                    per_channel_applies(layer, self.params["cluster_per_channel"]),
                )
        if unknown:
            raise registry.unsupported_layer_error(unknown)
        if problems:
            raise checks.problems_error(
                "Too few weights to cluster", problems,
                "Lower `number_of_clusters`, or cluster only the larger layers: "
                "`keras.models.clone_model(model, clone_function=lambda l: "
                "cluster_weights(l, k) if <l is large> else l)`.",
            )

    def settings(self, wrapper):
        return dict(
            number_of_clusters=wrapper.number_of_clusters,
            cluster_centroids_init=wrapper.cluster_centroids_init,
            preserve_sparsity=wrapper.preserve_sparsity,
            cluster_per_channel=wrapper.cluster_per_channel,
        )

    def requested(self, wrapper):
        return dict(
            self.params,
            cluster_per_channel=per_channel_applies(
                wrapper.layer, self.params["cluster_per_channel"]
            ),
        )

    def wrap_layer(self, copy, original, **kwargs):
        if not self.clustered[id(original)]:
            return copy
        return ClusterWeights(copy, **self.params, **kwargs)

    def replace(self, copy, original):
        if not self.clustered.get(id(original)):
            return graph.training_layer(copy)
        return ClusterWeights(copy, **self.params)


def strip_clustering(model):
    """Returns a copy of `model` with every clustering wrapper removed.

    Each wrapped layer is replaced by the layer it wrapped, its clustered
    weights set to the clustered values (`centroids[nearest]`, masked with
    preserve_sparsity), so the result is a plain Keras model (nested models
    included) that predicts exactly as the clustered model does in
    inference, with at most `number_of_clusters` unique values per clustered
    weight (per output channel with `cluster_per_channel`). `model` itself
    is not modified.
    """
    return techniques.strip(model, techniques.CLUSTERING)


def cluster_scope():
    """A custom-object scope naming `ClusterWeights` (tfmot compatibility;
    loading needs no scope)."""
    return entry.compat_scope(ClusterWeights)
