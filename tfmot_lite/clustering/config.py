"""Clustering options and their validation.

`CentroidInitialization` has tfmot's names and values, so configs written by
tfmot (`"cluster_centroids_init": "KMEANS_PLUS_PLUS"`) read back here.
"""

import enum


class CentroidInitialization(str, enum.Enum):
    """How the centroids of each clustered weight start.

    * `LINEAR`: evenly spaced over `[min(w), max(w)]`.
    * `RANDOM`: drawn uniformly from `[min(w), max(w)]`.
    * `DENSITY_BASED`: at quantiles of the weights, so that each centroid
      starts with the same share of the weights (dense regions get more).
    * `KMEANS_PLUS_PLUS`: k-means++ seeding (Arthur & Vassilvitskii, 2007):
      each next centroid is a weight drawn with probability proportional to
      its squared distance to the centroids chosen so far.
    """

    LINEAR = "LINEAR"
    RANDOM = "RANDOM"
    DENSITY_BASED = "DENSITY_BASED"
    KMEANS_PLUS_PLUS = "KMEANS_PLUS_PLUS"


def as_centroid_initialization(value):
    """`value` as a `CentroidInitialization`; ValueError naming the choices."""
    if isinstance(value, CentroidInitialization):
        return value
    if isinstance(value, str):
        try:
            return CentroidInitialization(value.upper())
        except ValueError:
            pass
    allowed = ", ".join(f"CentroidInitialization.{m.name}" for m in CentroidInitialization)
    raise ValueError(
        f"Unknown `cluster_centroids_init`: {value!r}. Use one of {allowed} "
        "(or their names as strings)."
    )


def min_clusters(preserve_sparsity):
    """Smallest valid `number_of_clusters`: with `preserve_sparsity` one
    centroid is pinned at zero, so two more are needed to cluster anything."""
    return 3 if preserve_sparsity else 2


def check_clustering_params(
    number_of_clusters, cluster_centroids_init, preserve_sparsity, cluster_per_channel
):
    """Validates `cluster_weights`' arguments; returns them normalised."""
    if isinstance(number_of_clusters, bool) or not isinstance(number_of_clusters, int):
        raise ValueError(
            "`number_of_clusters` must be an integer (the number of unique "
            f"values per weight). Received {number_of_clusters!r}."
        )
    if not isinstance(preserve_sparsity, bool):
        raise ValueError(
            f"`preserve_sparsity` must be True or False. Received {preserve_sparsity!r}."
        )
    if not isinstance(cluster_per_channel, bool):
        raise ValueError(
            "`cluster_per_channel` must be True or False. "
            f"Received {cluster_per_channel!r}."
        )
    lowest = min_clusters(preserve_sparsity)
    if number_of_clusters < lowest:
        reason = (
            " (one centroid is reserved for zero when preserve_sparsity=True)"
            if preserve_sparsity
            else ""
        )
        raise ValueError(
            f"`number_of_clusters` must be at least {lowest}{reason}. "
            f"Received number_of_clusters={number_of_clusters}."
        )
    return dict(
        number_of_clusters=number_of_clusters,
        cluster_centroids_init=as_centroid_initialization(cluster_centroids_init),
        preserve_sparsity=preserve_sparsity,
        cluster_per_channel=cluster_per_channel,
    )
