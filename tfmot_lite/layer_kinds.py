"""Keras layer families that the technique registries classify alike.

Pruning and clustering both optimize "the kernel" of these layers; each
registry adds its own exceptions (RNN cells, attention, depthwise kernels).
"""

from keras import layers

# Layers whose one optimized weight is `kernel`.
KERNEL_LAYERS = (
    layers.Dense,
    layers.EinsumDense,
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
)
# Separable convolutions: only the pointwise kernel is optimized.
SEPARABLE_LAYERS = (layers.SeparableConv1D, layers.SeparableConv2D)
DEPTHWISE_LAYERS = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
NORMALIZATION_LAYERS = (
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.GroupNormalization,
)
