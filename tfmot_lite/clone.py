"""`clone_model`: Keras' per-layer cloning, reaching inside subclassed layers.

tfmot's guides optimize chosen layers with `keras.models.clone_model(model,
clone_function=...)`: the function returns `prune_low_magnitude(layer)`,
`quantize_annotate_layer(layer)`, ... for the layers to optimize and the
layer itself for the others. Keras' `clone_model` only sees the nodes of a
Functional or Sequential graph, so the layers inside a user's subclassed
block or a KerasHub model never reach the function. `tfmot_lite.clone_model`
takes the same arguments and hands the function every layer tfmot-lite's own
entry points see (`core/sublayers.py`), the model itself left untouched.
"""

import keras

from tfmot_lite.core import graph


def clone_model(model, clone_function):
    """A copy of `model` in which each layer is `clone_function(layer)`.

    As `keras.models.clone_model(model, clone_function=...)`, and the
    function also receives the layers held inside subclassed layers and
    KerasHub models (`TransformerEncoder`'s attention and dense layers, say).

    Args:
      model: a Sequential or Functional model (KerasHub models included).
      clone_function: `fn(layer) -> layer`, called with a private copy of
        each layer (weights included); returns that copy, a wrapper around
        it (`prune_low_magnitude(layer)`), or another layer.

    Returns:
      A new model; `model` is not modified. Layers inside subclassed layers
      that were replaced are saved with the model (`model.save`) and
      restored by `keras.models.load_model`.
    """
    graph.check_model(model, "clone_model")
    if not callable(clone_function):
        raise ValueError(
            f"`clone_function` of `clone_model` must be a function layer -> layer; "
            f"got {clone_function!r}."
        )

    def replace(layer):
        new = clone_function(layer)
        if not isinstance(new, keras.layers.Layer):
            raise ValueError(
                f"`clone_function` returned {new!r} for layer '{layer.name}' "
                f"({type(layer).__name__}); it must return a Keras layer (the layer "
                "itself to keep it)."
            )
        return new

    return graph.rewrite(model, replace)
