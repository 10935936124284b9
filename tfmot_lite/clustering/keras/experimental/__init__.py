"""tfmot's experimental clustering namespace.

tfmot's sparsity-preserving clustering guide imports
`tensorflow_model_optimization.python.core.clustering.keras.experimental.cluster`
for `cluster_weights(..., preserve_sparsity=True)`; the same module is
`tfmot_lite.clustering.keras.experimental.cluster`.
"""

from tfmot_lite.clustering.keras.experimental import cluster  # noqa: F401
