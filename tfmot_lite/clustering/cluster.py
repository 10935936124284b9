"""`cluster_weights`, `strip_clustering` and `cluster_scope`."""

import keras

from tfmot_lite.core import checks, graph
from tfmot_lite.clustering import registry
from tfmot_lite.clustering.config import CentroidInitialization, check_clustering_params
from tfmot_lite.clustering.wrapper import (
    ClusterWeights,
    per_channel_applies,
    weight_count_problems,
)
from tfmot_lite.core.weight_wrapper import carry_input_shape


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
    checks.check_graph_model(to_cluster, "cluster_weights")
    checks.check_finite_weights(to_cluster, "cluster_weights")

    if isinstance(to_cluster, (list, tuple)):
        _check_layers([(getattr(l, "name", repr(l)), l) for l in to_cluster], params)
        return [cluster_weights(layer, **params, **kwargs) for layer in to_cluster]

    if not graph.is_graph_model(to_cluster) and not isinstance(to_cluster, keras.Model):
        checks.check_layer_not_wrapped(to_cluster, ClusterWeights, "cluster_weights", "cluster")
        _check_layers([(getattr(to_cluster, "name", repr(to_cluster)), to_cluster)], params)
        copy = carry_input_shape(to_cluster, graph.copy_layer(to_cluster))
        if not registry.has_clusterable_weights(copy):
            return copy
        return ClusterWeights(copy, **params, **kwargs)

    checks.check_no_wrapper_kwargs(kwargs, "clustering")
    graph.check_rewritable(to_cluster)
    _check_built(to_cluster)
    _check_layers(list(graph.iter_layers(to_cluster)), params)
    _check_already_clustered(list(graph.iter_layers(to_cluster)), params)

    def replace(layer):
        if isinstance(layer, ClusterWeights) or not registry.has_clusterable_weights(layer):
            return graph.training_layer(layer)
        return ClusterWeights(layer, **params)

    return graph.rewrite(to_cluster, replace)


def _check_built(model):
    """Centroids start from the trained weights: the model must hold them."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its layers hold no weights "
            "to cluster (tfmot-lite initialises the centroids from them). "
            "Give the model an input (`keras.Input(shape)` as its first "
            "layer, or `input_shape=` on the first layer), or call "
            "`model.build(input_shape)`, train it, then cluster it."
        )


def _describe(settings):
    return ", ".join(
        f"{key}={getattr(value, 'value', value)!r}" for key, value in settings.items()
    )


def _settings(wrapper, params=None):
    """The settings `wrapper` was made with, or would be made with `params`."""
    source = params if params is not None else vars(wrapper)
    per_channel = (
        per_channel_applies(wrapper.layer, params["cluster_per_channel"])
        if params is not None
        else wrapper.cluster_per_channel
    )
    return dict(
        number_of_clusters=source["number_of_clusters"],
        cluster_centroids_init=source["cluster_centroids_init"],
        preserve_sparsity=source["preserve_sparsity"],
        cluster_per_channel=per_channel,
    )


def _check_already_clustered(named_layers, params):
    """Already-clustered layers are kept as they are (as in tfmot) when they
    were clustered with the requested settings; other settings would be
    silently ignored, so that is an error naming the layers and the fix."""
    differ = [
        f"{path}: {_describe(_settings(layer))}"
        for path, layer in named_layers
        if isinstance(layer, ClusterWeights)
        and _settings(layer) != _settings(layer, params)
    ]
    if differ:
        raise ValueError(
            "These layers are already clustered, with other settings than "
            "the ones requested, which would not be applied to them:\n"
            + "\n".join(f"  - {d}" for d in differ)
            + "\nStrip the old wrappers first: "
            "`cluster_weights(strip_clustering(model), ...)`."
        )


def _check_layers(named_layers, params):
    """Raises one ValueError listing every layer that cannot be clustered."""
    for _, layer in named_layers:
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "`to_cluster` must be a Keras layer, a list of layers or a "
                f"Sequential/Functional model. Received {layer!r}."
            )
    unknown = [
        f"{path} ({layer.__class__.__name__})"
        for path, layer in named_layers
        if not isinstance(layer, ClusterWeights) and not registry.is_supported(layer)
    ]
    if unknown:
        raise registry.unsupported_layer_error(unknown)
    problems = []
    for _, layer in named_layers:
        if isinstance(layer, ClusterWeights) or not layer.built:
            continue
        if not registry.has_clusterable_weights(layer):
            continue
        problems += weight_count_problems(
            layer,
            registry.clusterable_weights(layer),
            params["number_of_clusters"],
            per_channel_applies(layer, params["cluster_per_channel"]),
        )
    if problems:
        raise ValueError(
            "Too few weights to cluster:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nLower `number_of_clusters`, or cluster only the larger layers: "
            "`keras.models.clone_model(model, clone_function=lambda l: "
            "cluster_weights(l, k) if <l is large> else l)`."
        )


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
    return graph.strip(model, ClusterWeights)


def cluster_scope():
    """A custom-object scope naming the clustering wrapper (tfmot compatibility).

    tfmot-lite's objects are registered with Keras, so `load_model` needs no
    scope; this exists so that tfmot code using it keeps working.
    """
    return keras.saving.custom_object_scope({"ClusterWeights": ClusterWeights})
