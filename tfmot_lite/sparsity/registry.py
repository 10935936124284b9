"""Which weights of a layer are pruned.

Kernels that carry most of a model's parameters and multiply activations are
pruned; biases, normalisation statistics and depthwise kernels (few weights,
large accuracy cost) stay dense, as in tfmot. A custom layer opts in by
implementing `PrunableLayer`.
"""

import abc

from keras import layers

from tfmot_lite.layer_kinds import (
    DEPTHWISE_LAYERS,
    KERNEL_LAYERS,
    NORMALIZATION_LAYERS,
    SEPARABLE_LAYERS,
)

_RNN_LAYERS = (layers.SimpleRNN, layers.LSTM, layers.GRU)

# Layers with weights that are deliberately left dense.
_DENSE_LAYERS = (
    *DEPTHWISE_LAYERS,
    *NORMALIZATION_LAYERS,
    layers.Normalization,
    layers.PReLU,
)


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


def classify(layer):
    """'prune' (has kernels to prune), 'keep' (known, stays dense, or holds
    no weights) or None (holds weights we cannot classify)."""
    if isinstance(layer, PrunableLayer):
        return "prune"
    if isinstance(
        layer, SEPARABLE_LAYERS + KERNEL_LAYERS + _RNN_LAYERS
        + (layers.Embedding, layers.MultiHeadAttention)
    ):
        return "prune"
    if isinstance(layer, (layers.Bidirectional, layers.TimeDistributed)):
        inner = (
            [layer.layer] if isinstance(layer, layers.TimeDistributed)
            else [layer.forward_layer, layer.backward_layer]
        )
        kinds = {classify(sub) for sub in inner}
        return None if None in kinds else ("prune" if "prune" in kinds else "keep")
    if isinstance(layer, _DENSE_LAYERS) or (layer.built and not layer.weights):
        return "keep"
    return None


def prunable_weights(layer):
    """The variables of a built `layer` to prune, or None if it is unknown.

    Returns an empty list for layers that are known but stay dense, and for
    layers without weights.
    """
    kind = classify(layer)
    if kind != "prune":
        return None if kind is None else []
    if isinstance(layer, PrunableLayer):
        return list(layer.get_prunable_weights())
    if isinstance(layer, SEPARABLE_LAYERS):
        return [layer.pointwise_kernel]
    if isinstance(layer, KERNEL_LAYERS):
        return [layer.kernel]
    if isinstance(layer, layers.Embedding):
        return [layer.embeddings]
    if isinstance(layer, layers.MultiHeadAttention):
        return [
            sub.kernel
            for sub in (
                layer.query_dense,
                layer.key_dense,
                layer.value_dense,
                layer.output_dense,
            )
        ]
    if isinstance(layer, _RNN_LAYERS):
        return [layer.cell.kernel, layer.cell.recurrent_kernel]
    if isinstance(layer, layers.Bidirectional):
        return prunable_weights(layer.forward_layer) + prunable_weights(
            layer.backward_layer
        )
    return prunable_weights(layer.layer)  # TimeDistributed


def unsupported_layer_error(paths):
    """The one error for every layer that holds weights we cannot classify."""
    listed = "\n".join(f"  - {p}" for p in paths)
    return ValueError(
        "Cannot prune: these layers hold weights but are neither known to "
        f"tfmot_lite nor a PrunableLayer:\n{listed}\n"
        "Either make each of them a `tfmot_lite.sparsity.keras.PrunableLayer` "
        "and return the weights to prune from `get_prunable_weights()`, or "
        "prune only the layers you choose: "
        "`keras.models.clone_model(model, clone_function=lambda l: "
        "prune_low_magnitude(l) if isinstance(l, keras.layers.Dense) else l)`."
    )
