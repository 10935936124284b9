"""Pruned Keras model -> .tflite with its zeros stored sparse."""

from tfmot_lite.core import graph
from tfmot_lite.export.convert import to_tflite
from tfmot_lite.sparsity.prune import strip_pruning
from tfmot_lite.sparsity.wrapper import PruneLowMagnitude


def to_sparse_tflite(model, path=None):
    """Strips pruning wrappers and converts with `EXPERIMENTAL_SPARSITY`.

    With `optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]` the TFLite
    converter stores weight tensors that are mostly zeros in a compressed
    sparse format and inserts a `DENSIFY` operator that expands each of them
    when the interpreter is prepared. XNNPACK's sparse inference reads its
    sparse weights this way (TFLite XNNPACK delegate README, "Sparse
    Inference"); a dense model needs no flag.

    Args:
      model: a model pruned with `prune_low_magnitude` (wrappers are removed
        here, on a copy), or an already stripped model.
      path: if given, the bytes are also written there.

    Returns:
      The flatbuffer as `bytes`. `model` is not modified.
    """
    import tensorflow as tf

    if any(isinstance(layer, PruneLowMagnitude) for _, layer in graph.iter_layers(model)):
        model = strip_pruning(model)
    return to_tflite(
        model,
        optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY],
        path=path,
    )
