"""Any tfmot-lite model -> the plain Keras model the converter should see.

`strip_for_export(model)` removes the training-time layers that have no
place in a deployed model (pruning masks, clustering, `QuantizeAnnotate`
marks: the techniques whose row in `core/techniques.py` says
`kept_at_export=False`), baking their inference-time weights into the
layers. Quantization-aware-training layers are kept: their fake-quant ops
are what the TFLite converter turns into an int8 model. `techniques(model)`
names what a model holds.
"""

from tfmot_lite.core import graph
from tfmot_lite.core import techniques as table


def techniques(model):
    """The names of the techniques whose layers `model` holds, e.g.
    `{"pruning", "qat"}`; empty for a plain Keras model."""
    return {technique.name for technique in table.in_model(model)}


def is_qat(model):
    return table.QAT in table.in_model(model)


def _quantizers_of(value, depth=0):
    """The quantizers held by a QAT layer: in its attributes, lists, dicts
    and QuantizeConfig (depth-limited)."""
    from tfmot_lite.quantization.config import QuantizeConfig
    from tfmot_lite.quantization.quantizers import Quantizer

    if isinstance(value, Quantizer):
        yield value
    elif depth < 3 and isinstance(value, (list, tuple)):
        for item in value:
            yield from _quantizers_of(item, depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for item in value.values():
            yield from _quantizers_of(item, depth + 1)
    elif depth == 0 or isinstance(value, QuantizeConfig):
        for item in vars(value).values():
            yield from _quantizers_of(item, depth + 1)


def qat_mode(model):
    """The export mode of a QAT model: "int16x8" where its activation
    quantizers have 16 bits (`Default16x8QuantizeScheme`), else "int8"."""
    bits = {
        getattr(quantizer, "num_bits", 8)
        for _, layer in graph.iter_layers(model, operations=True)
        if table.technique_of(layer) is table.QAT
        for quantizer in _quantizers_of(layer)
    }
    return "int16x8" if 16 in bits else "int8"


def _baked_at_export(layer):
    technique = table.technique_of(layer)
    return technique is not None and not technique.kept_at_export


def strip_for_export(model):
    """A copy of `model` without pruning/clustering/annotation layers.

    QAT models are returned as they are: the converter reads their
    fake-quant ranges, and wrappers nested inside `QuantizeWrapper` (pruning
    or clustering preserved through QAT) compute their inference weights in
    the traced graph, which the converter folds into constants. A model
    without such layers is returned unchanged (it is not copied).
    """
    if is_qat(model):
        return model
    for _ in range(8):  # Wrappers may wrap wrappers; each pass peels one.
        if not any(_baked_at_export(layer) for _, layer in graph.iter_layers(model)):
            break
        model = graph.strip(model, _baked_at_export)
    return model
