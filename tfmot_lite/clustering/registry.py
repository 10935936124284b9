"""Which weights of a layer are clustered.

The kernels tfmot clusters: Dense, Conv1D/2D/3D and their transposes, the
pointwise kernel of separable convolutions, Embedding tables, the four
projection kernels of MultiHeadAttention, and the input and recurrent
kernels of SimpleRNN/LSTM/GRU cells (also inside `RNN`, `StackedRNNCells`
and `Bidirectional`). EinsumDense kernels are clustered too (Keras 3 builds
attention from them), and so are depthwise kernels: tfmot leaves
DepthwiseConv2D dense, citing accuracy loss on small kernels, but sharing
values there is what makes MobileNet-style models compress, and a layer the
user wants dense is left out by clustering only chosen layers. Biases and
normalisation parameters stay as they are. Layers without trainable weights
pass through. Any other layer with
weights must implement `ClusterableLayer`.
"""

import abc

from keras import layers

from tfmot_lite.layer_kinds import (
    DEPTHWISE_LAYERS,
    KERNEL_LAYERS,
    NORMALIZATION_LAYERS,
    SEPARABLE_LAYERS,
)

_RNN_CELLS = (layers.SimpleRNNCell, layers.LSTMCell, layers.GRUCell)
# Layers with trainable weights that are deliberately not clustered.
_UNCLUSTERED_LAYERS = NORMALIZATION_LAYERS


class ClusterableLayer(abc.ABC):
    """Mixin for custom layers whose weights can be clustered (tfmot's API).

    Implement `get_clusterable_weights()` returning `(name, variable)` pairs;
    each variable must be stored in an attribute of the layer or of one of
    its sub-layers. Optionally implement `get_clusterable_algorithm(name)`
    returning a `ClusteringAlgorithm` subclass for a weight whose centroids
    need another layout; None keeps the default.

    ```python
    class MyDense(keras.layers.Layer, tfmot.clustering.keras.ClusterableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 8))

        def call(self, x):
            return x @ self.w

        def get_clusterable_weights(self):
            return [("w", self.w)]
    ```
    """

    @abc.abstractmethod
    def get_clusterable_weights(self):
        raise NotImplementedError

    def get_clusterable_algorithm(self, weight_name):  # noqa: ARG002
        return None


def _rnn_cells(layer):
    """The cells of an RNN layer, or None if one is not supported."""
    cell = layer.cell
    cells = list(cell.cells) if isinstance(cell, layers.StackedRNNCells) else [cell]
    if all(isinstance(c, _RNN_CELLS) for c in cells):
        return cells
    return None


def _rnn_weights(layer, prefix=""):
    cells = _rnn_cells(layer)
    named = []
    for i, cell in enumerate(cells):
        tag = f"{prefix}cell{i}_" if len(cells) > 1 else prefix
        named += [(f"{tag}kernel", cell.kernel), (f"{tag}recurrent_kernel", cell.recurrent_kernel)]
    return named


def is_supported(layer):
    """Whether `cluster_weights` knows what to do with `layer`."""
    if isinstance(layer, ClusterableLayer):
        return True
    if isinstance(layer, (*KERNEL_LAYERS, *SEPARABLE_LAYERS, *DEPTHWISE_LAYERS,
                          layers.Embedding, layers.MultiHeadAttention,
                          *_UNCLUSTERED_LAYERS)):
        return True
    if isinstance(layer, layers.Bidirectional):
        return all(
            isinstance(sub, layers.RNN) and _rnn_cells(sub) is not None
            for sub in (layer.forward_layer, layer.backward_layer)
        )
    if isinstance(layer, layers.RNN):
        return _rnn_cells(layer) is not None
    return layer.built and not layer.trainable_weights


def has_clusterable_weights(layer):
    """Whether a supported layer gets a clustering wrapper."""
    if isinstance(layer, ClusterableLayer):
        return not layer.built or bool(layer.get_clusterable_weights())
    if isinstance(layer, _UNCLUSTERED_LAYERS):
        return False
    return isinstance(
        layer,
        (*KERNEL_LAYERS, *SEPARABLE_LAYERS, *DEPTHWISE_LAYERS,
         layers.Embedding, layers.MultiHeadAttention, layers.RNN,
         layers.Bidirectional),
    )


def clusterable_weights(layer):
    """`[(name, variable)]` to cluster in the built, supported `layer`."""
    if isinstance(layer, ClusterableLayer):
        named = []
        for i, item in enumerate(layer.get_clusterable_weights()):
            if isinstance(item, (tuple, list)):
                named.append((str(item[0]), item[1]))
            else:
                named.append((getattr(item, "name", f"weight{i}"), item))
        return named
    if isinstance(layer, _UNCLUSTERED_LAYERS):
        return []
    if isinstance(layer, SEPARABLE_LAYERS):
        return [("pointwise_kernel", layer.pointwise_kernel)]
    if isinstance(layer, DEPTHWISE_LAYERS):
        return [("depthwise_kernel", layer.kernel)]
    if isinstance(layer, KERNEL_LAYERS):
        return [("kernel", layer.kernel)]
    if isinstance(layer, layers.Embedding):
        return [("embeddings", layer.embeddings)]
    if isinstance(layer, layers.MultiHeadAttention):
        return [
            (f"{part}_kernel", getattr(layer, f"{part}_dense").kernel)
            for part in ("query", "key", "value", "output")
        ]
    if isinstance(layer, layers.Bidirectional):
        return _rnn_weights(layer.forward_layer, "forward_") + _rnn_weights(
            layer.backward_layer, "backward_"
        )
    if isinstance(layer, layers.RNN):
        return _rnn_weights(layer)
    return []


def algorithm_for(layer, weight_name):
    """The `ClusterableLayer`'s own algorithm class for a weight, or None."""
    if isinstance(layer, ClusterableLayer):
        return layer.get_clusterable_algorithm(weight_name)
    return None


def unsupported_layer_error(paths):
    """The one error for every layer that holds weights we cannot classify."""
    listed = "\n".join(f"  - {p}" for p in paths)
    return ValueError(
        "Cannot cluster: these layers hold weights but are neither known to "
        f"tfmot_lite nor a ClusterableLayer:\n{listed}\n"
        "Either make each of them a `tfmot_lite.clustering.keras."
        "ClusterableLayer` returning its weights to cluster from "
        "`get_clusterable_weights()` (strip other techniques' wrappers first), "
        "or cluster only the layers you choose: "
        "`keras.models.clone_model(model, clone_function=lambda l: "
        "cluster_weights(l, 16) if isinstance(l, keras.layers.Dense) else l)`."
    )
