"""Layout transforms: the layer rewrites `quantize_model` performs before
wrapping, so the Keras model trains what the TFLite converter will run.

`Default8BitQuantizeLayoutTransform.apply(model, layer_quantize_map)`, in
every graph model, nested ones included:

* Conv1D/Conv2D/DepthwiseConv2D -> BatchNormalization [-> ReLU/ReLU6]:
  one `QuantizeConvBatchNorm` (the BatchNorm and ReLU become Identity);
* SeparableConv2D: the DepthwiseConv2D and 1x1 Conv2D the converter
  emits, each annotated, so the tensor between them has a range; a
  BatchNormalization [-> ReLU] after it folds into the 1x1 convolution;
* BatchNormalization alone: `QuantizeBatchNorm` (MUL then ADD);
* a layer whose TFLite op fuses the ReLU/ReLU6 after it (Conv2D, Dense,
  Add, a BatchNormalization alone, ...: `layer_kinds.fuses_relu`): no
  output range of its own; the ReLU's is the op's (tfmot's
  `LayerReLUQuantize`, `AddReLUQuantize`); so too where several equal
  ReLUs alone read it (the converter merges them into one), a folded
  Conv-BatchNorm included;
* a layer (or fused chain) read only by a Concatenate (or a Maximum or
  Minimum): no output range of its own; the converter gives the op the
  join's scale (int8 CONCATENATION, MAXIMUM and MINIMUM keep one), so the
  join's range rounds it once.
  An output read elsewhere too keeps its range: the converter requantizes
  it into the concatenation's, and so does the Keras model;
* a pooling, padding or reshape (an op that keeps its input's scale) read
  by a Concatenate and by another layer: `QuantizeSameScale`, a range of
  its own, or the converter would hand it the concatenation's scale for
  every reader (`same_scale.py`);
* any other average pooling: `QuantizeAveragePooling`, its mean rounded
  into its input's range as the int8 kernel rounds it (`same_scale.py`);
  a bilinear UpSampling2D: `QuantizeBilinearResize`, the same for
  RESIZE_BILINEAR;
* Rescaling with an offset, adapted Normalization: two Rescalings
  (MUL then ADD), each annotated; per-channel constants (there and in a
  Rescaling without offset) as the converter stores them, on an int8 grid.

A layer split in two (SeparableConv2D, Rescaling, Normalization) becomes
two layers of the graph it is in, named `<layer>_depthwise` and
`<layer>_pointwise`, `<layer>_scale` and `<layer>_offset`, so that the
first finds the range of the tensor it reads (`input_range.py`); inside
a nested Sequential, whose layers are called as they are, a Sequential
of the two named after the layer.

Extension point (pruning-/cluster-preserving QAT): a transform subclass
overrides `kernel_transform(conv)` to give each fused Conv-BatchNorm a
weight transform (mask, cluster structure) applied before folding.
`scheme.py` pairs a transform with a registry.
"""

import collections

import keras
import numpy as np

from tfmot_lite.core import graph, layer_kinds
from tfmot_lite.core.config_equality import ConfigEquality
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.conv_bn_folding import (
    QuantizeBatchNorm,
    QuantizeConvBatchNorm,
)
from tfmot_lite.quantization.registry import BitWidths
from tfmot_lite.quantization.same_scale import (
    QuantizeAveragePooling,
    QuantizeBilinearResize,
    QuantizeSameScale,
    is_average_pooling,
    is_bilinear_upsampling,
)
from tfmot_lite.quantization.wrapper import QuantizeAnnotate, QuantizeOperation, call_operation

_register = keras.saving.register_keras_serializable(package="tfmot_lite")
L = keras.layers


class _ConfigEquality(ConfigEquality):
    """No fields by default; equal by config, not hashable."""

    def get_config(self):
        return {}

    __hash__ = None


class Fusion:
    """A Conv -> BatchNorm [-> activation] chain found in a model."""

    def __init__(self, conv, batch_norm, act_layer=None, activation=None):
        self.conv = conv
        self.batch_norm = batch_norm
        self.act_layer = act_layer
        self.activation = activation
        # False: a concatenation alone reads the chain; its range is the op's.
        self.quantize_output = True

    @property
    def layers(self):
        return [x for x in (self.conv, self.batch_norm, self.act_layer) if x is not None]


# Raw Keras operations whose TFLite op (ADD, SUB, MUL) fuses a ReLU after it.
_RELU_FUSING_OPERATIONS = frozenset({"Add", "Subtract", "Multiply"})


def _fusable_activation(op, eligible):
    """`(layer, 'relu' or 'relu6')` where `op` (the one call after a fused
    op) is a ReLU/ReLU6 TFLite can fuse into it; `(None, None)` otherwise."""
    if op is None or not isinstance(op.layer, keras.layers.Layer) or not eligible(op.layer):
        return None, None
    name = layer_kinds.relu_layer_name(_unwrap(op.layer))
    return (op.layer, name) if name is not None else (None, None)


def _unwrap(layer):
    return layer.layer if isinstance(layer, QuantizeAnnotate) else layer


def _scope(path):
    """The model a layer call belongs to: its path minus the layer name."""
    return path.rpartition("/")[0]


def _bn_folds(bn):
    """Whether a BatchNormalization folds into the convolution before it:
    over the channels (last axis), with no renormalization."""
    cfg = bn.get_config()
    return not cfg.get("renorm") and not cfg.get("synchronized") and _bn_axis_last(bn)


def _bn_axis_last(bn):
    """Whether `bn` normalizes over one axis, the last (the channels)."""
    shape = (bn.get_build_config() or {}).get("input_shape")
    axis = layer_kinds.batch_norm_axis(bn)
    return axis == -1 or (axis is not None and shape is not None and axis == len(shape) - 1)


def _has_offset(layer):
    offset = keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(layer.offset, "float32"))
    return bool(np.any(offset.reshape(-1) != 0.0))


def _split_separable(sep, pointwise_layer=QuantizeAnnotate):
    """SeparableConv2D -> DepthwiseConv2D + 1x1 Conv2D (what TFLite runs),
    as a Sequential of the two (`apply` calls them one by one where it can).
    `pointwise_layer(conv)` quantizes the 1x1 convolution (annotates it, or
    folds the BatchNorm after it)."""
    cfg = sep.get_config()
    depthwise = L.DepthwiseConv2D(
        kernel_size=cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
        depth_multiplier=cfg["depth_multiplier"], data_format=cfg["data_format"],
        dilation_rate=cfg["dilation_rate"], use_bias=False, name=f"{sep.name}_depthwise",
    )
    pointwise = L.Conv2D(
        filters=cfg["filters"], kernel_size=1, use_bias=cfg["use_bias"],
        activation=cfg["activation"], data_format=cfg["data_format"],
        name=f"{sep.name}_pointwise",
    )
    shape = sep.get_build_config()["input_shape"]
    depthwise.build(shape)
    depthwise.kernel.assign(sep.depthwise_kernel)
    pointwise.build(depthwise.compute_output_shape(shape))
    pointwise.kernel.assign(sep.pointwise_kernel)
    if cfg["use_bias"]:
        pointwise.bias.assign(sep.bias)
    return keras.Sequential(
        [keras.Input(batch_shape=shape), QuantizeAnnotate(depthwise), pointwise_layer(pointwise)],
        name=sep.name,
    )


def _as_stored(value):
    """A constant MUL or ADD operand as the converter stores it: int8 on one
    range per tensor, `[min(v, 0), max(v, 0)]` (`q.fake_quant_constant`).

    A vector (Normalization's per-channel `1/std` and `-mean/std`) is stored
    up to half a step of that range off its values (ImageNet's `1/std`:
    0.2%), which put 3% of ConvNeXt's and EfficientNet's first outputs on
    another integer than the Keras model's. The layers are built with the
    stored values, so the Keras model computes what the device does. A
    single value is its range's end, stored exactly: kept as written.
    """
    array = np.asarray(keras.ops.convert_to_numpy(value), "float32")
    if array.size <= 1:
        return value
    return keras.ops.convert_to_numpy(q.fake_quant_constant(keras.ops.convert_to_tensor(array)))


def _split_affine(layer, scale, offset):
    """`x * scale + offset` runs as MUL then ADD in TFLite; each gets a range.

    Returns a Sequential of two annotated Rescaling layers named after
    `layer` (a Rescaling with an offset, or an adapted Normalization), with
    the constants as the converter stores them (`_as_stored`).
    """
    shape = (layer.get_build_config() or {}).get("input_shape")
    mul = L.Rescaling(_as_stored(scale), name=f"{layer.name}_scale")
    add = L.Rescaling(1.0, offset=_as_stored(offset), name=f"{layer.name}_offset")
    layers = [keras.Input(batch_shape=shape)] if shape else []
    layers += [QuantizeAnnotate(mul), QuantizeAnnotate(add)]
    return keras.Sequential(layers, name=layer.name)


def _split_rescaling(layer):
    cfg = layer.get_config()
    return _split_affine(layer, cfg["scale"], cfg["offset"])


def _split_normalization(layer):
    ops = keras.ops
    std = ops.convert_to_numpy(
        ops.maximum(ops.sqrt(layer.variance), keras.backend.epsilon())
    ).astype("float32")
    mean = ops.convert_to_numpy(layer.mean).astype("float32")
    if layer.invert:
        scale, offset = std, mean
    else:
        scale = (1.0 / std).astype("float32")
        offset = (-mean * scale).astype("float32")
    return _split_affine(layer, np.asarray(scale), np.asarray(offset))


@_register
class QuantizeLayoutTransform(_ConfigEquality):
    """Base class (tfmot's `QuantizeLayoutTransform`): rewrites layers before
    they are quantized. The base transform rewrites nothing."""

    def apply(self, model, layer_quantize_map):
        """Returns `(new_model, layer_quantize_map)`.

        `layer_quantize_map` is `{layer name: {"quantize_config": config or
        None}}` for the layers to quantize (None: the registry decides).
        Layers the transform returns wrapped in `QuantizeAnnotate` are
        quantized by the registry; `QuantizeConvBatchNorm`,
        `QuantizeBatchNorm` and `QuantizeWrapper` layers are kept as they are.
        """
        return model, layer_quantize_map


@_register
class Default8BitQuantizeLayoutTransform(BitWidths, QuantizeLayoutTransform):
    """The TFLite int8 layout: Conv-BatchNorm[-ReLU] folding, SeparableConv2D
    split, BatchNorm alone, Rescaling with offset and Normalization as MUL
    then ADD (see the module docstring)."""

    def kernel_transform(self, conv):
        """A weight transform for a fused convolution's kernel (None: none).
        Pruning-/cluster-preserving schemes override it."""
        return None

    def find_fusions(self, model, eligible=lambda layer: True):
        """`{id(layer): (role, Fusion or None)}`, role 'head' for the conv
        (replaced by the fused layer), 'folded' for the BatchNorm/activation
        (replaced by an Identity), 'fused_output' for a layer whose output
        range is another op's: the fused ReLU's after it, or that of a
        Concatenate that alone reads it, or 'own_scale' for a same-scale op
        read by a Concatenate and by another layer. `eligible(layer)`
        filters candidate layers."""
        plan = {}
        flow = graph.DataflowGraph(model)
        calls = collections.Counter(id(op.layer) for op in flow.ops)
        outputs = set(flow.outputs)

        def single_next(op):
            """The one call consuming `op`'s output, in the same model."""
            if calls[id(op.layer)] != 1 or outputs.intersection(op.outputs):
                return None
            nxt = flow.next_ops(op)
            if len(nxt) != 1 or _scope(nxt[0].path) != _scope(op.path):
                return None
            if calls[id(nxt[0].layer)] != 1:
                return None
            return nxt[0]

        def read_by_equal_relus(op):
            """Whether `op` (called once, not an output) is read by two or
            more equal ReLUs and nothing else (NASNet's stem: every branch
            of the first cell applies its own ReLU to it). The converter
            merges equal ops on one tensor and fuses the one ReLU left into
            `op`, which then writes the ReLU's range directly: `op` keeps no
            range of its own, and each ReLU rounds once, into its range
            (the same range in each: they track the same values)."""
            if calls[id(op.layer)] != 1 or outputs.intersection(op.outputs):
                return False
            readers = flow.next_ops(op)
            kinds = {_fusable_activation(nxt, eligible)[1] if (
                calls[id(nxt.layer)] == 1 and _scope(nxt.path) == _scope(op.path)) else None
                for nxt in readers}
            return len(readers) > 1 and len(kinds) == 1 and None not in kinds

        def same_scale(op):
            return op is not None and layer_kinds.same_scale_op(_unwrap(op.layer))

        def fed_alone(op):
            """Whether what `op` reads is written for it alone: by an op
            only `op` reads, through same-scale ops (a padding) only the
            next reads. The converter then gives that op `op`'s range; were
            it read elsewhere, its range and `op`'s would meet at a
            same-scale op, which the converter refuses."""
            while len(op.inputs) == 1 and flow.consumers[op.inputs[0]] == [op]:
                op = flow.producer.get(op.inputs[0])
                if op is None or calls[id(op.layer)] != 1:
                    return False
                if not same_scale(op):
                    return True
            return False

        def shares_a_concatenation(op):
            """Whether `op` (called once, fed alone) keeps its input's scale
            and is read by an eligible Concatenate (or Maximum, Minimum) and
            by another layer."""
            readers = flow.next_ops(op)
            joins = [nxt for nxt in readers if layer_kinds.one_scale_join(_unwrap(nxt.layer))]
            return (calls[id(op.layer)] == 1 and len(readers) > len(joins) > 0
                    and same_scale(op) and all(eligible(nxt.layer) for nxt in joins)
                    and fed_alone(op))

        own_scale = {id(op.layer) for op in flow.ops if isinstance(op.layer, keras.layers.Layer)
                     and eligible(op.layer) and shares_a_concatenation(op)}

        def concatenated(op):
            """Whether `op`'s one reader rounds it into a range of its own,
            which the converter gives the op: a Concatenate, Maximum or
            Minimum (`layer_kinds.one_scale_join`: CONCATENATION, MAXIMUM
            and MINIMUM keep one scale) or, through same-scale ops only it
            reads, a same-scale op with its own range."""
            nxt = single_next(op) if op is not None else None
            target = nxt
            while same_scale(target) and id(target.layer) not in own_scale:
                target = single_next(target)
            if target is not None and id(target.layer) in own_scale:
                return True
            return (nxt is not None and eligible(nxt.layer)
                    and layer_kinds.one_scale_join(_unwrap(nxt.layer))
                    and not layer_kinds.one_scale_join(_unwrap(op.layer)))

        for op in flow.ops:
            layer = op.layer
            conv = _unwrap(layer)
            folds = layer_kinds.folds_batch_norm(conv) or isinstance(conv, L.SeparableConv2D)
            if not folds or not eligible(layer):
                continue
            cfg = conv.get_config()
            if cfg.get("activation") not in ("linear", None) or cfg.get(
                "data_format", "channels_last"
            ) != "channels_last" or cfg.get("groups", 1) != 1:
                continue
            bn_op = single_next(op)
            bn_layer = bn_op.layer if bn_op is not None else None
            bn = _unwrap(bn_layer) if bn_layer is not None else None
            if not isinstance(bn, L.BatchNormalization) or not eligible(bn_layer):
                continue
            if not _bn_folds(bn):
                continue
            fusion = Fusion(layer, bn_layer)
            act_op = single_next(bn_op)
            fusion.act_layer, fusion.activation = _fusable_activation(act_op, eligible)
            fusion.quantize_output = not (concatenated(
                act_op if fusion.act_layer is not None else bn_op) or (
                fusion.act_layer is None and read_by_equal_relus(bn_op)))
            plan[id(layer)] = ("head", fusion)
            plan[id(bn_layer)] = ("folded", fusion)
            if fusion.act_layer is not None:
                plan[id(fusion.act_layer)] = ("folded", fusion)
        # Layers whose output range is another op's, not folded above: the
        # ReLU after a layer whose op fuses it sets the op's; a
        # concatenation sets that of a layer it alone reads.
        for op in flow.ops:
            layer = op.layer
            if not isinstance(layer, keras.layers.Layer):
                # A raw `x + 3.0` before a ReLU(6.0): its ADD fuses the ReLU.
                if (type(layer).__name__ in _RELU_FUSING_OPERATIONS
                        and _fusable_activation(single_next(op), eligible)[0] is not None):
                    plan[id(layer)] = ("fused_output", None)
                continue
            if id(layer) in plan or not eligible(layer):
                continue
            inner = _unwrap(layer)
            if layer_kinds.fuses_relu(inner) and layer_kinds.activation_name(
                    getattr(inner, "activation", None)) in ("linear", None):
                act_op = single_next(op)
                act_layer, _ = _fusable_activation(act_op, eligible)
                if act_layer is not None and id(act_layer) not in plan:
                    plan[id(layer)] = ("fused_output", None)
                    if concatenated(act_op):
                        plan[id(act_layer)] = ("fused_output", None)
                    continue
                if read_by_equal_relus(op):
                    plan[id(layer)] = ("fused_output", None)
                    continue
            if id(layer) in own_scale:
                plan[id(layer)] = ("own_scale", None)
            elif concatenated(op):
                plan[id(layer)] = ("fused_output", None)
        return plan

    def apply(self, model, layer_quantize_map):
        def eligible(layer):
            entry = layer_quantize_map.get(layer.name)
            return entry is not None and entry.get("quantize_config") is None

        plan = self.find_fusions(model, eligible)
        splits = set()  # ids of the Sequentials a layer was split into

        def split(sequential):
            splits.add(id(sequential))
            return sequential

        def fold(conv, fusion):
            return QuantizeConvBatchNorm(
                conv, graph.copy_layer(_unwrap(fusion.batch_norm)), fusion.activation,
                self.num_bits_weight, self.num_bits_activation, not self.disable_per_axis,
                kernel_transform=self.kernel_transform(conv),
                quantize_output=fusion.quantize_output, name=f"quant_{conv.name}",
            )

        def fused_output(layer):
            return QuantizeAnnotate(layer, output_fused=True)

        def replace(layer, original):
            role, fusion = plan.get(id(original), (None, None))
            if not isinstance(original, keras.layers.Layer):
                return (QuantizeOperation(layer, quantize_output=False)
                        if role == "fused_output" else layer)
            inner = _unwrap(layer)
            if role == "folded":
                return L.Identity(name=inner.name)
            if role == "head" and isinstance(inner, L.SeparableConv2D):
                return split(_split_separable(inner, lambda pointwise: fold(pointwise, fusion)))
            if role == "head":
                return fold(inner, fusion)
            if not isinstance(original, keras.layers.Layer) or not eligible(original):
                return layer
            if isinstance(inner, L.SeparableConv2D):
                return split(_split_separable(
                    inner, fused_output if role == "fused_output" else QuantizeAnnotate))
            if isinstance(inner, L.BatchNormalization) and _bn_axis_last(inner):
                return QuantizeBatchNorm(inner, self.num_bits_activation,
                                         quantize_output=role != "fused_output")
            if role == "fused_output":
                return fused_output(inner)
            if role == "own_scale":
                return QuantizeSameScale(inner, self.num_bits_activation)
            if is_average_pooling(inner):
                return QuantizeAveragePooling(inner)
            if is_bilinear_upsampling(inner):
                return QuantizeBilinearResize(inner)
            if isinstance(inner, L.Rescaling) and _has_offset(inner):
                return split(_split_rescaling(inner))
            if isinstance(inner, L.Rescaling) and np.size(inner.scale) > 1:
                return L.Rescaling(_as_stored(inner.scale), offset=inner.offset,
                                   name=inner.name, dtype=inner.dtype_policy)
            if isinstance(inner, L.Normalization) and inner.built:
                return split(_split_normalization(inner))
            return layer

        def call(layer, args, kwargs, model_inputs):
            if isinstance(layer, QuantizeOperation):
                return call_operation(layer, args, kwargs)
            if id(layer) in splits:
                # In the graph itself, part by part, not as a nested model:
                # the first part then finds the range of the tensor it reads
                # (`input_range`), which a layer inside a nested model, called
                # on that model's own Input, cannot.
                x = args[0]
                for part in layer.layers:
                    x = part(x)
                return x
            return layer(*args, **kwargs)

        return (graph.rewrite(model, replace, call=call, with_original=True, operations=True),
                layer_quantize_map)
