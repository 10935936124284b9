"""The one table of Keras layer families: their kernels, and what each
technique does with them.

Pruning (`sparsity/registry.py`), clustering (`clustering/registry.py`) and
quantization (`quantization/registry.py`, its `kind()`) all read `FAMILIES`.
A row names a family of layer classes, the kernels they hold as
`(name, attribute path)` pairs (the name is what wrappers and saved
variables call the weight, the path is where the layer keeps it), and for
each technique a `Use`:

* pruning and clustering: `OPTIMIZE` (their kernels are pruned/clustered),
  `DENSE` (known, left as they are) or `UNSUPPORTED` (an error naming the
  layer);
* quantization: `'weights'` (kernel and output quantized), `'output'` (output
  only), `'pass'` (the int8 kernel keeps the input's scale) or `UNSUPPORTED`.

Containers (RNN, StackedRNNCells, Bidirectional, TimeDistributed) hold no
kernels of their own: their rows list the sub-layers, and the verdict and
kernels come from those (`OPTIMIZE` when any sub-layer is optimized,
`UNSUPPORTED` when any is unsupported).

Layers not in the table: a custom layer that implements the technique's
mixin (`PrunableLayer`, `ClusterableLayer`) says itself; a built layer with
no trainable weights is `DENSE` (nothing to optimize); anything else is
`UNSUPPORTED`.
"""

import dataclasses

from keras import layers as L

OPTIMIZE = "optimize"
DENSE = "dense"
UNSUPPORTED = "unsupported"


@dataclasses.dataclass(frozen=True)
class Use:
    """What one technique does with a family, and why."""

    verdict: object  # OPTIMIZE/DENSE/UNSUPPORTED, or a quantization kind
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the table (see the module docstring)."""

    name: str
    classes: tuple
    prune: Use
    cluster: Use
    quantize: object  # a Use, or a function layer -> Use
    kernels: tuple = ()  # ((name, "attr.path"), ...)
    inner: object = None  # layer -> [(name prefix, sub-layer)], containers


def _k(*names):
    return tuple((name, name) for name in names)


_BOTH = Use(OPTIMIZE, "holds most of the parameters and multiplies activations")
_NO_WEIGHTS = Use(DENSE, "no weights")
_Q_UNSUPPORTED = Use(UNSUPPORTED, "no int8 TFLite kernel in the default 8-bit scheme")
_Q_OUTPUT = Use("output", "computes new values: its int8 output needs its own scale")
_Q_PASS = Use("pass", "its int8 kernel keeps the input's scale")
_SEQUENCE_Q = Use(UNSUPPORTED, "the default 8-bit scheme quantizes no sequence layers")


def _upsampling_kind(layer):
    if layer.interpolation == "nearest":
        return _Q_PASS
    return _Q_OUTPUT


def _rnn_cell(layer):
    return [("", layer.cell)]


def _stacked_cells(layer):
    return [(f"cell{i}_", cell) for i, cell in enumerate(layer.cells)]


def _bidirectional(layer):
    return [("forward_", layer.forward_layer), ("backward_", layer.backward_layer)]


def _time_distributed(layer):
    return [("", layer.layer)]


FAMILIES = (
    Family("dense", (L.Dense,), _BOTH, _BOTH,
           Use("weights", "per-tensor int8 weights"), _k("kernel")),
    Family("einsum dense", (L.EinsumDense,), _BOTH,
           Use(OPTIMIZE, "Keras 3 builds attention from it"), _Q_UNSUPPORTED, _k("kernel")),
    Family("convolution", (L.Conv1D, L.Conv2D), _BOTH, _BOTH,
           Use("weights", "per-channel int8 weights"), _k("kernel")),
    Family("transposed convolution 2D", (L.Conv2DTranspose,), _BOTH, _BOTH,
           Use("weights", "per-channel int8 weights"), _k("kernel")),
    Family("other convolutions", (L.Conv3D, L.Conv1DTranspose, L.Conv3DTranspose),
           _BOTH, _BOTH, _Q_UNSUPPORTED, _k("kernel")),
    Family("separable convolution 2D", (L.SeparableConv2D,),
           Use(OPTIMIZE, "the pointwise kernel holds the parameters"),
           Use(OPTIMIZE, "the pointwise kernel holds the parameters"),
           Use("weights", "split into depthwise and 1x1 convolutions"),
           _k("pointwise_kernel")),
    Family("separable convolution 1D", (L.SeparableConv1D,),
           Use(OPTIMIZE, "the pointwise kernel holds the parameters"),
           Use(OPTIMIZE, "the pointwise kernel holds the parameters"),
           _Q_UNSUPPORTED, _k("pointwise_kernel")),
    Family("depthwise convolution 2D", (L.DepthwiseConv2D,),
           Use(DENSE, "few weights, large accuracy cost when zeroed (as tfmot)"),
           Use(OPTIMIZE, "shared values make MobileNet-style models compress; "
                         "tfmot leaves it dense"),
           Use("weights", "per-channel int8 weights"),
           (("depthwise_kernel", "kernel"),)),
    Family("depthwise convolution 1D", (L.DepthwiseConv1D,),
           Use(DENSE, "few weights, large accuracy cost when zeroed (as tfmot)"),
           Use(OPTIMIZE, "shared values make MobileNet-style models compress; "
                         "tfmot leaves it dense"),
           _Q_UNSUPPORTED, (("depthwise_kernel", "kernel"),)),
    Family("embedding", (L.Embedding,), _BOTH, _BOTH, _SEQUENCE_Q, _k("embeddings")),
    Family("multi-head attention", (L.MultiHeadAttention,), _BOTH, _BOTH, _SEQUENCE_Q,
           tuple((f"{p}_kernel", f"{p}_dense.kernel")
                 for p in ("query", "key", "value", "output"))),
    Family("recurrent cell", (L.SimpleRNNCell, L.LSTMCell, L.GRUCell), _BOTH, _BOTH,
           _SEQUENCE_Q, _k("kernel", "recurrent_kernel")),
    Family("stacked cells", (L.StackedRNNCells,), Use(OPTIMIZE, "its cells"),
           Use(OPTIMIZE, "its cells"), _SEQUENCE_Q, inner=_stacked_cells),
    Family("recurrent layer", (L.RNN,), Use(OPTIMIZE, "its cell"),
           Use(OPTIMIZE, "its cell"), _SEQUENCE_Q, inner=_rnn_cell),
    Family("bidirectional", (L.Bidirectional,), Use(OPTIMIZE, "both directions"),
           Use(OPTIMIZE, "both directions"), _SEQUENCE_Q, inner=_bidirectional),
    Family("time distributed", (L.TimeDistributed,), Use(OPTIMIZE, "the layer it wraps"),
           Use(OPTIMIZE, "the layer it wraps"), _SEQUENCE_Q, inner=_time_distributed),
    Family("batch normalization", (L.BatchNormalization,),
           Use(DENSE, "statistics, folded into the convolution at export"),
           Use(DENSE, "statistics, folded into the convolution at export"), _Q_OUTPUT),
    Family("other normalization", (L.LayerNormalization, L.GroupNormalization),
           Use(DENSE, "scale and shift: few weights"),
           Use(DENSE, "scale and shift: few weights"), _Q_UNSUPPORTED),
    Family("input normalization", (L.Normalization,),
           Use(DENSE, "adapted statistics, not trained"),
           Use(DENSE, "adapted statistics, not trained"), _Q_OUTPUT),
    Family("parametric relu", (L.PReLU,),
           Use(DENSE, "per-unit slopes: few weights, and zeroing one changes the activation"),
           Use(DENSE, "per-unit slopes: few weights, and sharing them saves nothing"),
           _Q_OUTPUT),
    Family("upsampling 2D", (L.UpSampling2D,), _NO_WEIGHTS, _NO_WEIGHTS, _upsampling_kind),
    Family("new values", (
        L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum, L.Concatenate,
        L.ReLU, L.LeakyReLU, L.ELU, L.Softmax, L.Activation,
        L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.Rescaling,
    ), _NO_WEIGHTS, _NO_WEIGHTS, _Q_OUTPUT),
    Family("same scale", (
        L.InputLayer, L.Identity, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
        L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
        L.Reshape, L.Flatten, L.Permute, L.RepeatVector,
        L.ZeroPadding1D, L.ZeroPadding2D, L.Cropping1D, L.Cropping2D, L.UpSampling1D,
        L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D,
        L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
    ), _NO_WEIGHTS, _NO_WEIGHTS, _Q_PASS),
)


def family(layer):
    """The table row for `layer`, or None when the table does not know it."""
    for row in FAMILIES:
        if isinstance(layer, row.classes):
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


def quantize_kind(layer):
    """`'weights'`, `'output'`, `'pass'` or None (not supported)."""
    row = family(layer)
    if row is None:
        return None
    use = row.quantize if isinstance(row.quantize, Use) else row.quantize(layer)
    return None if use.verdict == UNSUPPORTED else use.verdict


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


def _attribute(layer, path):
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


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
        return [(name, _attribute(layer, path)) for name, path in row.kernels]
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
        "choose: `keras.models.clone_model(model, clone_function=lambda l: "
        f"{call} if isinstance(l, keras.layers.Dense) else l)`."
    )
