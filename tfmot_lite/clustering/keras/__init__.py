"""Public clustering API, with the names and signatures of `tfmot.clustering.keras`
(`experimental.cluster` holds tfmot's experimental module of the same name).

```python
import tfmot_lite as tfmot

clustered = tfmot.clustering.keras.cluster_weights(
    model,
    number_of_clusters=16,
    cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS,
)
clustered.compile(...)
clustered.fit(x, y)  # no callback needed
plain = tfmot.clustering.keras.strip_clustering(clustered)
```
"""

from tfmot_lite.clustering.algorithm import ClusteringAlgorithm
from tfmot_lite.clustering.callbacks import ClusteringSummaries
from tfmot_lite.clustering.cluster import cluster_scope, cluster_weights, strip_clustering
from tfmot_lite.clustering.config import CentroidInitialization
from tfmot_lite.clustering.registry import ClusterableLayer
from tfmot_lite.clustering.wrapper import ClusterWeights

__all__ = [
    "CentroidInitialization",
    "ClusterWeights",
    "ClusterableLayer",
    "ClusteringAlgorithm",
    "ClusteringSummaries",
    "cluster_scope",
    "cluster_weights",
    "strip_clustering",
]

from tfmot_lite.clustering.keras import experimental  # noqa: E402,F401
