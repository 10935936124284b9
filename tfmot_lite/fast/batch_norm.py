"""Keras' BatchNormalization, trained through TensorFlow's fused kernel.

Pruning and clustering leave BatchNormalization layers as they are, so a
pruned or clustered Keras 3 model pays what a plain one pays for them: on
TensorFlow, Keras 3 trains BatchNormalization with a dozen element-wise ops
each way where tf_keras runs one `FusedBatchNormV3`, about half of a
MobileNetV2 training step on CPU (docs/perf.md). `graph.training_layer`
therefore puts a `FusedBatchNormalization` in place of each of them when a
technique rewrites a model, and `graph.strip` puts Keras' class back.

It is the same layer: a subclass with the same config and weights, the same
inference, and in training the same outputs, gradients and moving-statistics
updates to float32 rounding (`fast_ops.batch_norm_train`). Only the kernel
differs, and only where `fast_ops.can_fuse_batch_norm` says the fused one
applies (TensorFlow, 4-D channels-last input, no mask, renorm or
synchronized statistics); anywhere else it is Keras' code path.
"""

import keras

from tfmot_lite.fast import ops as fast_ops


@keras.saving.register_keras_serializable(package="tfmot_lite")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step runs
    `fast_ops.batch_norm_train` (one fused kernel on TensorFlow)."""

    # A training stand-in: `graph.strip` puts this class back, and a
    # `SublayerHost` records it like a technique's layer.
    stands_in_for = keras.layers.BatchNormalization

    def call(self, inputs, training=None, mask=None):
        if (
            training
            and self.trainable
            and mask is None
            and fast_ops.can_fuse_batch_norm(self, len(inputs.shape))
        ):
            return fast_ops.batch_norm_train(self, inputs)
        return super().call(inputs, training=training, mask=mask)
