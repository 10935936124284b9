"""tfmot's `python.core.clustering.keras.experimental` package path, as the
PCQAT and sparsity-preserving clustering guides import it:
`from tfmot_lite.python.core.clustering.keras.experimental import cluster`."""

from tfmot_lite.python.core.clustering.keras.experimental import cluster  # noqa: F401
