"""tfmot's `python.core.clustering.keras.experimental.cluster` module: the
names of `tfmot_lite.clustering.keras.experimental.cluster` (the same
functions; `cluster_weights` takes `preserve_sparsity` directly)."""

from tfmot_lite.clustering.keras.experimental.cluster import (  # noqa: F401
    __all__,
    cluster_scope,
    cluster_weights,
    strip_clustering,
)
