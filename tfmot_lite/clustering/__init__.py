"""Weight clustering. The public API is `tfmot_lite.clustering.keras`."""

from tfmot_lite.clustering import keras  # noqa: F401
