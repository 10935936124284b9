"""The one table of techniques: what each calls its layers, and how they go.

Every layer class a technique puts into a model names its row in a class
attribute, `technique = techniques.PRUNING` (pruning and channel-pruning
wrappers), `CLUSTERING`, `QAT` (QAT wrappers, the folded Conv-BatchNorm,
input and raw-operation quantizers) or `QAT_ANNOTATION` (`QuantizeAnnotate`).
So this table imports no technique, and everything that asks "which
technique made this layer, and how is it removed" reads it:

* the entry points (`tfmot_lite/entry.py`): a layer already wrapped by
  another technique is an error naming the strip function to call;
* `strip_pruning`, `strip_clustering`, `strip_quantization` are `strip(model,
  ROW)`;
* export (`export/strip.py`): which techniques a model holds, what is baked
  before conversion and what the converter must see (`kept_at_export`);
* `shrink`: which layers are another technique's.

A new technique adds a row here and sets `technique = ROW` on its layer
classes; its layers implement `strip()` (the plain layer they stand for).
"""

import dataclasses

import keras

from tfmot_lite.core import graph


@dataclasses.dataclass(frozen=True)
class Technique:
    """One row: how messages and exports speak of a technique."""

    name: str  # as export reports list it: "pruning"
    done: str  # a layer it holds "is pruned"
    entry: str  # the function that applies it
    strip: str  # the function that removes it
    kept_at_export: bool  # the converter reads its layers (QAT's fake-quant)

    def __repr__(self):
        return f"<technique {self.name}>"


PRUNING = Technique("pruning", "pruned", "prune_low_magnitude", "strip_pruning", False)
CLUSTERING = Technique("clustering", "clustered", "cluster_weights", "strip_clustering", False)
QAT = Technique("qat", "quantized", "quantize_model", "strip_quantization", True)
QAT_ANNOTATION = Technique(
    "quantize annotation", "annotated for quantization", "quantize_annotate_layer",
    "quantize_apply", False,
)

TECHNIQUES = (PRUNING, CLUSTERING, QAT, QAT_ANNOTATION)


def technique_of(layer):
    """The `Technique` whose layer class `layer` is, or None."""
    found = getattr(type(layer), "technique", None)
    return found if isinstance(found, Technique) else None


def layers_deep(layer):
    """`layer`, then the layers inside it while it is a Keras `Wrapper`
    (a `QuantizeAnnotate` around a pruned layer, say)."""
    while True:
        yield layer
        inner = getattr(layer, "layer", None)
        if not isinstance(layer, keras.layers.Wrapper) or inner is None:
            return
        layer = inner


def found_in(model):
    """`{(path, technique)}`: every technique's layers in `model` (a layer,
    a list of layers or a model, nested models and wrappers included)."""
    found = []
    for path, layer in graph.iter_named(model):
        for inner in layers_deep(layer):
            technique = technique_of(inner)
            if technique is not None:
                found.append((path, technique))
    return found


def layers_in(model, technique):
    """Every layer of `technique` among `model`'s layers, nested models
    included (the wrappers callbacks drive)."""
    return [layer for _, layer in graph.iter_layers(model) if technique_of(layer) is technique]


def in_model(model):
    """The set of techniques whose layers `model` holds."""
    return {technique for _, technique in found_in(model)}


def strippable(technique):
    """A predicate for `graph.strip`: `technique`'s layers that stand for a
    plain layer (`strip()`); others, such as a raw-operation quantizer,
    stay."""

    def test(layer):
        return technique_of(layer) is technique and hasattr(layer, "strip")

    return test


def strip(model, technique):
    """A copy of `model` with every layer of `technique` replaced by
    `layer.strip()`: the plain layer with its inference weights baked in
    (see `WeightTransformWrapper.bake`). `model` is not modified."""
    return graph.strip(model, strippable(technique))
