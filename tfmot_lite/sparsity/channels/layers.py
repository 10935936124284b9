"""How each Keras layer treats channels (the last axis), for channel pruning.

One table, read by the coupling analysis (`coupling.py`), the wrapper
(`wrapper.py`) and `shrink` (`shrink.py`):

* producers make new output channels from a kernel: Conv1D/Conv2D, Dense,
  and SeparableConv1D/2D (the pointwise kernel). Their output channels are
  what `prune_channels` masks; their input channels are what `shrink`
  slices when a channel before them is removed;
* channel-wise layers hold one weight per channel and map channel `c` to
  channel `c`: BatchNormalization and DepthwiseConv1D/2D (multiplier 1);
* pass-through layers hold no weights and keep channels in place:
  elementwise activations, pooling, padding, cropping, up-sampling, dropout;
* merges join channels of several tensors: Add, Multiply, Average, Maximum,
  Minimum, Subtract (position by position) and Concatenate (at offsets);
* Flatten and Reshape mix channels into other dimensions.

A pruned channel must stay exactly zero all the way to the layers that
consume it, so activations must map 0 to 0 (`maps_zero_to_zero`).
"""

import keras
import numpy as np
from keras import layers

from tfmot_lite.core import layer_kinds

# Which weights are kernels is `tfmot_lite/core/layer_kinds.py`'s business; this
# table is about how channels flow through a layer.
SEPARABLE_LAYERS = (layers.SeparableConv1D, layers.SeparableConv2D)
DEPTHWISE_LAYERS = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
PRODUCER_LAYERS = (layers.Conv1D, layers.Conv2D, layers.Dense, *SEPARABLE_LAYERS)
CHANNELWISE_LAYERS = (layers.BatchNormalization, *DEPTHWISE_LAYERS)
ACTIVATION_LAYERS = (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU)
PASS_THROUGH_LAYERS = (
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.ZeroPadding1D,
    layers.ZeroPadding2D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.UpSampling1D,
    layers.UpSampling2D,
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.GaussianDropout,
    layers.GaussianNoise,
    layers.ActivityRegularization,
    layers.Identity,
)
ELEMENTWISE_MERGES = (
    layers.Add,
    layers.Multiply,
    layers.Average,
    layers.Maximum,
    layers.Minimum,
    layers.Subtract,
)
MIXING_LAYERS = (layers.Flatten, layers.Reshape)
# Activations that combine the channels of a position (not elementwise).
_CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax", "sparsemax", "glu"}


def is_channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def is_producer(layer):
    """A layer whose output channels `prune_channels` can mask."""
    if not isinstance(layer, PRODUCER_LAYERS) or not is_channels_last(layer):
        return False
    return getattr(layer, "groups", 1) == 1


def is_channelwise(layer, rank):
    """BatchNormalization over the last axis, or a depthwise convolution with
    multiplier 1: one weight slice per channel. `rank`: the input's rank."""
    if isinstance(layer, layers.BatchNormalization):
        axis = layer.axis
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                return False
            axis = axis[0]
        return int(axis) % rank == rank - 1
    if isinstance(layer, DEPTHWISE_LAYERS):
        return layer.depth_multiplier == 1 and is_channels_last(layer)
    return False


def activation_name(layer):
    return layer_kinds.activation_name(getattr(layer, "activation", None))


def maps_zero_to_zero(fn):
    """True when the elementwise function `fn` sends 0 to exactly 0."""
    value = keras.ops.convert_to_numpy(fn(keras.ops.zeros((1, 2))))
    return bool(np.all(value == 0))


def zero_problem(layer):
    """Why a pruned (all-zero) channel would not stay zero through `layer`'s
    activation, or None."""
    if isinstance(layer, layers.Activation):
        fn = layer.activation
    elif isinstance(layer, ACTIVATION_LAYERS):
        fn = layer
    elif getattr(layer, "activation", None) is not None:
        fn = layer.activation
    else:
        return None
    if not maps_zero_to_zero(fn):
        name = activation_name(layer) or layer.__class__.__name__
        return (
            f"the activation '{name}' of '{layer.name}' maps 0 to a non-zero "
            "value, so a pruned channel would not vanish"
        )
    return None


def is_elementwise_activation(layer):
    if isinstance(layer, layers.Activation):
        return activation_name(layer) not in _CHANNEL_MIXING_ACTIVATIONS
    return isinstance(layer, ACTIVATION_LAYERS)


def is_pass_through(layer):
    if is_elementwise_activation(layer):
        return True
    if isinstance(layer, PASS_THROUGH_LAYERS):
        return is_channels_last(layer)
    return False


def is_concatenate_last(layer, rank):
    return isinstance(layer, layers.Concatenate) and layer.axis % rank == rank - 1


def is_custom(layer):
    """A layer class defined outside Keras (the user's own)."""
    return not type(layer).__module__.startswith("keras")


def kernel_of(layer):
    """The kernel whose last axis holds a producer's output channels."""
    if isinstance(layer, SEPARABLE_LAYERS):
        return layer.pointwise_kernel
    return layer.kernel


def channel_count(layer):
    """Output channels of a producer or channel-wise layer (built or not)."""
    if isinstance(layer, layers.Dense):
        return layer.units
    if isinstance(layer, PRODUCER_LAYERS):
        return layer.filters
    if layer.built:
        if isinstance(layer, layers.BatchNormalization):
            return int(layer.moving_mean.shape[0])
        return int(layer.kernel.shape[-2])
    raise ValueError(f"Layer '{layer.name}' must be built to count its channels.")
