"""Weight transforms that keep a kernel's structure through QAT.

A QAT model trained from a pruned or clustered model would lose that
structure within a few steps: the optimizer moves every weight, and the
zeros and shared values are gone before export. These transforms run on
the kernel *before* it is fake-quantized (and, in a fused Conv-BatchNorm,
before the BatchNorm scale is folded in), so that the tensor the converter
quantizes has the structure by construction:

* `SparsityPreserve` (PQAT): `W' = W * mask`, `mask = (W0 != 0)` taken from
  the kernel when QAT starts. Pruned weights stay exactly 0 and get no
  gradient; the others train as in QAT.
* `ClusterPreserve` (CQAT; PCQAT with `preserve_sparsity`): the kernel is
  rebuilt from trainable centroids and fixed cluster indices,
  `W' = c[idx]` (per output channel: `W'[..., j] = c[j, idx[..., j]]`),
  where `c` and `idx` are the unique values of the stripped clustered
  kernel and each weight's position among them. The gradient of a centroid
  is the sum of the gradients of its weights. With `preserve_sparsity`,
  `W' = c[idx] * mask` keeps the pruned zeros at 0 as well.

Why the exported int8 kernel keeps the structure: symmetric quantization
maps 0 to the int8 code 0, and maps equal floats to equal codes; a folded
BatchNorm multiplies each output channel by one scale, which keeps zeros
zero and keeps the number of distinct values per channel. So an int8
kernel holds at least the pruned zeros, and at most `k` codes per tensor
(per-tensor quantization) or per output channel (per-channel).

A transform has the `Quantizer` shape: `build(tensor_shape, name, layer)`
creates its state on the layer that owns it and returns it as a dict;
`__call__(weight, training, state)` returns the transformed tensor.
The registries of the preserving schemes create one transform per kernel
with `from_weight(...)`, which reads the kernel's values once; the config
holds only shapes, so a saved model rebuilds the state variables and loads
their values.
"""

import logging

import keras
import numpy as np
from keras import ops

from tfmot_lite.core.config_equality import ConfigEquality

_register = keras.saving.register_keras_serializable(package="tfmot_lite")

# More distinct values than an int8 tensor can hold: the kernel is not
# clustered (for example a layer that was left out of clustering).
MAX_CLUSTERS = 256


class WeightTransform(ConfigEquality):
    """Base class: a structure-keeping function applied to a kernel.

    Subclasses implement `build`, `__call__` and `get_config`.

    `build(tensor_shape, name, layer, weight=None)` may receive the layer's
    own variable: a transform that rebuilds the kernel from its own state
    (`replaces_weight`) passes it a zero gradient (it stays a trainable
    weight of the layer, as in tfmot, without "missing gradient" warnings)
    and, in training, writes the rebuilt kernel into it, so that the layer
    shows the kernel it trains. (On JAX that write is not kept: stateless
    training keeps only non-trainable updates; `strip_clustering_cqat`
    writes the kernel on every backend.)
    """

    replaces_weight = False

    def build(self, tensor_shape, name, layer, weight=None):
        raise NotImplementedError

    def __call__(self, weight, training, state):
        raise NotImplementedError

    def _own_variable(self, weight, state, tensor_shape, layer):
        """Hook for `replaces_weight`: remember the variable.

        Without `weight`, it is the kernel of the layer that `layer` (a
        QuantizeWrapper or fused Conv-BatchNorm) wraps, if its shape matches.
        """
        if weight is None:
            kernel = getattr(getattr(layer, "layer", None), "kernel", None)
            if isinstance(kernel, keras.Variable) and tuple(kernel.shape) == tensor_shape:
                weight = kernel
        if self.replaces_weight and isinstance(weight, keras.Variable):
            state["variable"] = weight
        return state

    def _write_back(self, result, training, state):
        variable = state.get("variable")
        if training and variable is not None:
            variable.assign(ops.cast(ops.stop_gradient(result), variable.dtype))


def _values(weight):
    return np.asarray(ops.convert_to_numpy(weight))


def _add_state(layer, name, shape, dtype, trainable, initial):
    variable = layer.add_weight(
        name=name, shape=tuple(shape), dtype=dtype, trainable=trainable,
        initializer="zeros",
    )
    if initial is not None:
        variable.assign(np.asarray(initial).astype(dtype))
    return variable


@_register
class SparsityPreserve(WeightTransform):
    """`W' = W * mask`: the zeros of the kernel at QAT start stay zero.

    State: `<name>_sparsity_mask`, non-trainable, 1 where the kernel was
    non-zero when QAT began. The gradient of a masked weight is 0, so the
    layer's own variable keeps its zeros too.
    """

    def __init__(self):
        self._initial = None

    @classmethod
    def from_weight(cls, weight):
        transform = cls()
        transform._initial = {"mask": (_values(weight) != 0).astype("float32")}
        return transform

    def build(self, tensor_shape, name, layer, weight=None):
        initial = (self._initial or {}).get("mask")
        self._initial = None
        mask = _add_state(layer, f"{name}_sparsity_mask", tensor_shape, "float32", False,
                          initial)
        return {"mask": mask}

    def __call__(self, weight, training, state):
        return weight * ops.cast(state["mask"], weight.dtype)

    def get_config(self):
        return {}


def _per_channel_structure(values):
    """Unique values per output channel (last axis), padded to one width,
    the indices into them, and how many (channel, value) pairs there are."""
    channels = values.shape[-1]
    columns = values.reshape(-1, channels)
    uniques = [np.unique(columns[:, j]) for j in range(channels)]
    width = max(len(u) for u in uniques)
    pairs = sum(len(u) for u in uniques)
    centroids = np.zeros((channels, width), dtype="float32")
    indices = np.zeros(columns.shape, dtype="int32")
    for j, u in enumerate(uniques):
        centroids[j, : len(u)] = u
        centroids[j, len(u):] = u[-1]  # Padding: never indexed.
        indices[:, j] = np.searchsorted(u, columns[:, j])
    return centroids, indices.reshape(values.shape), pairs


@_register
class ClusterPreserve(WeightTransform):
    """`W' = c[idx]` (`* mask` with `preserve_sparsity`): clusters kept.

    Args:
      num_centroids: centroids per kernel, or per output channel with
        `per_channel`; 0 when the kernel is not clustered (more than
        `MAX_CLUSTERS` distinct values), in which case only the sparsity
        mask (if any) applies.
      per_channel: one set of centroids per output channel (last axis).
      preserve_sparsity: also multiply by the kernel's non-zero mask.

    State: `<name>_cluster_centroids` (trainable, `(k,)` or
    `(channels, k)`), `<name>_cluster_indices` (int32, the kernel's shape,
    fixed), and `<name>_sparsity_mask` with `preserve_sparsity`.
    """

    def __init__(self, num_centroids=0, per_channel=False, preserve_sparsity=False):
        self.num_centroids = int(num_centroids)
        self.per_channel = bool(per_channel)
        self.preserve_sparsity = bool(preserve_sparsity)
        self._initial = None

    @classmethod
    def from_weight(cls, weight, per_channel_allowed=False, preserve_sparsity=False,
                    name=""):
        """The transform that keeps the structure `weight` has now.

        Per-channel centroids are used when `per_channel_allowed` (the kernel
        is quantized per output channel, on its last axis) and the channels
        do not share their values (the kernel was clustered per channel:
        more than half of the (channel, value) pairs are distinct values);
        otherwise one set for the whole kernel.
        """
        values = _values(weight).astype("float32")
        initial = {}
        if preserve_sparsity:
            initial["mask"] = (values != 0).astype("float32")
        unique, inverse = np.unique(values, return_inverse=True)
        per_channel = False
        centroids, indices = unique, inverse.reshape(values.shape).astype("int32")
        if per_channel_allowed and values.ndim >= 2:
            channel_centroids, channel_indices, pairs = _per_channel_structure(values)
            # Clustered per channel: the channels' value sets are (nearly)
            # disjoint, so the kernel has about as many distinct values as
            # (channel, value) pairs. Clustered per tensor: the channels
            # share one set, which is kept whole.
            if channel_centroids.shape[1] < len(unique) and 2 * len(unique) > pairs:
                per_channel = True
                centroids, indices = channel_centroids, channel_indices
        count = centroids.shape[-1]
        if count > MAX_CLUSTERS:
            logging.getLogger("tfmot_lite").info(
                "Kernel %s has %d distinct values%s: not clustered, quantized "
                "without cluster preservation.", name, count,
                " per channel" if per_channel else "",
            )
            transform = cls(0, False, preserve_sparsity)
        else:
            transform = cls(count, per_channel, preserve_sparsity)
            initial["centroids"], initial["indices"] = centroids, indices
        transform._initial = initial
        return transform

    @property
    def clustered(self):
        return self.num_centroids > 0

    @property
    def replaces_weight(self):
        return self.clustered

    def build(self, tensor_shape, name, layer, weight=None):
        initial = self._initial or {}
        self._initial = None
        state = {}
        tensor_shape = tuple(int(d) for d in tensor_shape)
        if self.preserve_sparsity:
            state["mask"] = _add_state(layer, f"{name}_sparsity_mask", tensor_shape,
                                       "float32", False, initial.get("mask"))
        if self.clustered:
            shape = ((tensor_shape[-1], self.num_centroids) if self.per_channel
                     else (self.num_centroids,))
            state["centroids"] = _add_state(layer, f"{name}_cluster_centroids", shape,
                                            "float32", True, initial.get("centroids"))
            state["indices"] = _add_state(layer, f"{name}_cluster_indices", tensor_shape,
                                          "int32", False, initial.get("indices"))
            if self.per_channel:
                channels = tensor_shape[-1]
                state["offsets"] = np.arange(channels, dtype="int32") * self.num_centroids
        return self._own_variable(weight, state, tensor_shape, layer)

    def find_state(self, variables, tensor_shape):
        """The state `build` created, found among `variables` (the weights
        of the layer that owns it, which holds one such transform)."""
        state = {}
        for key, suffix in (("mask", "_sparsity_mask"), ("centroids", "_cluster_centroids"),
                            ("indices", "_cluster_indices")):
            for v in variables:
                if v.name.endswith(suffix):
                    state[key] = v
        if self.clustered and self.per_channel:
            state["offsets"] = np.arange(int(tensor_shape[-1]), dtype="int32") * self.num_centroids
        return state

    def clustered_weight(self, state):
        """`c[idx]`: the kernel rebuilt from its centroids."""
        centroids, indices = state["centroids"], state["indices"]
        if self.per_channel:
            flat = ops.reshape(centroids, (-1,))
            return ops.take(flat, indices + state["offsets"])
        return ops.take(centroids, indices)

    def __call__(self, weight, training, state):
        result = weight
        if self.clustered:
            result = ops.cast(self.clustered_weight(state), weight.dtype)
        if self.preserve_sparsity:
            result = result * ops.cast(state["mask"], weight.dtype)
        if self.clustered and training:
            self._write_back(result, training, state)
            # A zero (not a missing) gradient for the unused kernel.
            result = result + 0.0 * weight
        return result

    def get_config(self):
        return {
            "num_centroids": self.num_centroids,
            "per_channel": self.per_channel,
            "preserve_sparsity": self.preserve_sparsity,
        }
