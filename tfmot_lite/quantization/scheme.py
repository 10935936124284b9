"""Quantize schemes: a layout transform (layer rewrites, `layout.py`) plus a
registry (`registry.py`).

A `QuantizeScheme` decides everything `quantize_model` / `quantize_apply`
do to a model: its layout transform's `apply(model, layer_quantize_map)`
rewrites layers into what the TFLite converter runs; its registry gives the
`QuantizeConfig` of every other layer, the output quantizer of raw
operations and the input quantizer.

Bit widths are fields of the scheme (`num_bits_weight`,
`num_bits_activation`, `disable_per_axis`), handed to the transform and the
registry it builds. A user's scheme subclasses `QuantizeScheme` and returns
its own transform and/or registry; pruning- and cluster-preserving schemes
(`experimental/combine`) subclass both.
"""

import keras

from tfmot_lite.quantization.layout import (
    Default8BitQuantizeLayoutTransform,
    _ConfigEquality,
)
from tfmot_lite.quantization.registry import BitWidths, Default8BitQuantizeRegistry

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


class QuantizeScheme(_ConfigEquality):
    """Base class (tfmot's `QuantizeScheme`): a layout transform and a registry."""

    def get_layout_transformer(self):
        raise NotImplementedError

    def get_quantize_registry(self):
        raise NotImplementedError


@_register
class Default8BitQuantizeScheme(QuantizeScheme):
    """The TFLite int8 scheme: per-channel symmetric int8 conv weights,
    per-tensor symmetric int8 Dense weights, asymmetric int8 activations,
    Conv-BatchNorm folding. `disable_per_axis=True` quantizes conv weights
    per tensor too."""

    def __init__(self, disable_per_axis=False):
        self.disable_per_axis = bool(disable_per_axis)
        self.num_bits_weight = 8
        self.num_bits_activation = 8

    def get_layout_transformer(self):
        return Default8BitQuantizeLayoutTransform(
            self.num_bits_weight, self.num_bits_activation, self.disable_per_axis
        )

    def get_quantize_registry(self):
        return Default8BitQuantizeRegistry(
            self.num_bits_weight, self.num_bits_activation, self.disable_per_axis
        )

    def get_config(self):
        return {"disable_per_axis": self.disable_per_axis}


@_register
class DefaultNBitQuantizeScheme(Default8BitQuantizeScheme):
    """The default scheme with `num_bits_weight`-bit weights and
    `num_bits_activation`-bit activations (2..8). TFLite stores the result
    in int8 tensors that use fewer levels."""

    def __init__(self, disable_per_axis=False, num_bits_weight=8, num_bits_activation=8):
        super().__init__(disable_per_axis)
        for name, bits in (("num_bits_weight", num_bits_weight),
                           ("num_bits_activation", num_bits_activation)):
            if not 2 <= int(bits) <= 8:
                raise ValueError(f"`{name}` must be between 2 and 8; got {bits}.")
        self.num_bits_weight = int(num_bits_weight)
        self.num_bits_activation = int(num_bits_activation)

    get_config = BitWidths.get_config


@_register
class Default16x8QuantizeScheme(Default8BitQuantizeScheme):
    """16x8 quantization-aware training: int8 weights (as the default
    scheme) and symmetric int16 activations (zero point 0), the layout of
    TFLite's 16x8 kernels (`EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_
    WEIGHTS_INT8`). Where int8 activations lose too much (attention,
    layer normalization, audio), 16 bits keep 256 times finer steps.
    `export_model(qat_model)` converts it with that ops set."""

    def __init__(self, disable_per_axis=False):
        super().__init__(disable_per_axis)
        self.num_bits_activation = 16
