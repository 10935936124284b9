"""Walking and rewriting Keras graphs, nested models included.

Every technique in tfmot-lite does the same two things to a user's model:
look at each layer (to validate it, or to report on it) and build a new model
in which some layers are replaced (by a wrapper, or by the plain layer a
wrapper held). Both live here, so that nested models, shared layers and the
"never mutate the user's model" rule are handled once.
"""

import collections
import contextlib
import contextvars
import dataclasses
import warnings

import keras

from tfmot_lite.core import sublayers
from tfmot_lite.core.sublayer_host import host_if_replaced
from tfmot_lite.core.weight_wrapper import WeightTransformWrapper
from tfmot_lite.fast.batch_norm import FusedBatchNormalization

is_graph_model = sublayers.is_graph


def iter_layers(model, prefix="", operations=False):
    """Yields `(path, layer)` for every leaf layer, descending into sub-models
    and into the layers held inside subclassed layers (`core/sublayers.py`).

    `path` is the slash-joined chain of model and layer names, for example
    `"backbone/conv2d_1"`, so that error messages can point at a layer inside
    a nested model; below a subclassed layer, its attributes name the layers
    (`"bert/transformer_layer_0/_self_attention_layer"`). A bare layer
    yields itself. With `operations`, the raw Keras operations of Functional
    graphs (`x + 3.0`) are yielded too, and InputLayers are left out.
    """
    if not sublayers.descends(model):
        yield prefix + model.name, model
        return
    if not is_graph_model(model):
        for path, _, leaf in sublayers.leaves(model, prefix + model.name + "/"):
            yield path, leaf
        return
    layers = model.layers
    if operations and not isinstance(model, keras.Sequential):
        layers = [
            op for op in model.operations if not isinstance(op, keras.layers.InputLayer)
        ]
    for layer in layers:
        if is_graph_model(layer):
            yield from iter_layers(layer, prefix + layer.name + "/", operations)
        elif isinstance(layer, keras.layers.Layer) and sublayers.is_composite(layer):
            for path, _, leaf in sublayers.leaves(layer, prefix + layer.name + "/"):
                yield path, leaf
        else:
            yield prefix + layer.name, layer


def iter_named(obj):
    """`(path, layer)` for a layer, a list of layers or a model (its leaf
    layers, nested models included: `iter_layers`)."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from iter_named(item)
    elif isinstance(obj, keras.layers.Layer):
        yield from iter_layers(obj)


def _scope_objects():
    """The custom objects of the enclosing `custom_object_scope` (Keras 3
    replaces the outer scope when a new one opens, so we merge by hand)."""
    from keras.src.backend.common import global_state

    return dict(global_state.get_global_attribute("custom_objects_scope_dict", {}) or {})


def copy_operation(op):
    """A new raw Keras operation (`x + 3.0` in a Functional graph) like `op`."""
    return op.__class__.from_config(op.get_config())


def copy_layer(layer, cls=None, config=None):
    """A new layer with the same config, build state and weight values.

    `cls` builds the copy from another class that takes the same config and
    holds the same weights (a subclass, or the base class of one); `config`
    replaces the layer's own (one that builds the same weights: an RNN
    unrolled for export, say).

    A layer may name attributes in `_copied_by_reference` (a
    `QuantizeConfig`, say): they are handed to the copy's `from_config` as
    the objects themselves, never serialized, so a user's unregistered class
    needs no scope and loses no state.
    """
    # Sub-layers of unregistered custom classes (inside a wrapper, say) are
    # found by name while the config is deserialized; an outer
    # `custom_object_scope` (e.g. `quantize_scope`) stays in force.
    classes = _scope_objects()
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        classes[type(sub).__name__] = type(sub)
    config = layer.get_config() if config is None else dict(config)
    for key in getattr(layer, "_copied_by_reference", ()):
        config[key] = getattr(layer, key)
    with keras.saving.custom_object_scope(classes):
        clone = (cls or layer.__class__).from_config(config)
    if layer.built:
        build_config = layer.get_build_config()
        if build_config:
            with warnings.catch_warnings():
                # "`build()` was called on layer ... unbuilt state": a
                # subclassed layer without `build`, traced below.
                warnings.filterwarnings("ignore", message=r"`build\(\)` was called")
                clone.build_from_config(build_config)
    source, target = layer.weights, clone.weights
    if len(source) != len(target) and layer.built:
        # A subclassed layer without a `build` builds its sub-layers in its
        # first call: trace the copy once, as the original was called.
        _trace_call(clone, layer)
        target = clone.weights
    if len(source) != len(target):
        raise ValueError(
            f"Could not copy layer '{layer.name}' "
            f"({layer.__class__.__name__}): rebuilding it from its config "
            f"made {len(target)} weights, but it holds {len(source)}. Give "
            "the layer a `get_build_config()`/`build_from_config()` pair that "
            "recreates all of its weights."
        )
    for src, dst in zip(source, target):
        # A real copy: on JAX, sharing the buffer would let a later donated
        # (deleted) array in one model break the other.
        dst.assign(keras.ops.copy(src.value))
    if isinstance(clone, keras.layers.Normalization) and clone.built:
        # An adapted Normalization computes its mean/variance tensors from
        # the copied statistics only when its state is finalized.
        clone.finalize_state()
    return clone


def _trace_call(clone, layer):
    """Calls `clone` on symbolic inputs like those of `layer`'s first call
    (or of its recorded build shapes), so that sub-layers built lazily in
    `call` exist."""
    def fresh(value):
        if isinstance(value, keras.KerasTensor):
            return keras.KerasTensor(value.shape, dtype=value.dtype)
        return value

    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes:
        arguments = nodes[0].arguments
        args = keras.tree.map_structure(fresh, arguments.args)
        kwargs = keras.tree.map_structure(fresh, arguments.kwargs)
    else:
        shapes = list((layer._build_shapes_dict or {}).values())
        if not shapes:
            return
        args, kwargs = [keras.KerasTensor(shapes[0])], {}
    try:
        clone(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the caller reports the mismatch
        return


def training_layer(layer):
    """The layer a technique's rewrite trains in place of `layer`, which it
    does not wrap: `layer` itself, or for Keras' own BatchNormalization a
    `FusedBatchNormalization` copy (same config and weights, TensorFlow's
    fused kernel in training; see `fast/batch_norm.py`). `strip` undoes it."""
    if type(layer) is keras.layers.BatchNormalization:
        return copy_layer(layer, FusedBatchNormalization)
    return layer


def _subclassed_model_error(model, fn):
    return ValueError(
        f"`{fn}` cannot rewrite '{model.name}', a subclassed model "
        f"({type(model).__name__}): its layers are only known to its own "
        "`call`. Build the model with the Sequential or Functional API, or "
        f"apply `{fn}` to the layers inside it when you construct it."
    )


def check_rewritable(model, fn="rewrite", argument="model"):
    """Raises a ValueError unless `model` (`fn`'s `argument`) is a layer or
    a graph model."""
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"`{argument}` of `{fn}` must be a Keras layer, a list of layers "
            f"or a Sequential/Functional model. Received {model!r} "
            f"({type(model).__name__})."
        )
    if isinstance(model, keras.Model) and not is_graph_model(model):
        raise _subclassed_model_error(model, fn)


def check_unique_names(model, fn, names=None):
    """Raises a ValueError naming the layers of `model` (nested models
    included) that share a name: `fn` matches layers by name. `names`
    limits the check to those."""
    counts = collections.Counter(layer.name for _, layer in iter_layers(model))
    clashes = sorted(n for n, c in counts.items() if c > 1 and (names is None or n in names))
    if clashes:
        raise ValueError(
            f"Several layers are named {clashes}: `{fn}` matches layers by "
            "name across nested models. Give them unique names."
        )


def has_inputs(model):
    """Whether a graph model knows its inputs (an Input, or built)."""
    try:
        return bool(model.built and model.inputs)
    except (AttributeError, ValueError):
        return False


def check_model(model, fn, needs_inputs=False, why=""):
    """The one check of what a whole-model entry point (`fn`) accepts: a
    Sequential or Functional model, with known inputs when `needs_inputs`
    (`why` says what they are needed for)."""
    check_rewritable(model, fn)
    if not is_graph_model(model):
        raise ValueError(
            f"`{fn}` expects a Keras Sequential or Functional model; got "
            f"layer '{model.name}' ({type(model).__name__})."
        )
    if needs_inputs and not has_inputs(model):
        raise ValueError(
            f"Model '{model.name}' is not built{why}: give it an input "
            "(`keras.Input(shape)` as its first layer, or `input_shape=` on "
            f"the first layer) or call `model.build(input_shape)` before `{fn}`."
        )


def rewrite(model, replace, call=None, operations=False, with_original=False, whole=None):
    """Returns a new model in which each leaf layer is `replace(copy)`.

    `replace` receives a private copy of each layer (weights included) and
    returns the layer to use in its place: the copy itself, a wrapper around
    it, another layer entirely, or a Sequential/Functional model. Nested
    Sequential and Functional models are rewritten recursively and a layer
    shared between several call sites stays shared. The input model and its
    layers are never modified.

    Args:
      model: a layer, or a Sequential/Functional model.
      replace: `fn(layer) -> layer`.
      call: optional `fn(layer, args, kwargs, model_inputs) -> outputs` that
        calls each new layer on its (new) inputs and may insert layers
        around it (QAT inserts a `QuantizeLayer` where float values enter).
        `model_inputs` holds the ids of the new model's input tensors. It
        applies to the model and every Functional model nested in it (the
        layers of a nested Sequential are called as they are); a top-level
        Sequential is rebuilt through it and stays a Sequential.
      operations: also pass (copies of) raw Keras operations of Functional
        graphs (`x + 3.0`, `x * y`) through `replace`; by default they are
        copied as they are.
      with_original: call `replace(copy, original)`, for rewrites planned on
        the input model (a fusion found before copying).
      whole: optional predicate: layers it selects are passed to `replace`
        whole, never entered (`strip` selects the layers it removes).

    A bare layer (not a model) is copied and passed to `replace` directly.
    """
    check_rewritable(model)
    if with_original:
        replace_one = replace
    else:
        def replace_one(copy, original):
            return replace(copy)
    def enters(layer):
        return sublayers.is_composite(layer) and not (whole and whole(layer))

    if not is_graph_model(model):
        if enters(model):
            return _rewrite_inside(model, replace_one)
        return replace_one(copy_layer(model), model)

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            op = copy_operation(layer)
            return replace_one(op, layer) if operations else op
        if enters(layer):
            return _rewrite_inside(layer, replace_one)
        return replace_one(copy_layer(layer), layer)

    top = set()  # the new model's input tensors (Functional only)

    def call_function(layer, *args, **kwargs):
        if "mask" in kwargs and kwargs["mask"] is None:
            # Recorded by Keras for the original layer; a replacement (a
            # fused layer, an Identity) need not accept it.
            kwargs.pop("mask")
        if call is None:
            outputs = layer(*args, **kwargs)
        else:
            outputs = call(layer, args, kwargs, top)
        return _dense_unless_sparse_inputs(outputs, (args, kwargs))

    clone_any = _nested_cloner(clone, call_function)
    if isinstance(model, keras.Sequential):
        if call is None:
            return keras.models.clone_model(model, clone_function=clone_any, recursive=False)
        return _rewrite_sequential(model, clone_any, call)
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(
            batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name
        ),
        model._inputs_struct,
    )
    top.update(id(t) for t in keras.tree.flatten(inputs))
    return keras.models.clone_model(
        model,
        input_tensors=inputs,
        clone_function=clone_any,
        call_function=call_function,
        recursive=False,
    )


def _nested_cloner(clone, call_function):
    """The `clone_function` of a non-recursive `keras.models.clone_model`
    that descends into nested models itself, every nested Functional model
    with `call_function`. (Keras' own recursion drops `call_function` below
    a Sequential, so a Functional model nested in a Sequential was called
    with the kwargs Keras recorded, `mask=None`, which a replacement layer
    such as `QuantizeBatchNorm` does not take.) A model or layer used at
    several places is cloned once and stays shared."""
    cache = {}

    def clone_any(layer):
        if id(layer) not in cache:
            if isinstance(layer, keras.Sequential):
                cache[id(layer)] = keras.models.clone_model(
                    layer, clone_function=clone_any, recursive=False)
            elif is_graph_model(layer) and sublayers.rebuildable(layer):
                cache[id(layer)] = keras.models.clone_model(
                    layer, clone_function=clone_any, call_function=call_function,
                    recursive=False)
            else:
                cache[id(layer)] = clone(layer)
        return cache[id(layer)]

    return clone_any


_INSIDE_COMPOSITE = contextvars.ContextVar("inside_composite", default=False)


def inside_composite():
    """Whether `rewrite` is replacing a layer held inside a subclassed layer
    (whose `call` may compute values with raw ops no layer sees: residual
    adds, say), rather than a node of a Functional graph."""
    return _INSIDE_COMPOSITE.get()


@contextlib.contextmanager
def _replacing_inside():
    token = _INSIDE_COMPOSITE.set(True)
    try:
        yield
    finally:
        _INSIDE_COMPOSITE.reset(token)


def _dense_unless_sparse_inputs(outputs, inputs):
    """`outputs`, not marked sparse when no input is a sparse tensor.

    Keras 3 marks `x * 0.5` (a raw Multiply with a Python number) sparse: it
    takes a number for a sparse operand. A wrapper that traces its layer
    (`QuantizeAnnotate` around the Multiply that follows, in
    MobileNetV3's squeeze-excite) then feeds it a sparse placeholder, which
    a convolution refuses."""
    if any(getattr(t, "sparse", False) for t in keras.tree.flatten(inputs)
           if isinstance(t, keras.KerasTensor)):
        return outputs
    for t in keras.tree.flatten(outputs):
        if isinstance(t, keras.KerasTensor) and t.sparse:
            t._sparse = False  # The public setter refuses; the flag is all it holds.
    return outputs


def _rewrite_inside(original, replace_one):
    """A copy of the composite `original` (`core/sublayers.py`) whose leaves
    are `replace_one(copy, original_leaf)`, swapped in place; in a
    `SublayerHost` when any of them is a technique's layer, else the
    composite itself, of its own class."""
    copy = copy_layer(original)
    inner = sublayers.unhosted(copy)
    new_leaves = sublayers.leaves(inner)
    old_leaves = sublayers.leaves(sublayers.unhosted(original))
    pristine = (original.pristine if sublayers.is_host(original)
                else {path: type(leaf) for path, _, leaf in old_leaves})
    if [p for p, _, _ in new_leaves] != [p for p, _, _ in old_leaves]:
        raise ValueError(
            f"Could not copy layer '{original.name}' ({type(original).__name__}): "
            "rebuilding it from its config gave other sub-layers than it holds. "
            "Give it a `get_config()` that rebuilds the same layers."
        )
    for (_, parent, leaf), (_, _, leaf_original) in zip(new_leaves, old_leaves):
        # A sub-layer the composite's `build` leaves to its first call (a
        # ReLU) is built as the original was.
        _build_like(leaf, leaf_original)
        with _replacing_inside():
            new = replace_one(leaf, leaf_original)
        if new is not leaf:
            # Built now, from the layer's weights: the composite's own call
            # would build it inside a trace.
            if getattr(new, "layer", None) is leaf and leaf.built and not new.built:
                # A wrapper around the built leaf: a fresh build, which
                # initializes its state from the weights (clustering's
                # centroids); `build_from_config` means "a load follows".
                new.build()
            else:
                _build_like(new, leaf)
            sublayers.swap(parent, leaf, new)
    return host_if_replaced(inner, pristine)


def _build_like(layer, built):
    """Builds `layer` with the input shapes `built` was built with."""
    if layer.built or not built.built:
        return
    config = built.get_build_config()
    if config:
        layer.build_from_config(config)
    elif not layer.weights:
        layer.build()


def _rewrite_sequential(model, clone, call):
    """A Sequential rebuilt through `call`: traced as a chain, then listed."""
    check_model(model, "rewrite", needs_inputs=True)
    body = keras.models.clone_model(model, clone_function=clone, recursive=False)
    first = model.inputs[0]
    x = inputs = keras.Input(batch_shape=first.shape, dtype=first.dtype)
    for layer in body.layers:
        x = call(layer, (x,), {}, {id(inputs)})
    traced = keras.Model(inputs, x)
    layers = [op for op in traced.operations if not isinstance(op, keras.layers.InputLayer)]
    # The input keeps its name: it names the exported model's input (the
    # TFLite signature), as in the Functional path.
    new_input = keras.Input(batch_shape=first.shape, dtype=first.dtype,
                            name=first._keras_history.operation.name)
    return keras.Sequential([new_input, *layers], name=model.name)


def strip(model, stripped):
    """A copy of `model` in which every layer that `stripped` selects (a
    class, a tuple of classes, or a predicate) is replaced by
    `layer.strip()`: for a `WeightTransformWrapper`, the layer it wrapped
    with its weights baked (see `WeightTransformWrapper.bake`). Each
    `FusedBatchNormalization` that `training_layer` put in becomes Keras'
    BatchNormalization again."""
    if isinstance(stripped, (type, tuple)):
        classes = stripped

        def stripped(layer):
            return isinstance(layer, classes)

    def unwrap(layer):
        if stripped(layer):
            return layer.strip()
        if type(layer) is FusedBatchNormalization:
            return copy_layer(layer, keras.layers.BatchNormalization)
        return layer

    return rewrite(model, unwrap, whole=stripped)


def core_layer(layer):
    """The layer inside optimization wrappers (pruning, clustering, QAT)."""
    while isinstance(layer, WeightTransformWrapper):
        layer = layer.layer
    return layer


@dataclasses.dataclass(eq=False)
class LayerCall:
    """One call of a leaf layer; `inputs`/`outputs` are tensor ids."""

    path: str
    layer: object
    inputs: list
    outputs: list


class DataflowGraph:
    """Leaf-layer calls of a Sequential/Functional model, nested models
    inlined, with the tensors that connect them.

    Where `iter_layers` lists layers, this follows the data: `producer[t]`
    and `consumers[t]` give the calls around tensor `t`, `shapes[t]` its
    shape. Policies that check patterns (a convolution feeding a mean, say)
    walk it.
    """

    def __init__(self, model):
        self.ops = []
        self.shapes = {}
        self.inputs = [self._tensor(t.shape) for t in model.inputs]
        self.outputs = self._expand(model, self.inputs, "")
        self.producer = {t: op for op in self.ops for t in op.outputs}
        self.consumers = collections.defaultdict(list)
        for op in self.ops:
            for t in op.inputs:
                self.consumers[t].append(op)

    def _tensor(self, shape):
        tid = len(self.shapes)
        self.shapes[tid] = None if shape is None else tuple(shape)
        return tid

    def _expand(self, model, inputs, prefix):
        functional = model
        if isinstance(model, keras.Sequential):
            functional = getattr(model, "_functional", None)
        if functional is None:  # A Sequential without an Input: a chain.
            tensors = inputs
            for layer in model.layers:
                tensors = self._call(layer, tensors, prefix, None)
            return tensors
        env = {id(t): tid for t, tid in zip(functional.inputs, inputs)}
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                ins = [env[id(t)] for t in node.input_tensors]
                outs = self._call(node.operation, ins, prefix, node.outputs)
                env.update({id(t): tid for t, tid in zip(node.outputs, outs)})
        return [env[id(t)] for t in functional.outputs]

    def _call(self, layer, inputs, prefix, outputs):
        if is_graph_model(layer):
            return self._expand(layer, inputs, f"{prefix}{layer.name}/")
        outs = [self._tensor(t.shape) for t in outputs] if outputs else [
            self._tensor(None)
        ]
        self.ops.append(LayerCall(prefix + layer.name, layer, list(inputs), outs))
        return outs

    def next_ops(self, op):
        return [c for t in op.outputs for c in self.consumers[t]]

    def input_shape(self, op):
        return self.shapes.get(op.inputs[0]) if op.inputs else None
