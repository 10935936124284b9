"""tfmot's `python.core.keras.compat` path, which the pruning, clustering
and QAT examples import `keras` from. tfmot gives Keras 2 (`tf_keras`)
there; tfmot_lite works on Keras 3, so `keras` is Keras 3 itself."""

import keras  # noqa: F401

__all__ = ["keras"]
