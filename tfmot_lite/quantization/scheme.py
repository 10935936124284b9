"""Quantize schemes: a layout transform (layer fusion) plus a registry.

`Default8BitQuantizeLayoutTransform` finds, in every graph model (nested
ones included), the patterns the TFLite converter fuses into one int8
kernel:

* Conv1D/Conv2D/DepthwiseConv2D -> BatchNormalization [-> ReLU/ReLU6]:
  trained as one `QuantizeConvBatchNorm`;
* SeparableConv2D: split into the DepthwiseConv2D and 1x1 Conv2D the
  converter emits, each quantized, so the tensor between them has a range.
"""

import keras

from tfmot_lite import graph
from tfmot_lite.quantization.fused import FOLDABLE_CONVS
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


class Fusion:
    """A Conv -> BatchNorm [-> activation] chain found in a model."""

    def __init__(self, conv, batch_norm, act_layer=None, activation=None):
        self.conv = conv
        self.batch_norm = batch_norm
        self.act_layer = act_layer
        self.activation = activation

    @property
    def layers(self):
        return [x for x in (self.conv, self.batch_norm, self.act_layer) if x is not None]


def _functional(model):
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model


def _consumers(model):
    """`{id(layer): [consumer layers]}` within one graph model, and the set
    of ids of layers whose output is a model output."""
    fn = _functional(model)
    consumers, outputs, calls = {}, set(), {}
    if fn is None:
        return consumers, outputs, calls
    for nodes in fn._nodes_by_depth.values():
        for node in nodes:
            op = node.operation
            calls[id(op)] = calls.get(id(op), 0) + 1
            for t in node.arguments.keras_tensors:
                producer = t._keras_history.operation
                consumers.setdefault(id(producer), []).append(op)
    for t in fn.outputs:
        outputs.add(id(t._keras_history.operation))
    return consumers, outputs, calls


def _activation_name(layer):
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
            return None
        mv = cfg.get("max_value")
        if mv is None:
            return "relu"
        return "relu6" if float(mv) == 6.0 else None
    if isinstance(layer, keras.layers.Activation):
        name = layer.get_config().get("activation")
        return name if name in ("relu", "relu6") else None
    return None


def _unwrap(layer):
    from tfmot_lite.quantization.wrapper import QuantizeAnnotate

    return layer.layer if isinstance(layer, QuantizeAnnotate) else layer


@_register
class QuantizeLayoutTransform:
    """Base class (tfmot's `QuantizeLayoutTransform`): finds fusions."""

    def find_fusions(self, model, eligible=lambda layer: True):
        return {}

    def apply(self, model, layer_quantize_map):
        """tfmot signature; the rewrite itself happens in `quantize_apply`."""
        return model, layer_quantize_map

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class Default8BitQuantizeLayoutTransform(QuantizeLayoutTransform):
    """Conv -> BatchNorm [-> ReLU/ReLU6] fusion for every graph model."""

    def find_fusions(self, model, eligible=lambda layer: True):
        """`{id(layer): (role, Fusion)}`, role 'head' for the conv (replaced by
        the fused layer) or 'folded' for the BatchNorm/activation (replaced
        by an Identity). `eligible(layer)` filters candidate layers (the
        annotated ones, in `quantize_apply`)."""
        plan = {}
        models = [model] + [
            layer for _, layer in _all_layers(model) if graph.is_graph_model(layer)
        ]
        for sub in models:
            consumers, outputs, calls = _consumers(sub)

            def single_next(layer):
                nxt = consumers.get(id(layer), [])
                if len(nxt) != 1 or id(layer) in outputs or calls.get(id(layer)) != 1:
                    return None
                return nxt[0]

            for layer in sub.layers:
                conv = _unwrap(layer)
                if not isinstance(conv, FOLDABLE_CONVS) or not eligible(layer):
                    continue
                if isinstance(conv, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                                     keras.layers.Conv3D)):
                    continue
                cfg = conv.get_config()
                if cfg.get("activation") not in ("linear", None) or cfg.get(
                    "data_format", "channels_last"
                ) != "channels_last" or cfg.get("groups", 1) != 1:
                    continue
                bn_layer = single_next(layer)
                bn = _unwrap(bn_layer) if bn_layer is not None else None
                if not isinstance(bn, keras.layers.BatchNormalization) or not eligible(bn_layer):
                    continue
                if calls.get(id(bn_layer)) != 1 or not _bn_last_axis(bn, conv):
                    continue
                fusion = Fusion(layer, bn_layer)
                act_layer = single_next(bn_layer)
                if act_layer is not None and eligible(act_layer):
                    name = _activation_name(_unwrap(act_layer))
                    if name is not None and calls.get(id(act_layer)) == 1:
                        fusion.act_layer, fusion.activation = act_layer, name
                plan[id(layer)] = ("head", fusion)
                plan[id(bn_layer)] = ("folded", fusion)
                if fusion.act_layer is not None:
                    plan[id(fusion.act_layer)] = ("folded", fusion)
        return plan


def _bn_last_axis(bn, conv):
    axis = bn.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    if bn.get_config().get("renorm") or bn.get_config().get("synchronized"):
        return False
    rank = len(conv.kernel.shape) if conv.built else None
    return axis == -1 or (rank is not None and axis == rank - 1)


def _all_layers(model):
    """Every layer, graph models included, depth first."""
    if not graph.is_graph_model(model):
        return
    for layer in model.layers:
        yield layer.name, layer
        if graph.is_graph_model(layer):
            yield from _all_layers(layer)


class QuantizeScheme:
    """Base class (tfmot's `QuantizeScheme`): a layout transform and a registry."""

    def get_layout_transformer(self):
        raise NotImplementedError

    def get_quantize_registry(self):
        raise NotImplementedError


@_register
class Default8BitQuantizeScheme(QuantizeScheme):
    """The TFLite int8 scheme: per-channel symmetric int8 conv weights,
    per-tensor symmetric int8 Dense weights, asymmetric int8 activations,
    Conv-BatchNorm folding."""

    def __init__(self, disable_per_axis=False):
        self.disable_per_axis = bool(disable_per_axis)

    num_bits_weight = 8
    num_bits_activation = 8

    def get_layout_transformer(self):
        return Default8BitQuantizeLayoutTransform()

    def get_quantize_registry(self):
        return Default8BitQuantizeRegistry(
            self.num_bits_weight, self.num_bits_activation, self.disable_per_axis
        )

    def get_config(self):
        return {"disable_per_axis": self.disable_per_axis}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


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

    def get_config(self):
        return {
            "disable_per_axis": self.disable_per_axis,
            "num_bits_weight": self.num_bits_weight,
            "num_bits_activation": self.num_bits_activation,
        }
