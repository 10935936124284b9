"""tfmot's `clustering.keras.experimental.cluster` module.

`cluster_weights` here is `tfmot_lite.clustering.keras.cluster_weights`,
which takes `preserve_sparsity` (and `cluster_per_channel`) directly;
`strip_clustering` and `cluster_scope` are the same functions too.
"""

from tfmot_lite.clustering.cluster import cluster_scope, cluster_weights, strip_clustering

__all__ = ["cluster_scope", "cluster_weights", "strip_clustering"]
