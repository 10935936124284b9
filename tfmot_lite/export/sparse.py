"""Pruned Keras model -> .tflite with its zeros stored sparse, checked.

TFLite's sparse storage is read either by a DENSIFY operator or, for
FULLY_CONNECTED, by a sparse kernel that computes on the compressed weights.
That kernel (TensorFlow 2.21's LiteRT) gives wrong outputs for some layers,
for example a 6-input Dense with whole output units zeroed, as channel
pruning leaves them (tests/export/test_export_inputs.py keeps the
reproduction). `verified_sparse` runs the sparse and the dense conversion
side by side and keeps the sparse one only when they agree.
"""

import numpy as np

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


def _examples(data, count):
    """Up to `count` single examples of `data` (an array, or a dict of
    arrays keyed by input name)."""
    if isinstance(data, dict):
        n = min(count, len(next(iter(data.values()))))
        return [{name: np.asarray(v)[i] for name, v in data.items()} for i in range(n)]
    return list(np.asarray(data)[:count])


def verified_sparse(sparse_flatbuffer, convert_dense, data=None, tolerance=1e-4):
    """`(flatbuffer, warning)`: `sparse_flatbuffer` when it computes what the
    dense conversion (`convert_dense()`) computes on `data` (or on random
    inputs), else the dense flatbuffer and a sentence saying why ("" when
    the sparse one is kept). A model with no weight stored sparse is kept
    without converting again."""
    from tfmot_lite.export.runtime import TFLiteModel
    from tfmot_lite.export.weights import weight_stats

    if not any(stats.sparse for stats in weight_stats(sparse_flatbuffer)):
        return sparse_flatbuffer, ""
    dense_flatbuffer = convert_dense()
    sparse, dense = TFLiteModel(sparse_flatbuffer), TFLiteModel(dense_flatbuffer)
    samples = (_examples(data, 16) if data is not None
               else [dense.random_sample(seed) for seed in range(8)])
    for sample in samples:
        expected = dense.invoke(sample)
        difference = float(np.max(np.abs(sparse.invoke(sample) - expected)))
        if difference > tolerance * max(1.0, float(np.max(np.abs(expected)))):
            return dense_flatbuffer, (
                "Stored the weights dense: with sparse storage, LiteRT's sparse "
                f"kernels computed outputs {difference:.3g} away from the dense "
                "model's (a TFLite sparse FULLY_CONNECTED bug). XNNPACK sparse "
                "inference reads only sparse CONV_2D weights, so nothing is lost there."
            )
    return sparse_flatbuffer, ""
