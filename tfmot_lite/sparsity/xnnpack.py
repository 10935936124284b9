"""Pruning for XNNPACK's sparse inference: `PruneForLatencyOnXNNPack`.

XNNPACK, LiteRT's default CPU delegate, runs part of a float CNN with sparse
kernels when the subgraph meets the rules in `tfmot_lite/core/xnnpack_rules.py`,
found by the walk in `tfmot_lite/core/xnnpack_walk.py` (the .tflite
inspector walks the exported file the same way). In Keras terms:

* Start: a Conv2D 3x3, stride 2, no dilation, on 3 input channels, padded by
  1 on every side. Keras' `padding='same'` pads 0 before and 1 after on even
  inputs, so write `ZeroPadding2D(1)` then `Conv2D(..., 3, strides=2,
  padding='valid')` (XNNPACK folds the pad into the convolution). It must be
  the first Conv2D on every path from a model input.
* End: `GlobalAveragePooling2D(keepdims=True)`; Flatten and a Dense head may
  follow. Every model output must be computed through such an end.
* In between: Conv2D 1x1 (the layers this policy prunes), DepthwiseConv2D
  3x3/5x5 padded by kernel // 2, ZeroPadding2D feeding one 'valid'
  DepthwiseConv2D, BatchNormalization over channels and Rescaling by scalars
  or per-channel vectors (they export as MUL/ADD with constants), Add and
  Multiply of 4-D tensors, bilinear UpSampling2D, GlobalAveragePooling2D
  (keepdims=True), the activations relu, relu6, leaky relu, elu (alpha 1),
  sigmoid, hard swish and swish, and layers that vanish at inference
  (Dropout and its kin, Identity).
* Layers before the start and after the end run dense and are unrestricted.

`xnnpack_sparsity_report(model)` (`xnnpack_report.py`) returns every
finding at once; the policy raises them as one ValueError. tfmot's own
policy is tensorflow_model_optimization/python/core/sparsity/keras/
pruning_policy.py.
"""

import keras

from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.sparsity.policy import PruningPolicy
from tfmot_lite.sparsity.xnnpack_graph import layer_op
from tfmot_lite.sparsity.xnnpack_report import xnnpack_sparsity_report


@keras.saving.register_keras_serializable(package="tfmot_lite")
class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only the 1x1 Conv2D layers of XNNPACK's sparse subgraph.

    `ensure_model_supports_pruning` raises one ValueError listing every layer
    that keeps the model from running sparse on XNNPACK (see
    `tfmot_lite/core/xnnpack_rules.py`); `allow_pruning` admits the 1x1 Conv2D
    layers XNNPACK runs with sparse kernels over feature maps larger than
    one pixel, and nothing else: the start convolution, depthwise
    convolutions, squeeze-and-excite convolutions and a 1x1 classifier head
    after the spatial mean stay dense.

    The policy holds no state: each call decides from its argument alone,
    so the two methods may be called in any order, on any models.

    ```python
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model,
        pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(0.25, 0.75, 0, end),
        pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack(),
    )
    ```

    Export the stripped model with
    `tfmot_lite.export.to_sparse_tflite` and check the result with
    `tfmot_lite.export.inspect_tflite`.
    """

    def ensure_model_supports_pruning(self, model):
        xnnpack_sparsity_report(model).raise_if_unsupported()

    def allow_pruning(self, layer):
        return rules.worth_pruning(layer_op(layer))

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return "PruneForLatencyOnXNNPack()"
