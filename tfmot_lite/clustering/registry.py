"""Which weights of a layer are clustered: the clustering column of
`tfmot_lite/core/layer_kinds.py`.

The kernels tfmot clusters: Dense, Conv1D/2D/3D and their transposes, the
pointwise kernel of separable convolutions, Embedding tables, the four
projection kernels of MultiHeadAttention, and the input and recurrent
kernels of SimpleRNN/LSTM/GRU cells (also inside `RNN`, `StackedRNNCells`,
`Bidirectional` and `TimeDistributed`). EinsumDense kernels are clustered
too (Keras 3 builds attention from them), and so are depthwise kernels:
tfmot leaves DepthwiseConv2D dense, citing accuracy loss on small kernels,
but sharing values there is what makes MobileNet-style models compress, and
a layer the user wants dense is left out by clustering only chosen layers.
Biases, normalisation parameters and PReLU slopes stay as they are. Layers
without trainable weights pass through. Any other layer with weights must
implement `ClusterableLayer`.
"""

import abc

from tfmot_lite.core import layer_kinds


class ClusterableLayer(abc.ABC):
    """Mixin for custom layers whose weights can be clustered (tfmot's API).

    Implement `get_clusterable_weights()` returning `(name, variable)` pairs;
    each variable must be stored in an attribute of the layer or of one of
    its sub-layers. Optionally implement `get_clusterable_algorithm(name)`
    returning a `ClusteringAlgorithm` subclass for a weight whose centroids
    need another layout; None keeps the default.

    ```python
    class Scale(keras.layers.Layer, tfmot.clustering.keras.ClusterableLayer):
        def get_clusterable_weights(self):
            return [("scale", self.scale)]  # (name, variable) pairs

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],))

        def call(self, x):
            return x * self.scale
    ```
    """

    @abc.abstractmethod
    def get_clusterable_weights(self):
        raise NotImplementedError

    def get_clusterable_algorithm(self, weight_name):  # noqa: ARG002
        return None


def _own_kernels(layer):
    named = []
    for i, item in enumerate(layer.get_clusterable_weights()):
        if isinstance(item, (tuple, list)):
            named.append((str(item[0]), item[1]))
        else:
            named.append((getattr(item, "name", f"weight{i}"), item))
    return named


CLUSTERING = layer_kinds.Technique("cluster", ClusterableLayer, _own_kernels)


def is_supported(layer):
    """Whether `cluster_weights` knows what to do with `layer`."""
    return layer_kinds.verdict(layer, CLUSTERING) != layer_kinds.UNSUPPORTED


def has_clusterable_weights(layer):
    """Whether a supported layer gets a clustering wrapper."""
    return layer_kinds.verdict(layer, CLUSTERING) == layer_kinds.OPTIMIZE


def clusterable_weights(layer):
    """`[(name, variable)]` to cluster in the built, supported `layer`."""
    return layer_kinds.kernels(layer, CLUSTERING) or []


def algorithm_for(layer, weight_name):
    """The `ClusterableLayer`'s own algorithm class for a weight, or None."""
    if isinstance(layer, ClusterableLayer):
        return layer.get_clusterable_algorithm(weight_name)
    return None


def unsupported_layer_error(paths):
    """The one error for every layer that holds weights we cannot classify."""
    return layer_kinds.unsupported_layer_error(
        "cluster", "tfmot_lite.clustering.keras.ClusterableLayer",
        "get_clusterable_weights", paths,
        note=" (strip other techniques' wrappers first)",
    )
