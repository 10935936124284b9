"""The stock layers held inside subclassed layers and models.

Keras 3 users build blocks as subclassed layers that hold stock layers in
attributes (`self.attention = keras.layers.MultiHeadAttention(...)`), lists
and dicts, and KerasHub builds its models that way: a `BertBackbone` is a
Functional model whose `TransformerEncoder` nodes are subclassed layers. Like
Keras' own `Model.quantize`, which walks every sub-layer, a technique reaches
those stock layers here.

A *composite* is a layer whose sub-layers the techniques reach in place:

* a layer that the layer table (`core/layer_kinds.py`) does not know, that
  is no technique's layer and opts into no technique itself
  (`get_prunable_weights`, ...), and that holds sub-layers;
* a Functional model that `keras.models.clone_model` cannot rebuild as its
  own class (a KerasHub backbone or task, whose constructor takes
  hyperparameters, not inputs and outputs).

Its *children* are named by the attribute that holds them (`_self_attention
_layer`, `transformer_layers/0`, `blocks/key`) or, in a graph, by layer
name, so that a path such as `bert_backbone/transformer_layer_0/_self_
attention_layer` names one layer and stays the same when the composite is
rebuilt from its config (saving relies on that). Its *leaves* are the
layers below it that are not composites themselves. Weights a composite
holds directly (a ViT class token) are left as they are.

`swap` replaces one child by another everywhere its parent refers to it:
attributes, lists, dicts, Keras' layer tracking and, in a graph, the node
that calls it. It is used on private copies only (`core/graph.py`).
"""

import keras

# Bookkeeping attributes of Keras layers: they refer to layers (or nodes)
# that are not children held by the layer's own code.
_BOOKKEEPING = frozenset({
    "_inbound_nodes", "_outbound_nodes", "_tracked", "_layers", "_operations",
    "_operations_by_depth", "_nodes_by_depth", "_nodes", "_functional", "_inputs_struct",
    "_outputs_struct", "_inputs", "_outputs", "_output_layers", "_input_layers",
})
# TensorFlow's checkpoint tracking (present on the TensorFlow backend) keeps
# its own dicts of the same layers under these prefixes.
_TRACKING_PREFIXES = ("_self_unconditional", "_self_saveable")
_OPT_IN = ("get_prunable_weights", "get_clusterable_weights")


def is_graph(layer):
    """A Sequential or Functional model (its layers are nodes of a graph)."""
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")
    )


def rebuildable(model):
    """A graph model that `keras.models.clone_model` rebuilds as its own
    class: a Sequential, a plain Functional model, or a subclass whose
    constructor takes inputs and outputs."""
    from keras.src.models.functional import Functional, functional_like_constructor

    if isinstance(model, keras.Sequential):
        return True
    cls = type(model)
    return cls in (keras.Model, Functional) or functional_like_constructor(cls)


def is_host(layer):
    """A `SublayerHost` (`core/sublayer_host.py`): it stands for the
    composite it holds."""
    return getattr(type(layer), "hosts_sublayers", False)


def is_composite(layer):
    """Whether the techniques reach the sub-layers of `layer` in place (see
    the module docstring)."""
    from tfmot_lite.core import layer_kinds

    if not isinstance(layer, keras.layers.Layer) or is_host(layer):
        return is_host(layer)
    if getattr(type(layer), "technique", None) is not None:
        return False
    if is_graph(layer):
        return not rebuildable(layer)
    if layer_kinds.family(layer) is not None or any(hasattr(layer, m) for m in _OPT_IN):
        return False
    return bool(layer._flatten_layers(include_self=False, recursive=False))


def descends(layer):
    """Whether a walk goes below `layer`: a graph model or a composite."""
    return is_graph(layer) or is_composite(layer)


def unhosted(layer):
    """The composite a host holds; any other layer itself."""
    return layer.layer if is_host(layer) else layer


def children(layer):
    """`[(name, child)]`: the layers `layer` holds directly.

    A graph model's children are its layers (InputLayers left out), named by
    layer name; a host's are those of the composite it holds; any other
    layer's are the layers in its attributes, lists, tuples and dicts,
    named by attribute (`blocks/0`). A layer held twice is listed once.
    """
    layer = unhosted(layer)
    if is_graph(layer):
        return [(_original_name(sub), sub) for sub in layer.layers
                if not isinstance(sub, keras.layers.InputLayer)]
    found, seen = [], set()

    def visit(name, value):
        if isinstance(value, keras.layers.Layer):
            if id(value) not in seen:
                seen.add(id(value))
                found.append((name, value))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{name}/{i}", item)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{name}/{key}", item)

    for name, value in vars(layer).items():
        if (name not in _BOOKKEEPING and not name.startswith(_TRACKING_PREFIXES)
                and value is not layer):
            visit(name, value)
    return found


def _original_name(layer):
    """The name of the layer that `layer` (maybe a technique's wrapper)
    stands for."""
    while getattr(type(layer), "technique", None) is not None and isinstance(
        getattr(layer, "layer", None), keras.layers.Layer
    ):
        layer = layer.layer
    return layer.name


def leaves(layer, prefix=""):
    """`[(path, parent, leaf)]` for every leaf below `layer` (a composite or
    a graph model): `parent` holds `leaf`, `path` names it from `layer`."""
    found = []
    for name, child in children(layer):
        path = prefix + name
        if descends(child):
            found.extend(leaves(child, path + "/"))
        else:
            found.append((path, unhosted(layer), child))
    return found


def find(layer, path):
    """`(parent, child)` at `path` below `layer` (as `leaves` names it)."""
    parent = unhosted(layer)
    rest = path
    while True:
        for name, child in children(parent):
            if rest == name:
                return parent, child
            if rest.startswith(name + "/") and descends(child):
                parent, rest = unhosted(child), rest[len(name) + 1:]
                break
        else:
            raise ValueError(
                f"'{unhosted(layer).name}' ({type(unhosted(layer)).__name__}) holds no "
                f"layer at '{path}': it was built differently from the model that was "
                "saved. Rebuild it with the same configuration."
            )


def swap(parent, old, new):
    """Makes `parent` hold `new` wherever it held `old`."""
    for name, value in list(vars(parent).items()):
        if name in ("_inbound_nodes", "_outbound_nodes") or name.startswith(_TRACKING_PREFIXES):
            continue
        if value is old:
            # `object.__setattr__`: no Keras tracking (a built layer's
            # tracker is locked); `_layers` is updated below like any list.
            object.__setattr__(parent, name, new)
        else:
            replaced = _swapped_in(value, old, new)
            if replaced is not value:
                object.__setattr__(parent, name, replaced)
    for nodes in getattr(parent, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is old:
                node.operation = new
                _drop_unaccepted_defaults(node.arguments.kwargs, new)
    functional = getattr(parent, "_functional", None)
    if functional is not None and functional is not parent:
        swap(functional, old, new)
    tracker = getattr(parent, "_tracker", None)
    if tracker is not None:
        ids = tracker.stored_ids.get("layers")
        if ids is not None and id(old) in ids:
            ids.discard(id(old))
            ids.add(id(new))


def _drop_unaccepted_defaults(kwargs, layer):
    """Removes from a graph node's recorded keyword arguments those that
    `layer`'s call does not take and that hold None (the `mask=None` Keras
    recorded for a BatchNormalization that a fold replaced by an Identity)."""
    signature = getattr(layer, "_call_signature", None)
    if signature is None or any(
        p.kind is p.VAR_KEYWORD for p in signature.parameters.values()
    ):
        return
    for key in [k for k, v in kwargs.items() if v is None and k not in signature.parameters]:
        del kwargs[key]


def _set_item(container, key, item):
    """`container[key] = item`, bypassing the tracking of Keras' own lists
    and dicts and of TensorFlow's wrappers around them (a `ListWrapper`
    changed through `[]=` refuses to be saved in a SavedModel; its items
    live in `_storage`)."""
    storage = getattr(container, "_storage", None)
    if storage is None:
        storage = getattr(container, "__wrapped__", None)
    if storage is not None:
        storage[key] = item
        if hasattr(container, "_update_snapshot"):
            container._update_snapshot()  # Not an outside change: saveable.
    elif type(container) in (list, dict) or type(container).__module__.startswith("keras"):
        (list if isinstance(container, list) else dict).__setitem__(container, key, item)
    else:
        container[key] = item


def _swapped_in(value, old, new):
    """`value` with `old` replaced by `new` in its lists, tuples and dicts
    (lists and dicts changed in place)."""
    if isinstance(value, (list, dict)):
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        for key, item in items:
            replaced = new if item is old else _swapped_in(item, old, new)
            if replaced is not item:
                _set_item(value, key, replaced)
        return value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        items = [new if item is old else _swapped_in(item, old, new) for item in value]
        if any(a is not b for a, b in zip(items, value)):
            return type(value)(items)
        return value
    return value
