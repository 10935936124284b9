"""Which weights of a layer are pruned: the pruning column of
`tfmot_lite/core/layer_kinds.py`.

Kernels that carry most of a model's parameters and multiply activations are
pruned; biases, normalisation statistics and depthwise kernels (few weights,
large accuracy cost) stay dense, as in tfmot. A custom layer opts in by
implementing `PrunableLayer`.
"""

import abc

from tfmot_lite.core import layer_kinds


class PrunableLayer(abc.ABC):
    """Mixin for custom layers that can be pruned.

    Implement `get_prunable_weights()` to return the variables to prune. Each
    must be stored in an attribute of the layer (`self.kernel = ...`).

    ```python
    class MyDense(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 8))

        def call(self, x):
            return x @ self.kernel

        def get_prunable_weights(self):
            return [self.kernel]
    ```
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        raise NotImplementedError


PRUNING = layer_kinds.Technique(
    "prune",
    PrunableLayer,
    lambda layer: [(w.name, w) for w in layer.get_prunable_weights()],
)
_CLASSIFY = {layer_kinds.OPTIMIZE: "prune", layer_kinds.DENSE: "keep"}


def classify(layer):
    """'prune' (has kernels to prune), 'keep' (known, stays dense, or holds
    no weights) or None (holds weights we cannot classify)."""
    return _CLASSIFY.get(layer_kinds.verdict(layer, PRUNING))


def prunable_weights(layer):
    """The variables of a built `layer` to prune, or None if it is unknown.

    Returns an empty list for layers that are known but stay dense, and for
    layers without weights.
    """
    named = layer_kinds.kernels(layer, PRUNING)
    return None if named is None else [variable for _, variable in named]


def unsupported_layer_error(paths):
    """The one error for every layer that holds weights we cannot classify."""
    return layer_kinds.unsupported_layer_error(
        "prune", "tfmot_lite.sparsity.keras.PrunableLayer", "get_prunable_weights", paths
    )
