"""The one table of Keras layer families: their kernels, and what each
technique does with them.

A new layer family goes in one place: a `Family` row of `FAMILIES` below.
Pruning (`sparsity/registry.py`), clustering (`clustering/registry.py`),
quantization (`quantization/registry.py`, the Conv-BatchNorm folding,
`experimental/combine/schemes.py`) and channel pruning
(`sparsity/channels/`, with its MAC counts) all read it. A row names a family of layer classes,
the kernels they hold as `(name, attribute path)` pairs (the name is what
wrappers and saved variables call the weight, the path is where the layer
keeps it), and for each technique:

* `prune`, `cluster`: a `Use` whose verdict is `OPTIMIZE` (their kernels
  are pruned/clustered), `DENSE` (known, left as they are) or `UNSUPPORTED`
  (an error naming the layer);
* `quantize`: a `Use` whose verdict is `'weights'` (kernel and output
  quantized), `'output'` (output only), `'pass'` (the int8 kernel keeps the
  input's scale), `'table'` (a lookup table: int8 table, and the lookup
  keeps its scale), `'inside'` (TFLite runs the layer as several integer
  ops, each quantized inside the layer's call: attention, layer
  normalization) or `UNSUPPORTED`; `per_channel`: a `PerChannel` for the
  families whose int8 kernel has one scale per output channel (None: one
  scale per kernel);
* `channels`: how channel pruning follows the channels (the last axis)
  through the layer: `PRODUCES` (new output channels from its kernel, whose
  last axis holds them; `width` names the config field counting them),
  `CHANNELWISE` (one weight slice per channel, channel `c` to `c`), `KEEPS`
  (no weights, channel `c` stays `c`), `ACTIVATES` (keeps them, and the
  layer is an elementwise function that must map 0 to 0), `MERGES`
  (elementwise join of several tensors), `CONCATENATES`, `MIXES` (moves
  channels into other dimensions) or None (the analysis stops there);
* `macs`: the multiply-accumulates one call costs (`Macs`; None: none
  counted);
* `fuses_relu`: TFLite's int8 op for the layer takes a ReLU/ReLU6 right
  after it as its fused activation (CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED, ADD, SUB, MUL; a standalone BatchNorm's ADD), so the two
  share one output range; a Dense over a sequence too (its bias's ADD,
  after the RESHAPE, takes the ReLU). Not TRANSPOSE_CONV, CONCATENATION,
  MAXIMUM, nor a Conv1D (a RESHAPE comes between).
* `fuses_own_relu`: TFLite's int8 op applies the layer's own ReLU/ReLU6
  `activation` as its fused activation, so one range follows both (every
  family with an `activation` but the transposed convolution: the
  converter runs an int8 TRANSPOSE_CONV's ReLU as a RELU op of its own,
  and with one range after the ReLU it leaves the TRANSPOSE_CONV float).
* `int32_bias`: TFLite's int8 op for the family adds the layer's bias
  as an int32 in units of its input's scale times its kernel's (CONV_2D,
  DEPTHWISE_CONV_2D, FULLY_CONNECTED): the QAT wrappers add the bias
  rounded so in inference (`Borrowed.bias_integers`).
* `same_scale_op`: the family runs as an int8 TFLite op whose output keeps
  its input's scale (pooling, padding, cropping, nearest upsampling,
  reshapes), where an Identity or Dropout runs as no op at all. Read by a
  Concatenate and by another layer, such an op gets a range of its own in
  QAT (`quantization/same_scale.py`).
* `one_scale_join`: a join whose int8 op has one scale for its inputs and
  its output (CONCATENATION, MAXIMUM, MINIMUM): the converter writes an
  input only the join reads in the join's scale, and requantizes one read
  elsewhere too (`quantization/layout.py`).

A column may hold a function `layer -> value` where a layer's own
configuration decides (UpSampling2D's interpolation, Activation's function).

Containers (RNN, StackedRNNCells, Bidirectional, TimeDistributed) hold no
kernels of their own: their rows list the sub-layers, and the verdict and
kernels come from those (`OPTIMIZE` when any sub-layer is optimized,
`UNSUPPORTED` when any is unsupported).

Layers not in the table: a custom layer that implements the technique's
mixin (`PrunableLayer`, `ClusterableLayer`) says itself; a built layer with
no trainable weights is `DENSE` (nothing to optimize); anything else is
`UNSUPPORTED` (and stops the channel analysis).
"""

import dataclasses

import keras
from keras import layers as L

OPTIMIZE = "optimize"
DENSE = "dense"
UNSUPPORTED = "unsupported"

# Channel-pruning roles (the `channels` column).
PRODUCES = "produces"
CHANNELWISE = "channelwise"
KEEPS = "keeps"
ACTIVATES = "activates"
MERGES = "merges"
CONCATENATES = "concatenates"
MIXES = "mixes"

# Activations that combine the channels of a position (not elementwise).
CHANNEL_MIXING_ACTIVATIONS = frozenset({"softmax", "log_softmax", "sparsemax", "glu"})


@dataclasses.dataclass(frozen=True)
class Use:
    """What one technique does with a family, and why."""

    verdict: object  # OPTIMIZE/DENSE/UNSUPPORTED, or a quantization kind
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class PerChannel:
    """How a family's TFLite int8 kernel is quantized per output channel.

    `axis`: the kernel axis holding the output channels (-1; -2 in a
    transposed convolution's `(h, w, out, in)` kernel). `depthwise`: the
    kernel is `(h, w, in, multiplier)` and output channel `c * multiplier + m`
    spans its last two axes, flattened before quantizing along `axis`.
    `converter_reshapes`: the converter reshapes (Conv1D runs as a 2-D
    convolution) or transposes the kernel, so a FakeQuant op's channel axis
    does not survive and the values are rounded with plain ops instead.
    """

    axis: int = -1
    depthwise: bool = False
    converter_reshapes: bool = False


@dataclasses.dataclass(frozen=True)
class Macs:
    """Multiply-accumulates of one example: each of `weights` (attribute
    names) once per output position, or per input position (`per='input'`:
    a transposed convolution scatters each input through its whole kernel)."""

    weights: tuple = ("kernel",)
    per: str = "output"


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the table (see the module docstring)."""

    name: str
    classes: tuple  # Keras classes; `names` below for other libraries'
    prune: Use
    cluster: Use
    quantize: object  # a Use, or a function layer -> Use
    kernels: tuple = ()  # ((name, "attr.path"), ...)
    inner: object = None  # layer -> [(name prefix, sub-layer)], containers
    channels: object = None  # a channel-pruning role, or a function layer -> role
    width: str = None  # PRODUCES: the config field counting output channels
    per_channel: PerChannel = None
    macs: Macs = None
    fuses_relu: object = False  # a bool, or a function layer -> bool
    fuses_own_relu: bool = True
    int32_bias: object = False  # a bool, or a function layer -> bool
    # An int8 TFLite op whose output keeps its input's scale (pooling,
    # padding, reshapes): read by a Concatenate, it is handed the
    # concatenation's scale unless it has a range of its own.
    same_scale_op: object = False  # a bool, or a function layer -> bool
    one_scale_join: object = False  # a bool, or a function layer -> bool
    # Classes of libraries tfmot-lite does not import (KerasHub), or not
    # exported by Keras (`keras.applications`' LayerScale), as
    # `"package:ClassName"`: matched against the layer's class and its bases.
    names: tuple = ()


def _k(*names):
    return tuple((name, name) for name in names)


_BOTH = Use(OPTIMIZE, "holds most of the parameters and multiplies activations")
_NO_WEIGHTS = Use(DENSE, "no weights")
_POINTWISE = Use(OPTIMIZE, "the pointwise kernel holds the parameters")
_DEPTHWISE_PRUNE = Use(DENSE, "few weights, large accuracy cost when zeroed (as tfmot)")
_DEPTHWISE_CLUSTER = Use(OPTIMIZE, "shared values make MobileNet-style models compress; "
                                   "tfmot leaves it dense")
_Q_UNSUPPORTED = Use(UNSUPPORTED, "no int8 TFLite kernel in the default 8-bit scheme")
_Q_PER_TENSOR = Use("weights", "per-tensor int8 weights")
_Q_PER_CHANNEL = Use("weights", "per-channel int8 weights")
_Q_OUTPUT = Use("output", "computes new values: its int8 output needs its own scale")
_Q_PASS = Use("pass", "its int8 kernel keeps the input's scale")
_SEQUENCE_Q = Use(UNSUPPORTED, "the default 8-bit scheme quantizes no recurrent layers")
_Q_TABLE = Use("table", "int8 table; TFLite's GATHER keeps its scale")
_Q_INSIDE = Use("inside", "TFLite runs it as several integer ops, each with its own range")
_MACS = Macs()
_MACS_TRANSPOSED = Macs(per="input")
_MACS_SEPARABLE = Macs(("depthwise_kernel", "pointwise_kernel"))


def _keeps_scale(layer):
    """An UpSampling2D TFLite's int8 RESIZE_NEAREST_NEIGHBOR or
    RESIZE_BILINEAR runs: both keep their input's scale."""
    return layer.interpolation in ("nearest", "bilinear")


def _upsampling_kind(layer):
    return _Q_PASS if _keeps_scale(layer) else _Q_OUTPUT


def _activation_quantize(layer):
    """A linear `Activation` (ConvNeXt's `_identity`) is no op in the
    .tflite: the converter folds a range after it into the op before, which
    then rounds once; a range of its own made the Keras model round twice."""
    if activation_name(layer.activation) == "linear":
        return Use("pass", "a linear activation is no op: the int8 tensor keeps its scale")
    return _Q_OUTPUT


def _activation_channels(layer):
    if activation_name(layer.activation) in CHANNEL_MIXING_ACTIVATIONS:
        return None
    return ACTIVATES


def _merge_quantize(layer):
    shapes = (layer.get_build_config() or {}).get("input_shape") if layer.built else None
    if isinstance(layer, L.Add) and shapes is not None and len(shapes) > 2:
        return Use("inside", "a sum of more than two tensors: TFLite adds two at a time, "
                             "and each partial sum needs a range")
    if isinstance(layer, L.Average):
        return Use("inside", "TFLite adds, then multiplies by 1/n: the sum needs a range")
    return _Q_OUTPUT


def _keeps_one_scale(layer):
    return isinstance(layer, (L.Maximum, L.Minimum))


def _merge_fuses_relu(layer):
    shapes = (layer.get_build_config() or {}).get("input_shape") if layer.built else None
    return isinstance(layer, (L.Add, L.Subtract, L.Multiply)) and (
        shapes is not None and len(shapes) == 2)


def _dense_is_one_op(layer):
    """A Dense the converter runs as one FULLY_CONNECTED (not a matmul over
    a sequence with a RESHAPE before its bias)."""
    return _dense_quantize(layer) is _Q_PER_TENSOR


def _dense_quantize(layer):
    shape = (layer.get_build_config() or {}).get("input_shape") if layer.built else None
    if shape is not None and len(shape) > 2 and layer.use_bias:
        return Use("inside", "a matmul over a sequence: the converter reshapes before "
                             "the bias, which needs its own range")
    return _Q_PER_TENSOR


def _attention_quantize(layer):
    if getattr(layer, "_use_gate", False):
        return Use(UNSUPPORTED, "gated attention (use_gate=True) multiplies by a gate "
                                "inside its call")
    axes = getattr(layer, "_attention_axes", None)
    if axes is not None and len(axes) > 1:
        return Use(UNSUPPORTED, f"softmax over several attention axes {tuple(axes)}")
    return _Q_INSIDE


def _recurrent_quantize(layer):
    """LSTM, GRU and SimpleRNN layers with their default activations are
    quantized step by step (`quantization/recurrent.py`)."""
    cell = getattr(layer, "cell", None)
    activation = activation_name(getattr(cell, "activation", None))
    if isinstance(layer, L.LSTM) and activation == "tanh" and activation_name(
            cell.recurrent_activation) == "sigmoid":
        return _Q_INSIDE
    if isinstance(layer, L.GRU) and activation == "tanh" and activation_name(
            cell.recurrent_activation) == "sigmoid":
        return _Q_INSIDE
    if isinstance(layer, L.SimpleRNN) and activation == "tanh":
        return _Q_INSIDE
    return Use(UNSUPPORTED, "QAT covers LSTM, GRU and SimpleRNN layers with their default "
                            "activations")


def _rnn_cell(layer):
    return [("", layer.cell)]


def _stacked_cells(layer):
    return [(f"cell{i}_", cell) for i, cell in enumerate(layer.cells)]


def _bidirectional(layer):
    return [("forward_", layer.forward_layer), ("backward_", layer.backward_layer)]


def _time_distributed(layer):
    return [("", layer.layer)]


FAMILIES = (
    # -- layers with kernels ----------------------------------------------
    Family("dense", (L.Dense,), _BOTH, _BOTH, _dense_quantize, _k("kernel"),
           channels=PRODUCES, width="units", macs=_MACS, fuses_relu=True,
           int32_bias=_dense_is_one_op),
    Family("einsum dense", (L.EinsumDense,), _BOTH,
           Use(OPTIMIZE, "Keras 3 builds attention from it"), _Q_INSIDE, _k("kernel"),
           macs=_MACS),
    Family("convolution 1D", (L.Conv1D,), _BOTH, _BOTH, _Q_PER_CHANNEL, _k("kernel"),
           channels=PRODUCES, width="filters", macs=_MACS,
           per_channel=PerChannel(converter_reshapes=True), int32_bias=True),
    Family("convolution 2D", (L.Conv2D,), _BOTH, _BOTH, _Q_PER_CHANNEL, _k("kernel"),
           channels=PRODUCES, width="filters", macs=_MACS, per_channel=PerChannel(),
           fuses_relu=True, int32_bias=True),
    Family("convolution 3D", (L.Conv3D,), _BOTH, _BOTH, _Q_UNSUPPORTED, _k("kernel"),
           macs=_MACS),
    Family("transposed convolution 2D", (L.Conv2DTranspose,), _BOTH, _BOTH,
           _Q_PER_CHANNEL, _k("kernel"), macs=_MACS_TRANSPOSED,
           per_channel=PerChannel(axis=-2, converter_reshapes=True), fuses_own_relu=False),
    Family("other transposed convolutions", (L.Conv1DTranspose, L.Conv3DTranspose),
           _BOTH, _BOTH, _Q_UNSUPPORTED, _k("kernel"), macs=_MACS_TRANSPOSED),
    Family("separable convolution 2D", (L.SeparableConv2D,), _POINTWISE, _POINTWISE,
           # The layout transform splits it first; the parts are quantized per channel.
           Use("weights", "split into depthwise and 1x1 convolutions"),
           _k("pointwise_kernel"), channels=PRODUCES, width="filters", macs=_MACS_SEPARABLE,
           fuses_relu=True),
    Family("separable convolution 1D", (L.SeparableConv1D,), _POINTWISE, _POINTWISE,
           _Q_UNSUPPORTED, _k("pointwise_kernel"),
           channels=PRODUCES, width="filters", macs=_MACS_SEPARABLE),
    Family("depthwise convolution 2D", (L.DepthwiseConv2D,), _DEPTHWISE_PRUNE,
           _DEPTHWISE_CLUSTER, _Q_PER_CHANNEL, (("depthwise_kernel", "kernel"),),
           channels=CHANNELWISE, macs=_MACS, per_channel=PerChannel(depthwise=True),
           fuses_relu=True, int32_bias=True),
    Family("depthwise convolution 1D", (L.DepthwiseConv1D,), _DEPTHWISE_PRUNE,
           _DEPTHWISE_CLUSTER, _Q_UNSUPPORTED, (("depthwise_kernel", "kernel"),),
           channels=CHANNELWISE, macs=_MACS),
    Family("embedding", (L.Embedding,), _BOTH, _BOTH, _Q_TABLE, _k("embeddings")),
    Family("position embedding", (), Use(OPTIMIZE, "a table of positions, as an embedding"),
           Use(OPTIMIZE, "a table of positions, as an embedding"), _Q_TABLE,
           _k("position_embeddings"), names=("keras_hub:PositionEmbedding",)),
    Family("multi-head attention", (L.MultiHeadAttention,), _BOTH, _BOTH, _attention_quantize,
           tuple((f"{p}_kernel", f"{p}_dense.kernel")
                 for p in ("query", "key", "value", "output"))),
    Family("recurrent cell", (L.SimpleRNNCell, L.LSTMCell, L.GRUCell), _BOTH, _BOTH,
           _SEQUENCE_Q, _k("kernel", "recurrent_kernel")),
    # -- containers ---------------------------------------------------------
    Family("stacked cells", (L.StackedRNNCells,), Use(OPTIMIZE, "its cells"),
           Use(OPTIMIZE, "its cells"), _SEQUENCE_Q, inner=_stacked_cells),
    Family("recurrent layer", (L.RNN,), Use(OPTIMIZE, "its cell"),
           Use(OPTIMIZE, "its cell"), _recurrent_quantize, inner=_rnn_cell),
    Family("bidirectional", (L.Bidirectional,), Use(OPTIMIZE, "both directions"),
           Use(OPTIMIZE, "both directions"), _SEQUENCE_Q, inner=_bidirectional),
    Family("time distributed", (L.TimeDistributed,), Use(OPTIMIZE, "the layer it wraps"),
           Use(OPTIMIZE, "the layer it wraps"), _SEQUENCE_Q, inner=_time_distributed),
    # -- layers with a few weights ------------------------------------------
    Family("batch normalization", (L.BatchNormalization,),
           Use(DENSE, "statistics, folded into the convolution at export"),
           Use(DENSE, "statistics, folded into the convolution at export"), _Q_OUTPUT,
           channels=CHANNELWISE, fuses_relu=True),
    Family("layer normalization", (L.LayerNormalization,),
           Use(DENSE, "scale and shift: few weights"),
           Use(DENSE, "scale and shift: few weights"), _Q_INSIDE),
    Family("group normalization", (L.GroupNormalization,),
           Use(DENSE, "scale and shift: few weights"),
           Use(DENSE, "scale and shift: few weights"), _Q_UNSUPPORTED),
    Family("input normalization", (L.Normalization,),
           Use(DENSE, "adapted statistics, not trained"),
           Use(DENSE, "adapted statistics, not trained"), _Q_OUTPUT),
    Family("layer scale", (), Use(DENSE, "one scale per channel: few weights"),
           Use(DENSE, "one scale per channel: few weights"), _Q_OUTPUT,
           channels=CHANNELWISE, names=("keras:LayerScale",)),
    Family("parametric relu", (L.PReLU,),
           Use(DENSE, "per-unit slopes: few weights, and zeroing one changes the activation"),
           Use(DENSE, "per-unit slopes: few weights, and sharing them saves nothing"),
           _Q_OUTPUT),
    # -- no weights: new values (int8 output scale of their own) -----------
    Family("elementwise merges",
           (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum),
           _NO_WEIGHTS, _NO_WEIGHTS, _merge_quantize, channels=MERGES,
           fuses_relu=_merge_fuses_relu, one_scale_join=_keeps_one_scale),
    Family("scaled residual sum", (), _NO_WEIGHTS, _NO_WEIGHTS,
           Use("inside", "x + r * scale runs as MUL by the constant, then ADD: "
                         "the product needs a range"),
           channels=MERGES, fuses_relu=True,
           names=("keras:CustomScaleLayer",)),  # keras.applications' Inception-ResNet
    Family("concatenate", (L.Concatenate,), _NO_WEIGHTS, _NO_WEIGHTS, _Q_OUTPUT,
           channels=CONCATENATES, one_scale_join=True),
    Family("activation layers", (L.ReLU, L.LeakyReLU, L.ELU), _NO_WEIGHTS, _NO_WEIGHTS,
           _Q_OUTPUT, channels=ACTIVATES),
    Family("activation", (L.Activation,), _NO_WEIGHTS, _NO_WEIGHTS, _activation_quantize,
           channels=_activation_channels),
    Family("global average pooling", (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D),
           _NO_WEIGHTS, _NO_WEIGHTS, _Q_OUTPUT, channels=KEEPS),
    Family("other new values", (L.Softmax, L.Rescaling), _NO_WEIGHTS, _NO_WEIGHTS,
           _Q_OUTPUT),
    # -- no weights: same scale (int8 kernel keeps the input's) -------------
    Family("upsampling 2D", (L.UpSampling2D,), _NO_WEIGHTS, _NO_WEIGHTS, _upsampling_kind,
           channels=KEEPS, same_scale_op=_keeps_scale),
    Family("no op in inference", (
        L.Identity, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
        L.GaussianNoise, L.GaussianDropout, L.ActivityRegularization,
    ), _NO_WEIGHTS, _NO_WEIGHTS, _Q_PASS, channels=KEEPS),
    Family("pooling, padding and cropping", (
        L.ZeroPadding1D, L.ZeroPadding2D, L.Cropping1D, L.Cropping2D, L.UpSampling1D,
        L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D,
        L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
    ), _NO_WEIGHTS, _NO_WEIGHTS, _Q_PASS, channels=KEEPS, same_scale_op=True),
    Family("flatten and reshape", (L.Reshape, L.Flatten), _NO_WEIGHTS, _NO_WEIGHTS,
           _Q_PASS, channels=MIXES, same_scale_op=True),
    Family("other same scale",
           (L.InputLayer, L.AlphaDropout, L.Permute, L.RepeatVector),
           _NO_WEIGHTS, _NO_WEIGHTS, _Q_PASS),
)


def family(layer):
    """The table row for `layer`, or None when the table does not know it."""
    for row in FAMILIES:
        if isinstance(layer, row.classes):
            return row
    names = {f"{cls.__module__.partition('.')[0]}:{cls.__name__}" for cls in type(layer).__mro__}
    for row in FAMILIES:
        if names.intersection(row.names):
            return row
    return None


def classes(technique, verdict):
    """Every class whose family has `verdict` for `technique` (a static
    column: 'prune', 'cluster' or 'quantize')."""
    return tuple(
        cls for row in FAMILIES
        if isinstance(getattr(row, technique), Use)
        and getattr(row, technique).verdict == verdict
        for cls in row.classes
    )


def _column(layer, name):
    """`layer`'s value in column `name` (a function column called on it);
    None for layers the table does not know."""
    row = family(layer)
    if row is None:
        return None
    value = getattr(row, name)
    return value(layer) if callable(value) else value


def quantize_kind(layer):
    """`'weights'`, `'output'`, `'pass'`, `'table'`, `'inside'` or None (not
    supported)."""
    use = _column(layer, "quantize")
    return None if use is None or use.verdict == UNSUPPORTED else use.verdict


def per_channel(layer):
    """The `PerChannel` layout of `layer`'s int8 kernel; None when it is
    quantized per tensor (or not at all)."""
    return _column(layer, "per_channel")


def folds_batch_norm(layer):
    """Whether a BatchNormalization after `layer` folds into its int8 kernel
    (Conv1D, Conv2D, DepthwiseConv2D): a per-channel kernel whose output
    channels lie on its last axis, where the folded scale multiplies them."""
    layout = per_channel(layer)
    return layout is not None and layout.axis == -1


def fuses_relu(layer):
    """Whether a ReLU/ReLU6 right after `layer` is its TFLite op's fused
    activation (see the `fuses_relu` column)."""
    return bool(_column(layer, "fuses_relu"))


def fuses_activation(layer, name):
    """Whether `layer`'s TFLite op applies its own activation `name` (a
    Keras activation name) as a fused activation, so that one range follows
    both: "linear" always; "relu" and "relu6" unless the `fuses_own_relu`
    column says otherwise (True for layers not in the table)."""
    if name == "linear":
        return True
    if name not in ("relu", "relu6"):
        return False
    found = _column(layer, "fuses_own_relu")
    return True if found is None else bool(found)


def int32_bias(layer):
    """Whether `layer`'s int8 TFLite op adds its bias as an int32 in units
    of input scale times kernel scale (see the `int32_bias` column)."""
    return bool(_column(layer, "int32_bias"))


def same_scale_op(layer):
    """Whether `layer` runs as an int8 TFLite op whose output keeps its
    input's scale (see the `same_scale_op` column)."""
    return bool(_column(layer, "same_scale_op"))


def one_scale_join(layer):
    """Whether `layer` joins tensors in an int8 op with one scale for its
    inputs and its output (see the `one_scale_join` column)."""
    return bool(_column(layer, "one_scale_join"))


def channel_role(layer):
    """How channel pruning follows channels through `layer`: one of the
    channel roles (`PRODUCES`, ...), or None where the analysis stops."""
    return _column(layer, "channels")


def channel_width_field(layer):
    """The config field counting a producer's output channels ('units',
    'filters')."""
    return _column(layer, "width")


def macs(layer):
    """The `Macs` of one call of `layer`; None when none are counted."""
    return _column(layer, "macs")


@dataclasses.dataclass(frozen=True)
class Technique:
    """How one weight-optimizing technique reads the table.

    `column`: 'prune' or 'cluster'; `mixin`: the class a custom layer
    implements to opt in; `own_kernels(layer)`: `[(name, variable)]` of such
    a layer.
    """

    column: str
    mixin: type
    own_kernels: object


def verdict(layer, technique):
    """`OPTIMIZE`, `DENSE` or `UNSUPPORTED` for `layer` (built or not)."""
    if isinstance(layer, technique.mixin):
        if layer.built and not technique.own_kernels(layer):
            return DENSE
        return OPTIMIZE
    row = family(layer)
    if row is None:
        return DENSE if layer.built and not layer.trainable_weights else UNSUPPORTED
    if row.inner is None:
        return getattr(row, technique.column).verdict
    found = {verdict(sub, technique) for _, sub in row.inner(layer)}
    if UNSUPPORTED in found:
        return UNSUPPORTED
    return OPTIMIZE if OPTIMIZE in found else DENSE


def activation_name(activation):
    """The name of an activation: `'relu'`, `'relu6'`, `'gelu'`, `'linear'`, ...

    `activation` is a function (Keras' own, whose names are the ones Keras
    serializes, or a custom callable, named by its `__name__`), a string
    naming one, or None (gives None). Layers hold theirs as
    `layer.activation`."""
    if activation is None or isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


# The ReLUs an int8 kernel (convolution, fully connected, ADD) fuses by
# clamping into its output range, by name.
FUSED_RELUS = ("relu", "relu6")


def keras_relu_name(activation):
    """"relu" or "relu6" where `activation` is Keras' own function of that
    name (no slope, threshold or cap of a user's own), else None."""
    if activation is keras.activations.relu or activation is keras.activations.relu6:
        return activation_name(activation)
    return None


def relu_layer_name(layer):
    """"relu" or "relu6" where `layer` is a ReLU layer an int8 op can fuse
    (a `ReLU` with no slope or threshold, capped at 6.0 or not at all, or an
    `Activation` of either), else None."""
    if isinstance(layer, L.ReLU):
        config = layer.get_config()
        if config.get("negative_slope", 0) or config.get("threshold", 0):
            return None
        cap = config.get("max_value")
        if cap is None:
            return "relu"
        return "relu6" if float(cap) == 6.0 else None
    if isinstance(layer, L.Activation):
        name = layer.get_config().get("activation")
        return name if name in FUSED_RELUS else None
    return None


def batch_norm_axis(layer):
    """The one axis a BatchNormalization normalizes over, as configured
    (maybe negative); None when it normalizes over several."""
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return None
        axis = axis[0]
    return int(axis)


def _attribute(layer, path):
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


def listed_kernels(layer):
    """`[(name, variable)]`: the kernels `layer`'s row lists, whatever the
    technique (empty for containers and layers the table does not know)."""
    row = family(layer)
    if row is None:
        return []
    return [(name, _attribute(layer, path)) for name, path in row.kernels]


def all_kernels(layer):
    """`[(name, variable)]`: the kernels `layer`'s row lists, and those of
    the sub-layers a container row names (an RNN's cell)."""
    row = family(layer)
    if row is None:
        return []
    if row.inner is None:
        return listed_kernels(layer)
    return [(prefix + name, variable) for prefix, sub in row.inner(layer)
            for name, variable in all_kernels(sub)]


def kernels(layer, technique):
    """`[(name, variable)]` that `technique` optimizes in the built `layer`:
    empty when it stays dense, None when it is unsupported."""
    found = verdict(layer, technique)
    if found != OPTIMIZE:
        return None if found == UNSUPPORTED else []
    if isinstance(layer, technique.mixin):
        return list(technique.own_kernels(layer))
    row = family(layer)
    if row.inner is None:
        return listed_kernels(layer)
    subs = row.inner(layer)
    return [
        (prefix + name, variable)
        for prefix, sub in subs
        for name, variable in kernels(sub, technique)
    ]


def unsupported_layer_error(action, mixin_path, method, paths, note=""):
    """The one error for layers holding weights that `action` ('prune',
    'cluster') cannot classify."""
    listed = "\n".join(f"  - {p}" for p in paths)
    call = "prune_low_magnitude(l)" if action == "prune" else "cluster_weights(l, 16)"
    return ValueError(
        f"Cannot {action}: these layers hold weights but are neither known to "
        f"tfmot_lite nor a {mixin_path.rsplit('.', 1)[-1]}:\n{listed}\n"
        f"Either make each of them a `{mixin_path}` returning the weights to "
        f"{action} from `{method}()`{note}, or {action} only the layers you "
        "choose: `tfmot_lite.clone_model(model, clone_function=lambda l: "
        f"{call} if isinstance(l, keras.layers.Dense) else l)` (Keras' "
        "clone_model, also reaching the layers inside subclassed layers)."
    )
