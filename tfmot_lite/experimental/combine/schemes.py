"""The collaborative-optimization schemes: QAT that keeps zeros or clusters.

Each scheme is the default 8-bit scheme (same layout transform, same
quantizers, same Conv-BatchNorm folding) whose registry adds a weight
transform in front of each kernel's quantizer:

* `Default8BitPrunePreserveQuantizeScheme` (PQAT): `SparsityPreserve`.
* `Default8BitClusterPreserveQuantizeScheme` (CQAT; PCQAT with
  `preserve_sparsity=True`): `ClusterPreserve`, per output channel where
  the kernel was clustered per channel and is quantized per channel.

The registry's `get_weight_transform(layer)` is the one place that decides a
kernel's transform; `get_quantize_config` wraps the default config's weight
quantizer with it (`PreservingQuantizer`), and the scheme's layout
transform (`PreservingLayoutTransform`) hands it to each fused
Conv-BatchNorm (`kernel_transform`), which applies it before folding the
BatchNorm scale.
"""

import keras

from tfmot_lite.core import layer_kinds
from tfmot_lite.experimental.combine.quantizers import PreservingQuantizer
from tfmot_lite.experimental.combine.transforms import ClusterPreserve, SparsityPreserve
from tfmot_lite.quantization.inside import InsideQuantizeConfig
from tfmot_lite.quantization.layout import Default8BitQuantizeLayoutTransform
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry
from tfmot_lite.quantization.scheme import Default8BitQuantizeScheme

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


def _clustered_per_channel(layer):
    """Whether `layer`'s kernel may keep centroids per output channel: it is
    quantized per channel along its last axis (Conv1D/Conv2D, the layer
    table's `per_channel`). Other kernels (Dense, depthwise, transposed
    convolutions) keep one set of centroids per kernel."""
    layout = layer_kinds.per_channel(layer)
    return layout is not None and layout.axis == -1 and not layout.depthwise


def _family_kernels(layer):
    row = layer_kinds.family(layer)
    return row.kernels if row is not None else ()


def _kernel(layer):
    kernel = getattr(layer, "kernel", None)
    return kernel if isinstance(kernel, keras.Variable) else None


class _PreservingRegistry(Default8BitQuantizeRegistry):
    """The default 8-bit registry plus one weight transform per kernel."""

    def make_transform(self, layer, kernel, per_channel_allowed):
        raise NotImplementedError

    def get_weight_transform(self, layer):
        """The transform for `layer`'s kernel, from its current values (None
        for layers without a kernel)."""
        kernel = _kernel(layer)
        if kernel is None:
            return None
        per_channel = _clustered_per_channel(layer) and not self.disable_per_axis
        return self.make_transform(layer, kernel, per_channel)

    def get_quantize_config(self, layer):
        config = super().get_quantize_config(layer)
        if isinstance(config, InsideQuantizeConfig):
            # Attention's four projections, EinsumDense, Dense over a
            # sequence, a recurrent cell's two kernels: each kernel
            # pruning/clustering optimizes, per tensor.
            kernels = {id(variable) for _, variable in layer_kinds.all_kernels(layer)}
            for path in config.weight_paths(layer):
                variable = config.weight_variable(layer, path)
                if id(variable) in kernels:
                    config.weight_quantizers[path] = PreservingQuantizer(
                        self.make_transform(layer, variable, False),
                        config.weight_quantizer(layer, path))
            return config
        attrs = getattr(config, "weight_attrs", None)
        if not attrs or attrs not in (["kernel"], [path for _, path in _family_kernels(layer)]):
            return config
        if config.weight_attrs == ["kernel"]:
            transform = self.get_weight_transform(layer)
        else:  # A table (Embedding): one set of values per table.
            transform = self.make_transform(
                layer, getattr(layer, config.weight_attrs[0]), False)
        if transform is not None:
            config.weight_quantizer = PreservingQuantizer(transform, config.weight_quantizer)
        return config


@_register
class Default8BitPrunePreserveQuantizeRegistry(_PreservingRegistry):
    """Default 8-bit registry whose kernels keep their zeros (PQAT)."""

    def make_transform(self, layer, kernel, per_channel_allowed):
        return SparsityPreserve.from_weight(kernel)


@_register
class Default8BitClusterPreserveQuantizeRegistry(_PreservingRegistry):
    """Default 8-bit registry whose kernels keep their clusters (CQAT), and
    their zeros with `preserve_sparsity` (PCQAT)."""

    def __init__(self, num_bits_weight=8, num_bits_activation=8, disable_per_axis=False,
                 preserve_sparsity=True):
        super().__init__(num_bits_weight, num_bits_activation, disable_per_axis)
        self.preserve_sparsity = bool(preserve_sparsity)

    def make_transform(self, layer, kernel, per_channel_allowed):
        return ClusterPreserve.from_weight(
            kernel, per_channel_allowed, self.preserve_sparsity, name=f"{layer.name}/kernel"
        )

    def get_config(self):
        return {**super().get_config(), "preserve_sparsity": self.preserve_sparsity}


@_register
class PreservingLayoutTransform(Default8BitQuantizeLayoutTransform):
    """The default 8-bit layout whose fused Conv-BatchNorm kernels get the
    registry's weight transform (`registry.get_weight_transform(conv)`)."""

    def __init__(self, registry):
        super().__init__(registry.num_bits_weight, registry.num_bits_activation,
                         registry.disable_per_axis)
        self.registry = registry

    def kernel_transform(self, conv):
        return self.registry.get_weight_transform(conv)

    def get_config(self):
        return {"registry": keras.saving.serialize_keras_object(self.registry)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["registry"]))


class _PreservingScheme(Default8BitQuantizeScheme):
    def get_layout_transformer(self):
        return PreservingLayoutTransform(self.get_quantize_registry())


@_register
class Default8BitPrunePreserveQuantizeScheme(_PreservingScheme):
    """QAT that keeps a pruned model's zeros (tfmot's PQAT scheme).

    Use it on a stripped pruned model:

    ```python
    pqat = tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(stripped_pruned_model),
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(),
    )
    ```

    Every kernel is multiplied by its non-zero mask (taken when the scheme
    is applied) before it is fake-quantized, so the weights that were pruned
    stay 0 through training, BatchNorm folding and int8 export.
    """

    def get_quantize_registry(self):
        return Default8BitPrunePreserveQuantizeRegistry(
            self.num_bits_weight, self.num_bits_activation, self.disable_per_axis
        )


@_register
class Default8BitClusterPreserveQuantizeScheme(_PreservingScheme):
    """QAT that keeps a clustered model's clusters (tfmot's CQAT scheme).

    Use it on a stripped clustered model (`strip_clustering`):

    ```python
    cqat = tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(stripped_clustered_model),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(),
    )
    ```

    Each kernel is rebuilt from trainable centroids (its distinct values,
    per output channel where it was clustered per channel and is quantized
    per channel) and fixed cluster indices before it is fake-quantized, so
    the int8 kernel has at most as many values as there were clusters.
    Kernels with more than 256 distinct values were not clustered and get
    plain QAT.

    Args:
      preserve_sparsity: also keep the zeros (PCQAT, for a model pruned,
        then clustered with `preserve_sparsity=True`). As in tfmot the
        default is True; on a kernel without zeros it changes nothing.
    """

    def __init__(self, preserve_sparsity=True, disable_per_axis=False):
        super().__init__(disable_per_axis)
        if not isinstance(preserve_sparsity, bool):
            raise ValueError(
                f"`preserve_sparsity` must be True or False; got {preserve_sparsity!r}."
            )
        self.preserve_sparsity = preserve_sparsity

    def get_quantize_registry(self):
        return Default8BitClusterPreserveQuantizeRegistry(
            self.num_bits_weight, self.num_bits_activation, self.disable_per_axis,
            self.preserve_sparsity,
        )

    def get_config(self):
        return {**super().get_config(), "preserve_sparsity": self.preserve_sparsity}
