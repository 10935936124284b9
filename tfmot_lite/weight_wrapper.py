"""A wrapper that runs a layer with some of its weights replaced by tensors.

Pruning multiplies a kernel by a mask, clustering rebuilds it from centroids,
quantization-aware training fake-quantizes it. In each case the wrapped
layer's own `call` must see the transformed tensor instead of its variable,
and gradients must flow through the transformation back to the variables
that training updates.

Keras layers read their weights from attributes (`self.kernel`,
`self._kernel`, `self.cell.recurrent_kernel`, ...). `WeightTransformWrapper`
finds the attribute that holds each target variable once, at build time, and
for the duration of one call points it at the transformed tensor. The swap is
plain Python, so the same code traces on TensorFlow, JAX and PyTorch, and the
variable itself is never written to by the forward pass.
"""

import contextlib

import keras
from keras import ops


def _owners(layer):
    """The layer and every sub-layer it holds (cells, inner Dense, ...)."""
    return layer._flatten_layers(include_self=True, recursive=True)


def find_weight_slots(layer, weights):
    """Returns `(owner, attribute)` for each variable in `weights`.

    Raises a ValueError naming the layer when a variable is not held in a
    plain attribute of the layer or one of its sub-layers.
    """
    slots = []
    for weight in weights:
        found = None
        for owner in _owners(layer):
            for name, value in vars(owner).items():
                if value is weight:
                    found = (owner, name)
                    break
            if found:
                break
        if found is None:
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}): weight "
                f"'{weight.path}' is not stored as an attribute of the layer "
                "or of one of its sub-layers, so it cannot be transformed "
                "during the forward pass. Store each weight returned by the "
                "layer in an attribute (for example `self.kernel = "
                "self.add_weight(...)`)."
            )
        slots.append(found)
    return slots


@contextlib.contextmanager
def substituted(slots, values):
    """Points each `(owner, attribute)` slot at a tensor for one call."""
    saved = [getattr(owner, name) for owner, name in slots]
    try:
        for (owner, name), value in zip(slots, values):
            # `object.__setattr__` skips Keras' attribute tracking: a tensor
            # must not become tracked state, and the variable it replaces is
            # put back as it was.
            object.__setattr__(owner, name, value)
        yield
    finally:
        for (owner, name), value in zip(slots, saved):
            object.__setattr__(owner, name, value)


def carry_input_shape(source, target):
    """Gives `target` the `input_shape=` that `source` was created with.

    A first layer given `input_shape=` builds its Sequential: Keras 3 reads
    `_input_shape_arg` from the first layer it is given. Wrappers (and layer
    copies made from a config, which drops it) carry it over, as tfmot's
    wrappers carry `_batch_input_shape`.
    """
    shape = getattr(source, "_input_shape_arg", None)
    if shape is not None and getattr(target, "_input_shape_arg", None) is None:
        target._input_shape_arg = shape
    return target


class WeightTransformWrapper(keras.layers.Wrapper):
    """Base class: calls `layer` with `transformed_weights()` in place.

    Subclasses implement:
      * `target_weights()`: the layer's variables to transform;
      * `build_transform()`: create the wrapper's own state (masks, ...);
      * `transformed_weights(training)`: one tensor per target weight.

    The wrapper is transparent to Keras masking and to multi-input layers:
    every positional and keyword argument is forwarded to the wrapped layer.
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"{self.__class__.__name__} wraps a Keras layer; received "
                f"{layer!r} of type {type(layer).__name__}."
            )
        kwargs.setdefault("name", f"{self._name_prefix()}_{layer.name}")
        super().__init__(layer, **kwargs)
        carry_input_shape(layer, self)
        self.supports_masking = getattr(layer, "supports_masking", False)
        self._slots = None

    @classmethod
    def _name_prefix(cls):
        return cls.__name__.lower()

    # -- to implement -------------------------------------------------------

    def target_weights(self):
        raise NotImplementedError

    def build_transform(self):
        raise NotImplementedError

    def transformed_weights(self, training):
        raise NotImplementedError

    def bake(self):
        """Writes the inference-time transformed weights (masked, clustered,
        ...) into the wrapped layer's own variables, so that the bare layer
        computes what the wrapper computed."""
        values = self.transformed_weights(False)
        for weight, value in zip(self.target_weights(), values):
            weight.assign(value)

    # -- Keras plumbing -----------------------------------------------------

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._finish_build()

    def get_build_config(self):
        return self.layer.get_build_config()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        self._finish_build()

    def _finish_build(self):
        if self.built and self._slots is not None:
            return
        self._slots = find_weight_slots(self.layer, self.target_weights())
        self.build_transform()
        self.built = True

    def call(self, inputs, *args, training=None, **kwargs):
        values = self.transformed_weights(training)
        dtype = self.layer.compute_dtype
        values = [
            ops.cast(v, dtype)
            if keras.backend.standardize_dtype(v.dtype) != dtype
            else v
            for v in values
        ]
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        with substituted(self._slots, values):
            return self.layer(inputs, *args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)
