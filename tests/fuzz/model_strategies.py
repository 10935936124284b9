"""Random Keras models for the model fuzzer (hypothesis strategies).

`models(...)` draws a `ModelRecipe`: the Python source of a Keras 3 model
built from the layer families tfmot-lite knows (`core/layer_kinds.py`),
shaped the way the models of tfmot's bug tracker are: branches that merge
(Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate), layers
called at two call sites, Functional and Sequential models nested as layers
(and called twice), several inputs and outputs, an integer input feeding an
Embedding. A recipe is source code so that a failing example prints as a
reproducer that runs as it is: `recipe.build()`, or `exec` the code with
`keras` and `L = keras.layers`; it leaves the model in `model`.

Shapes stay tiny (images up to 8x8, a few channels) so that an example
builds, trains and converts in seconds. Every model ends in classifier heads
(`Dense(classes)`, logits), so predictions also compare by top-1.
"""

import dataclasses
import random

import keras
import numpy as np
from hypothesis import strategies as st

IMAGE, SEQUENCE, VECTOR, TOKENS = "image", "sequence", "vector", "tokens"
VOCABULARY = 12
ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "swish", "hard_sigmoid", "linear")
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
MAX_ELEMENTS = 400  # per example, per tensor: keeps every model tiny


@dataclasses.dataclass(frozen=True)
class ModelRecipe:
    """A drawn model: `code` builds it (into `model`) from a fixed seed."""

    code: str
    inputs: tuple  # ((shape without batch, dtype), ...); int32 inputs are token ids
    classes: tuple  # classes of each output, in output order
    sequential: bool

    def build(self, seed=0):
        keras.utils.set_random_seed(seed)
        namespace = {"keras": keras, "L": keras.layers}
        exec(self.code, namespace)  # noqa: S102 - source generated here
        return namespace["model"]

    def sample_inputs(self, count, seed=0):
        """`count` examples per model input (a list when there are several)."""
        rng = np.random.default_rng(seed)
        batch = []
        for shape, dtype in self.inputs:
            if dtype == "int32":
                batch.append(rng.integers(0, VOCABULARY, size=(count, *shape)).astype("int32"))
            else:
                batch.append(rng.normal(size=(count, *shape)).astype("float32"))
        return batch[0] if len(batch) == 1 else batch

    def sample_labels(self, count, seed=0):
        rng = np.random.default_rng(seed + 1)
        labels = [rng.integers(0, c, size=count).astype("int32") for c in self.classes]
        return labels[0] if len(labels) == 1 else labels

    def __repr__(self):
        return "ModelRecipe(code='''\n" + self.code + "''')"


def layer_from_source(source):
    """The unbuilt layer that a recipe's layer source creates. (Creating a
    layer may draw Keras seeds from Python's `random`; its state is put back,
    so that drawing examples stays deterministic for hypothesis.)"""
    state = random.getstate()
    try:
        return eval(source, {"keras": keras, "L": keras.layers})  # noqa: S307
    finally:
        random.setstate(state)


@dataclasses.dataclass
class _Tensor:
    var: str
    shape: tuple
    sources: frozenset  # the model inputs it depends on
    used: bool = False

    @property
    def kind(self):
        return {3: IMAGE, 2: SEQUENCE, 1: VECTOR}[len(self.shape)]


@dataclasses.dataclass
class _Callable:
    """A layer or nested model already called once: it can be called again
    on a tensor of `shape` (a shared layer, a second call site)."""

    var: str
    shape: tuple
    out_shape: tuple
    self_attention: bool = False


class _Writer:
    """The source of one graph: the top model, or a nested one.

    A Functional writer writes `lN = <layer>` / `xM = lN(...)` lines; a
    Sequential writer lists layer sources. Nested model definitions go to
    `preamble`, which the outermost writer emits first.
    """

    def __init__(self, draw, allowed, prefix, counter, sequential):
        self.draw, self.allowed, self.prefix = draw, allowed, prefix
        self.counter, self.sequential = counter, sequential
        self.lines, self.layers, self.preamble = [], [], []
        self.tensors, self.callables = [], []

    def name(self, what):
        self.counter[0] += 1
        return f"{self.prefix}{what}_{self.counter[0]}"

    def allows(self, source):
        return self.allowed is None or self.allowed(source)

    def add_input(self, var, shape, dtype, index):
        self.lines.append(f'{var} = keras.Input({shape!r}, dtype="{dtype}", name="{var}")')
        tensor = _Tensor(var, tuple(shape), frozenset([index]))
        self.tensors.append(tensor)
        return tensor

    def call(self, layer, inputs, shape, shareable=True, merge=False):
        """Applies `layer` (source, or the variable of a nested model) to
        `inputs` (as one list when `merge`); returns the output tensor."""
        shape = tuple(shape)
        for t in inputs:
            t.used = True
        sources = frozenset().union(*(t.sources for t in inputs))
        if self.sequential:
            self.layers.append(layer)
            tensor = _Tensor(None, shape, sources)
        else:
            var, out = (layer, self.name("x")) if layer.isidentifier() else (
                self.name("l"), self.name("x"))
            if not layer.isidentifier():
                self.lines.append(f"{var} = {layer}")
            args = ", ".join(t.var for t in inputs)
            self.lines.append(f"{out} = {var}([{args}])" if merge else f"{out} = {var}({args})")
            tensor = _Tensor(out, shape, sources)
            attention = len(inputs) == 2 and inputs[0] is inputs[1]
            if shareable and (len(inputs) == 1 or attention):
                self.callables.append(_Callable(var, inputs[0].shape, shape, attention))
        self.tensors.append(tensor)
        return tensor

    def call_again(self, known, tensor):
        """A second call of a layer or nested model, on another tensor."""
        out = self.name("x")
        args = f"{tensor.var}, {tensor.var}" if known.self_attention else tensor.var
        self.lines.append(f"{out} = {known.var}({args})  # a second call site")
        tensor.used = True
        self.tensors.append(_Tensor(out, known.out_shape, tensor.sources))


def _named(source, name):
    """`L.Dense(3)` -> `L.Dense(3, name="...")`."""
    if source.endswith("()"):
        return f'{source[:-1]}name="{name}")'
    return f'{source[:-1]}, name="{name}")'


def _ceil_half(n):
    return -(-n // 2)


def _any_rank_ops(draw, shape):
    act = draw(st.sampled_from(ACTIVATIONS))
    ops = [
        ("L.BatchNormalization()", shape),
        ("L.LayerNormalization()", shape),
        (draw(st.sampled_from([
            "L.ReLU()", "L.ReLU(max_value=6.0)", "L.LeakyReLU(negative_slope=0.1)",
            "L.ELU()", "L.Softmax()", f'L.Activation("{act}")'])), shape),
        (draw(st.sampled_from(["L.Dropout(0.2)", "L.GaussianNoise(0.1)", "L.Identity()",
                               "L.ActivityRegularization(l2=0.01)"])), shape),
        ("L.Rescaling(0.5, offset=0.25)", shape),
        ("L.Normalization(mean=0.5, variance=2.0)", shape),
    ]
    if shape[-1] % 2 == 0:
        ops.append(("L.GroupNormalization(groups=2)", shape))
    return ops


def _image_ops(draw, shape):
    h, w, c = shape
    f = draw(st.integers(2, 6))
    act = draw(st.sampled_from(ACTIVATIONS))
    stride = 2 if h >= 4 and draw(st.booleans()) else 1
    multiplier = draw(st.sampled_from([1, 2]))
    ops = [
        (f'L.Conv2D({f}, {draw(st.sampled_from([1, 3]))}, strides={stride}, padding="same", '
         f'activation="{act}", use_bias={draw(st.booleans())})',
         (-(-h // stride), -(-w // stride), f)),
        (f'L.DepthwiseConv2D(3, padding="same", depth_multiplier={multiplier})',
         (h, w, c * multiplier)),
        (f'L.SeparableConv2D({f}, 3, padding="same", activation="{act}")', (h, w, f)),
        ("L.PReLU(shared_axes=[1, 2])", shape),
        ("L.SpatialDropout2D(0.2)", shape),
        (f"L.Reshape(({h * w}, {c}))", (h * w, c)),
        (draw(st.sampled_from(["L.GlobalAveragePooling2D()", "L.GlobalMaxPooling2D()"])), (c,)),
        ("L.Flatten()", (h * w * c,)),
    ]
    if h <= 4:
        interpolation = draw(st.sampled_from(["nearest", "bilinear"]))
        ops += [
            (f'L.Conv2DTranspose({f}, 3, strides=2, padding="same")', (2 * h, 2 * w, f)),
            (f'L.UpSampling2D(2, interpolation="{interpolation}")', (2 * h, 2 * w, c)),
        ]
    else:
        ops.append((f'L.Conv2DTranspose({f}, 3, padding="same")', (h, w, f)))
    if h >= 4:
        pool = draw(st.sampled_from(["MaxPooling2D", "AveragePooling2D"]))
        ops.append((f'L.{pool}(2, padding="same")', (_ceil_half(h), _ceil_half(w), c)))
    if h <= 6:
        ops.append(("L.ZeroPadding2D(1)", (h + 2, w + 2, c)))
    if h >= 5:
        ops.append(("L.Cropping2D(1)", (h - 2, w - 2, c)))
    return ops


def _sequence_ops(draw, shape):
    t, c = shape
    f = draw(st.integers(2, 6))
    units = draw(st.integers(2, 5))
    act = draw(st.sampled_from(ACTIVATIONS))
    rnn = draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]))
    sequences = draw(st.booleans())
    # TFLite converts Keras 3 recurrent layers only unrolled (TF 2.21):
    # the export unrolls those that are not.
    unroll = f", unroll={draw(st.booleans())}"
    rnn_out = (t, units) if sequences else (units,)
    ops = [
        (f'L.Conv1D({f}, {draw(st.sampled_from([1, 3]))}, padding="same", '
         f'activation="{act}")', (t, f)),
        (f'L.SeparableConv1D({f}, 3, padding="same")', (t, f)),
        ('L.DepthwiseConv1D(3, padding="same")', shape),
        (f'L.Conv1DTranspose({f}, 3, padding="same")', (t, f)),
        (f'L.Dense({units}, activation="{act}")', (t, units)),
        (f'L.EinsumDense("abc,cd->abd", output_shape=({t}, {units}), bias_axes="d")',
         (t, units)),
        (f"L.{rnn}({units}, return_sequences={sequences}{unroll})", rnn_out),
        (f"L.Bidirectional(L.{rnn}({units}, return_sequences={sequences}{unroll}))",
         (t, 2 * units) if sequences else (2 * units,)),
        (f"L.RNN([L.SimpleRNNCell({units}), L.GRUCell({units})], "
         f"return_sequences={sequences}{unroll})", rnn_out),
        (f"L.TimeDistributed(L.Dense({units}))", (t, units)),
        ("L.SpatialDropout1D(0.2)", shape),
        ("L.Permute((2, 1))", (c, t)),
        (draw(st.sampled_from(["L.GlobalAveragePooling1D()", "L.GlobalMaxPooling1D()"])), (c,)),
        ("L.Flatten()", (t * c,)),
    ]
    if t >= 4:
        pool = draw(st.sampled_from(["MaxPooling1D", "AveragePooling1D"]))
        ops += [(f'L.{pool}(2, padding="same")', (_ceil_half(t), c)),
                ("L.Cropping1D(1)", (t - 2, c))]
    if t <= 6:
        ops += [("L.UpSampling1D(2)", (2 * t, c)), ("L.ZeroPadding1D(1)", (t + 2, c))]
    return ops


def _vector_ops(draw, shape):
    (c,) = shape
    units = draw(st.integers(2, 8))
    act = draw(st.sampled_from(ACTIVATIONS))
    repeat = draw(st.integers(2, 4))
    ops = [
        (f'L.Dense({units}, activation="{act}", use_bias={draw(st.booleans())})', (units,)),
        ("L.PReLU()", shape),
        (f"L.RepeatVector({repeat})", (repeat, c)),
    ]
    if c % 4 == 0:
        ops.append((f"L.Reshape((2, 2, {c // 4}))", (2, 2, c // 4)))
    return ops


_OPS = {IMAGE: _image_ops, SEQUENCE: _sequence_ops, VECTOR: _vector_ops}


WEIGHT_LAYERS = ("Conv", "Dense", "RNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed",
                 "Attention", "Embedding")


def _holds_weights(source):
    return any(f"L.{name}" in source or f"{name}(" in source for name in WEIGHT_LAYERS)


def _unary(writer, tensor):
    """Applies one drawn layer to `tensor` (nothing when none fits)."""
    draw = writer.draw
    candidates = [
        (source, shape)
        for source, shape in _any_rank_ops(draw, tensor.shape) + _OPS[tensor.kind](draw, tensor.shape)
        if writer.allows(source) and 1 <= int(np.prod(shape)) <= MAX_ELEMENTS
        and min(shape) >= 1
    ]
    attention = "L.MultiHeadAttention(num_heads=2, key_dim=2)"
    if tensor.kind == SEQUENCE and not writer.sequential and writer.allows(attention):
        candidates.append((attention, tensor.shape))
    if not candidates:
        return None
    # Half the layers hold weights (what the techniques work on), though
    # weightless layers outnumber them in the menu.
    weighted = [c for c in candidates if _holds_weights(c[0])]
    if weighted and draw(st.booleans()):
        candidates = weighted
    source, shape = draw(st.sampled_from(candidates))
    short = source[2:].split("(")[0].lower()
    inputs = [tensor, tensor] if source == attention else [tensor]  # self-attention
    return writer.call(_named(source, writer.name(short)), inputs, shape)


def _merge(writer, pairs):
    a, b = writer.draw(st.sampled_from(pairs))
    op = writer.draw(st.sampled_from([m for m in MERGES if writer.allows(f"L.{m}()")] or [None]))
    if op is None:
        return
    writer.call(_named(f"L.{op}()", writer.name(op.lower())), [a, b], a.shape, shareable=False,
                merge=True)


def _concatenate(writer, pairs):
    a, b = writer.draw(st.sampled_from(pairs))
    if writer.allows("L.Concatenate()"):
        shape = (*a.shape[:-1], a.shape[-1] + b.shape[-1])
        writer.call(_named("L.Concatenate()", writer.name("concatenate")), [a, b], shape,
                    shareable=False, merge=True)


def _step(writer, depth):
    """One drawn operation on a Functional graph: a layer, a merge of two
    branches, a second call of a layer, or a nested model."""
    draw = writer.draw
    tensors = writer.tensors
    pairs = [(a, b) for i, a in enumerate(tensors) for b in tensors[i + 1:]
             if a.shape == b.shape]
    concat = [(a, b) for i, a in enumerate(tensors) for b in tensors[i + 1:]
              if len(a.shape) > 1 and a.shape[:-1] == b.shape[:-1]]
    again = [(k, t) for k in writer.callables for t in tensors if t.shape == k.shape]
    choices = ["layer"] * 4 + ["merge"] * 3 * bool(pairs) + ["concatenate"] * bool(concat)
    choices += ["again"] * 2 * bool(again) + ["nested"] * (depth < 2)
    choice = draw(st.sampled_from(choices))
    if choice == "merge":
        _merge(writer, pairs)
    elif choice == "concatenate":
        _concatenate(writer, concat)
    elif choice == "again":
        writer.call_again(*draw(st.sampled_from(again)))
    elif choice == "nested":
        _nested(writer, draw(st.sampled_from(tensors)), depth)
    else:
        _unary(writer, draw(st.sampled_from(tensors)))


def _nested(writer, tensor, depth):
    """A small Functional or Sequential model called as a layer on `tensor`
    (in a Functional parent it may be called again later)."""
    draw = writer.draw
    name = writer.name("nested")
    sequential = draw(st.booleans())
    inner = _Writer(draw, writer.allowed, f"{name}_", writer.counter, sequential)
    root = inner.add_input(f"{name}_in", tensor.shape, "float32", 0)
    for _ in range(draw(st.integers(1, 3))):
        if sequential:
            _unary(inner, inner.tensors[-1])
        else:
            _step(inner, depth + 1)
    out = inner.tensors[-1]
    if out is root:
        return
    writer.preamble += inner.preamble
    if sequential:
        body = "".join(f"    {layer},\n" for layer in [f"keras.Input({tensor.shape!r})"] + inner.layers)
        writer.preamble.append(f'{name} = keras.Sequential([\n{body}], name="{name}")')
    else:
        writer.preamble += inner.lines
        writer.preamble.append(f'{name} = keras.Model({root.var}, {out.var}, name="{name}")')
    writer.call(name, [tensor], out.shape)


def _inputs(writer, count, tokens):
    """Model inputs: images, sequences, vectors, or int token ids (each
    feeding an Embedding at once)."""
    draw = writer.draw
    specs = []
    for index in range(count):
        kind = draw(st.sampled_from([IMAGE, SEQUENCE, VECTOR] + [TOKENS] * tokens))
        shape = {
            IMAGE: lambda: (draw(st.sampled_from([4, 6, 8])),) * 2 + (draw(st.integers(1, 4)),),
            SEQUENCE: lambda: (draw(st.integers(3, 6)), draw(st.integers(1, 5))),
            VECTOR: lambda: (draw(st.integers(2, 12)),),
            TOKENS: lambda: (draw(st.integers(3, 6)),),
        }[kind]()
        dtype = "int32" if kind == TOKENS else "float32"
        specs.append((shape, dtype))
        var = f"input_{index}"
        if writer.sequential:
            writer.layers.append(f"keras.Input({shape!r}, dtype=\"{dtype}\", name=\"{var}\")")
            tensor = _Tensor(var, shape, frozenset([index]))
            writer.tensors.append(tensor)
        else:
            tensor = writer.add_input(var, shape, dtype, index)
        if kind == TOKENS:
            tensor.var_kind = TOKENS
            dim = draw(st.integers(2, 5))
            writer.call(_named(f"L.Embedding({VOCABULARY}, {dim})", writer.name("embedding")),
                        [tensor], (shape[0], dim))
            writer.tensors.remove(tensor)  # token ids feed nothing else
    return tuple(specs)


def _vector(writer, tensor):
    """A vector from any tensor (global pooling or flattening)."""
    if tensor.kind == VECTOR:
        return tensor
    pool = "GlobalAveragePooling2D" if tensor.kind == IMAGE else "GlobalAveragePooling1D"
    source = writer.draw(st.sampled_from([f"L.{pool}()", "L.Flatten()"]))
    shape = (int(np.prod(tensor.shape)),) if source == "L.Flatten()" else tensor.shape[-1:]
    return writer.call(_named(source, writer.name("reduce")), [tensor], shape, shareable=False)


def _heads(writer, wanted):
    """`Dense(classes)` outputs on unused tensors, covering every input."""
    draw = writer.draw
    frontier = [t for t in reversed(writer.tensors) if not t.used] or [writer.tensors[-1]]
    chosen, covered = [], frozenset()
    for tensor in frontier:
        if not tensor.sources <= covered:
            chosen.append(tensor)
            covered |= tensor.sources
    if len(chosen) > wanted:
        vectors = [_vector(writer, t) for t in chosen]
        shape = (sum(v.shape[0] for v in vectors),)
        chosen = [writer.call(_named("L.Concatenate()", writer.name("concatenate")), vectors,
                              shape, shareable=False, merge=True)]
    chosen += [t for t in frontier if t not in chosen][: wanted - len(chosen)]
    outputs, classes = [], []
    for index, tensor in enumerate(chosen):
        count = draw(st.integers(2, 5))
        out = writer.call(f'L.Dense({count}, name="head_{index}")', [_vector(writer, tensor)],
                          (count,), shareable=False)
        outputs.append(out.var)
        classes.append(count)
    return outputs, tuple(classes)


def _tokens_allowed(allowed, tokens):
    return tokens and (allowed is None or allowed(f"L.Embedding({VOCABULARY}, 2)"))


@st.composite
def functional_models(draw, allowed=None, max_steps=6, tokens=True):
    """A Functional model: 1-2 inputs, 1..`max_steps` drawn operations
    (layers, merges, second calls, nested models), 1-2 outputs."""
    writer = _Writer(draw, allowed, "", [0], sequential=False)
    count = draw(st.integers(1, 2))
    specs = _inputs(writer, count, _tokens_allowed(allowed, tokens))
    for _ in range(draw(st.integers(1, max_steps))):
        _step(writer, depth=0)
    outputs, classes = _heads(writer, draw(st.integers(1, 2)))
    ins = [f"input_{i}" for i in range(count)]
    ins = ins[0] if count == 1 else "[" + ", ".join(ins) + "]"
    outs = outputs[0] if len(outputs) == 1 else "[" + ", ".join(outputs) + "]"
    lines = writer.preamble + writer.lines
    lines.append(f'model = keras.Model({ins}, {outs}, name="fuzzed")')
    return ModelRecipe("\n".join(lines) + "\n", specs, classes, False)


@st.composite
def sequential_models(draw, allowed=None, max_steps=6, tokens=True):
    """A Sequential model: one input, a chain of layers (nested models among
    them), one classifier head."""
    writer = _Writer(draw, allowed, "", [0], sequential=True)
    specs = _inputs(writer, 1, _tokens_allowed(allowed, tokens))
    for _ in range(draw(st.integers(1, max_steps))):
        if draw(st.integers(0, 4)) == 0:
            _nested(writer, writer.tensors[-1], depth=1)
        else:
            _unary(writer, writer.tensors[-1])
    _, classes = _heads(writer, 1)
    body = "".join(f"    {layer},\n" for layer in writer.layers)
    lines = writer.preamble + [f'model = keras.Sequential([\n{body}], name="fuzzed")']
    return ModelRecipe("\n".join(lines) + "\n", specs, classes, True)


def models(allowed=None, max_steps=6, tokens=True):
    """Functional (3 in 4) or Sequential models. `allowed(layer_source)`
    says whether a layer may appear (None: every family)."""
    functional = functional_models(allowed, max_steps, tokens)
    return st.one_of(functional, functional, functional,
                     sequential_models(allowed, max_steps, tokens))


def recipe_from_code(code):
    """A `ModelRecipe` for hand-written (or reproducer) source."""
    namespace = {"keras": keras, "L": keras.layers}
    exec(code, namespace)  # noqa: S102 - test source
    model = namespace["model"]
    return ModelRecipe(
        code,
        tuple((tuple(t.shape[1:]), str(t.dtype)) for t in model.inputs),
        tuple(int(o.shape[-1]) for o in model.outputs),
        isinstance(model, keras.Sequential),
    )


# Hand-written models with every feature at once: the fast profile's
# explicit examples (a derandomized run starts from the simplest model).
# Image and second inputs, a residual block, a convolution called at two
# call sites, a nested Functional model called twice, a nested Sequential,
# Concatenate, two outputs; "any" has an int input through an Embedding and
# a GRU, "conv" a vector input through a Dense (layers QAT and channel
# pruning take).
_RICH = '''
block_in = keras.Input((6, 6, 4))
block_x = L.Conv2D(4, 3, padding="same", use_bias=False, name="block_conv")(block_in)
block_x = L.BatchNormalization(name="block_bn")(block_x)
block_x = L.Add(name="block_add")([block_x, block_in])
block = keras.Model(block_in, L.ReLU(name="block_relu")(block_x), name="block")
tower = keras.Sequential([
    keras.Input((6, 6, 4)),
    L.DepthwiseConv2D(3, padding="same", name="tower_depthwise"),
    L.Conv2D(6, 1, activation="relu", name="tower_pointwise"),
], name="tower")
input_0 = keras.Input((6, 6, 3), name="input_0")
stem = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")
x = stem(input_0)
x = block(x)
x = block(x)
y = tower(x)
shared = L.Conv2D(4, 1, name="shared_conv")
z = L.Concatenate(name="concat")([shared(x), shared(stem(input_0)), y])
image = L.GlobalAveragePooling2D(name="pool")(z)
{second}
both = L.Concatenate(name="features")([image, second])
out_0 = L.Dense(3, name="head_0")(L.Dense(8, activation="relu", name="hidden")(both))
out_1 = L.Dense(2, name="head_1")(image)
model = keras.Model([input_0, input_1], [out_0, out_1], name="rich")
'''
RICH = {
    "any": _RICH.format(second='''input_1 = keras.Input((5,), dtype="int32", name="input_1")
second = L.Embedding(12, 4, name="embedding")(input_1)
second = L.GRU(4, unroll=True, name="gru")(second)'''),
    "conv": _RICH.format(second='''input_1 = keras.Input((6,), name="input_1")
second = L.Dense(4, activation="relu", name="vector_dense")(input_1)'''),
}
