"""How a layer treats channels (the last axis), for channel pruning.

Which layer does what is the `channels` column of the one layer table
(`tfmot_lite/core/layer_kinds.py`); these functions add what a layer's own
configuration decides, for the coupling analysis (`coupling.py`), the
wrapper (`wrapper.py`) and `shrink` (`shrink.py`):

* producers (`PRODUCES`: Dense, Conv1D/Conv2D, SeparableConv1D/2D) count
  only with channels_last and no groups. Their output channels are what
  `prune_channels` masks, in the last axis of their kernel (a separable
  convolution's pointwise kernel); their input channels are what `shrink`
  slices when a channel before them is removed;
* channel-wise layers (`CHANNELWISE`) count when they map channel `c` to
  channel `c`: BatchNormalization over the last axis, DepthwiseConv1D/2D
  with multiplier 1;
* layers that keep channels in place (`KEEPS`, `ACTIVATES`) count with
  channels_last;
* Concatenate counts when it joins along the last axis.

A pruned channel must stay exactly zero all the way to the layers that
consume it, so activations must map 0 to 0 (`zero_problem`).
"""

import keras
import numpy as np
from keras import layers

from tfmot_lite.core import layer_kinds


def is_channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def is_producer(layer):
    """A layer whose output channels `prune_channels` can mask."""
    if layer_kinds.channel_role(layer) != layer_kinds.PRODUCES:
        return False
    return is_channels_last(layer) and getattr(layer, "groups", 1) == 1


def is_channelwise(layer, rank):
    """BatchNormalization over the last axis, or a depthwise convolution with
    multiplier 1: one weight slice per channel. `rank`: the input's rank."""
    if layer_kinds.channel_role(layer) != layer_kinds.CHANNELWISE:
        return False
    if isinstance(layer, layers.BatchNormalization):
        axis = layer_kinds.batch_norm_axis(layer)
        return axis is not None and axis % rank == rank - 1
    return layer.depth_multiplier == 1 and is_channels_last(layer)


def keeps_channels(layer):
    """No weights, and channel `c` of the input is channel `c` of the output
    (elementwise activations, pooling, padding, dropout, ...)."""
    role = layer_kinds.channel_role(layer)
    return role in (layer_kinds.KEEPS, layer_kinds.ACTIVATES) and is_channels_last(layer)


def merges_elementwise(layer):
    """Add, Multiply, ...: channel `c` of every input is channel `c` out."""
    return layer_kinds.channel_role(layer) == layer_kinds.MERGES


def is_concatenate_last(layer, rank):
    role = layer_kinds.channel_role(layer)
    return role == layer_kinds.CONCATENATES and layer.axis % rank == rank - 1


def mixes_channels(layer):
    """Flatten, Reshape: channels move into other dimensions."""
    return layer_kinds.channel_role(layer) == layer_kinds.MIXES


def maps_zero_to_zero(fn):
    """True when the elementwise function `fn` sends 0 to exactly 0."""
    value = keras.ops.convert_to_numpy(fn(keras.ops.zeros((1, 2))))
    return bool(np.all(value == 0))


def zero_problem(layer):
    """Why a pruned (all-zero) channel would not stay zero through `layer`'s
    activation, or None."""
    fn = getattr(layer, "activation", None)
    if fn is None and layer_kinds.channel_role(layer) == layer_kinds.ACTIVATES:
        fn = layer  # ReLU, LeakyReLU, ELU: the layer is the function
    if fn is None:
        return None
    if not maps_zero_to_zero(fn):
        name = layer_kinds.activation_name(getattr(layer, "activation", None))
        return (
            f"the activation '{name or layer.__class__.__name__}' of "
            f"'{layer.name}' maps 0 to a non-zero value, so a pruned channel "
            "would not vanish"
        )
    return None


def is_custom(layer):
    """A layer class defined outside Keras (the user's own)."""
    return not type(layer).__module__.startswith("keras")


def output_kernel(layer):
    """The kernel whose last axis holds a producer's output channels (the one
    kernel its table row lists)."""
    ((_, kernel),) = layer_kinds.listed_kernels(layer)
    return kernel


def is_separable(layer):
    """A producer whose input channels pass a depthwise kernel before the
    pointwise kernel that holds its output channels."""
    return layer_kinds.listed_kernels(layer)[0][0] == "pointwise_kernel"


def channel_count(layer):
    """Output channels of a producer or channel-wise layer (built or not)."""
    field = layer_kinds.channel_width_field(layer)
    if field is not None:
        return getattr(layer, field)
    if layer.built:
        if isinstance(layer, layers.BatchNormalization):
            return int(layer.moving_mean.shape[0])
        return int(layer.kernel.shape[-2])
    raise ValueError(f"Layer '{layer.name}' must be built to count its channels.")
