"""Any tfmot-lite model -> the plain Keras model the converter should see.

`strip_for_export(model)` removes the training-time wrappers that have no
place in a deployed model (pruning masks, clustering, `QuantizeAnnotate`
marks), baking their inference-time weights into the layers, through
`graph.strip`. Quantization-aware-training wrappers are kept: their
fake-quant ops are what the TFLite converter turns into an int8 model.
`techniques(model)` names what a model holds.
"""

import keras

from tfmot_lite.core import graph
from tfmot_lite.core.weight_wrapper import WeightTransformWrapper


def _qat_classes():
    """Every layer class a QAT model is made of (wrappers, fused Conv-BN,
    input and raw-operation quantizers), as the quantization package lists them."""
    from tfmot_lite.quantization.quantize import QUANTIZED

    return QUANTIZED


def _layers_deep(model):
    """Every layer, descending into wrappers' inner layers too."""
    for _, layer in graph.iter_layers(model):
        while True:
            yield layer
            inner = getattr(layer, "layer", None)
            if not isinstance(layer, keras.layers.Wrapper) or inner is None:
                break
            layer = inner


def _technique_name(wrapper):
    from tfmot_lite.clustering.wrapper import ClusterWeights
    from tfmot_lite.sparsity.wrapper import PruneLowMagnitude

    if isinstance(wrapper, PruneLowMagnitude):  # channel pruning included
        return "pruning"
    if isinstance(wrapper, ClusterWeights):
        return "clustering"
    return type(wrapper).__name__


def techniques(model):
    """The set of techniques whose wrappers `model` holds, e.g.
    `{"pruning", "qat"}`; empty for a plain Keras model."""
    found = set()
    qat = _qat_classes()
    for layer in _layers_deep(model):
        if isinstance(layer, qat):
            found.add("qat")
        elif isinstance(layer, WeightTransformWrapper):
            found.add(_technique_name(layer))
    return found


def is_qat(model):
    return "qat" in techniques(model)


def strip_for_export(model):
    """A copy of `model` without pruning/clustering/annotation wrappers.

    QAT models are returned as they are: the converter reads their
    fake-quant ranges, and wrappers nested inside `QuantizeWrapper` (pruning
    or clustering preserved through QAT) compute their inference weights in
    the traced graph, which the converter folds into constants. A model
    without wrappers is returned unchanged (it is not copied).
    """
    from tfmot_lite.quantization.wrapper import QuantizeAnnotate

    if is_qat(model):
        return model
    for _ in range(8):  # Wrappers may wrap wrappers; each pass peels one.
        top = [layer for _, layer in graph.iter_layers(model)]
        if any(isinstance(layer, WeightTransformWrapper) for layer in top):
            model = graph.strip(model, WeightTransformWrapper)
        elif any(isinstance(layer, QuantizeAnnotate) for layer in top):
            model = graph.rewrite(
                model,
                lambda layer: layer.layer if isinstance(layer, QuantizeAnnotate) else layer,
            )
        else:
            break
    return model
