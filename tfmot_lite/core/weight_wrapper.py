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

Hooks for subclasses beyond the weights (QAT uses them): `call_substitutions`
swaps other attributes for one call (an activation function followed by its
quantizer), `transform_outputs` post-processes the layer's outputs (output
quantizers). `recorded_assignments` lets a caller learn, once, which
attribute an assignment such as `layer.kernel = t` targets, even where Keras 3
exposes the weight as a read-only property.
"""

import contextlib
import inspect

import keras
from keras import ops

_MISSING = object()


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
    """Points each `(owner, attribute)` slot at a value for one call.

    Every slot is put back as it was on exit, also when the call raises; a
    slot the owner did not have before is removed again.
    """
    saved = [vars(owner).get(name, _MISSING) for owner, name in slots]
    try:
        for (owner, name), value in zip(slots, values):
            # `object.__setattr__` skips Keras' attribute tracking: a tensor
            # must not become tracked state, and the variable it replaces is
            # put back as it was.
            object.__setattr__(owner, name, value)
        yield
    finally:
        for (owner, name), value in zip(slots, saved):
            if value is _MISSING:
                vars(owner).pop(name, None)
            else:
                object.__setattr__(owner, name, value)


# -- learning where an assignment lands ---------------------------------------

_RECORDING_CLASSES = {}
_RECORDS = []


def _recording_class(cls):
    """A cached subclass of `cls` whose `__setattr__` records instead of sets."""
    if cls not in _RECORDING_CLASSES:

        def __setattr__(self, name, value):
            _RECORDS[-1].append((self, name, value))

        _RECORDING_CLASSES[cls] = type(
            cls.__name__, (cls,), {"__setattr__": __setattr__, "__module__": cls.__module__}
        )
    return _RECORDING_CLASSES[cls]


@contextlib.contextmanager
def recorded_assignments(layer):
    """Yields a list that receives `(owner, attribute, value)` for every
    attribute assignment made to `layer` or its sub-layers inside the block;
    the assignments themselves are not performed.

    Used once at build time, so that code written as `layer.kernel = t`
    (tfmot's `QuantizeConfig.set_quantize_weights`) can be resolved to the
    slot that holds the kernel, even behind a read-only property.
    """
    owners = list(_owners(layer))
    classes = [type(owner) for owner in owners]
    records = []
    _RECORDS.append(records)
    try:
        for owner, cls in zip(owners, classes):
            object.__setattr__(owner, "__class__", _recording_class(cls))
        yield records
    finally:
        for owner, cls in zip(owners, classes):
            object.__setattr__(owner, "__class__", cls)
        _RECORDS.pop()


def assigned_slot(layer, owner, name, weight=None):
    """The `(owner, attribute)` slot an assignment `owner.name = ...` means.

    An attribute that holds `weight` is the slot itself; a read-only property
    (`Dense.kernel`) means the attribute that holds `weight` behind it; any
    other name is taken as it is (a new attribute, set for one call).
    """
    if weight is not None and vars(owner).get(name) is weight:
        return owner, name
    if weight is not None and isinstance(getattr(type(owner), name, None), property):
        return find_weight_slots(layer, [weight])[0]
    return owner, name


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


def signature_with_training(layer):
    """`layer.call`'s signature, with a `training` keyword if it has none:
    a layer standing for `layer` accepts what `layer` accepts (KerasHub
    calls attention as `layer(query=x, value=x)`) and still learns whether
    it is training."""
    signature = layer._call_signature
    if "training" in signature.parameters:
        return signature
    params = list(signature.parameters.values())
    training = inspect.Parameter("training", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = len(params)
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at -= 1
    return signature.replace(parameters=params[:at] + [training] + params[at:])


# The default of `call`'s first argument: Keras' Sequential wants a
# positional input, and KerasHub calls attention with keywords only.
NO_INPUTS = object()


def positional(inputs, args):
    """The positional arguments of a call whose first may be `NO_INPUTS`."""
    return args if inputs is NO_INPUTS else (inputs, *args)


def take_call_signature(outer, inner):
    """Makes Keras bind `outer`'s call arguments as `inner`'s (see
    `signature_with_training`); `outer.call` takes `*args, **kwargs`."""
    outer._call_signature = signature_with_training(inner)
    outer.call_signature_parameters = list(outer._call_signature.parameters)
    outer._call_has_training_arg = True
    outer._call_has_mask_arg = "mask" in outer.call_signature_parameters
    outer._call_has_context_arg = {
        arg: arg in outer.call_signature_parameters for arg in outer._call_context_args
    }


class WeightTransformWrapper(keras.layers.Wrapper):
    """Base class: calls `layer` with `transformed_weights()` in place.

    Subclasses implement:
      * `target_weights()`: the layer's variables to transform;
      * `build_transform()`: create the wrapper's own state (masks, ...);
      * `transformed_weights(training)`: one tensor per target weight.

    and may override:
      * `weight_slots()`: where each transformed weight goes (default: the
        attribute that holds each target weight), resolved once at build;
      * `call_substitutions(training)`: other `(slot, value)` pairs to swap
        in for one call (QAT: activation functions);
      * `transform_outputs(outputs, training)`: applied to the layer's
        outputs (QAT: output quantizers);
      * `strip()`: the plain layer that replaces the wrapper (default: the
        wrapped layer with `bake()`d weights).

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
        # Called as `layer` is called (`attention(query=x, value=x)` inside
        # a KerasHub block), plus `training`.
        take_call_signature(self, layer)
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

    # -- optional hooks -----------------------------------------------------

    def weight_slots(self):
        return find_weight_slots(self.layer, self.target_weights())

    def call_substitutions(self, training):
        return []

    def transform_outputs(self, outputs, training):
        return outputs

    def bake(self):
        """Writes the inference-time transformed weights (masked, clustered,
        fake-quantized, ...) into the wrapped layer's own variables, so that
        the bare layer computes what the wrapper computed."""
        values = self.transformed_weights(False)
        for weight, value in zip(self.target_weights(), values):
            weight.assign(ops.cast(value, weight.dtype))

    def strip(self):
        """The layer to use in place of this wrapper (see `graph.strip`)."""
        self.bake()
        return self.layer

    # -- Keras plumbing -----------------------------------------------------

    def build(self, input_shape=None, *args, **kwargs):
        # Keras passes one `input_shape`; a composite's own `build` may
        # build its attention with `query_shape=..., value_shape=...`.
        if not self.layer.built:
            if input_shape is not None or not (args or kwargs):
                args = (input_shape, *args)
            self.layer.build(*args, **kwargs)
        self._finish_build()

    def get_build_config(self):
        # A layer without weights may record no build shape; ours has it.
        return self.layer.get_build_config() or super().get_build_config()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        self._finish_build()

    def _finish_build(self):
        if self.built and self._slots is not None:
            return
        self._slots = self.weight_slots()
        self.build_transform()
        self.built = True

    def call(self, inputs=NO_INPUTS, *args, training=None, **kwargs):
        outputs = self.call_substituted(
            positional(inputs, args), kwargs, self.transformed_weights(training),
            self.call_substitutions(training), training)
        return self.transform_outputs(outputs, training)

    def call_substituted(self, args, kwargs, weights, substitutions, training):
        """The wrapped layer called on `args` with `weights` (one per
        target weight, cast to its compute dtype) and each `(slot, value)`
        of `substitutions` in place."""
        dtype = self.layer.compute_dtype
        values = [
            ops.cast(v, dtype)
            if keras.backend.standardize_dtype(v.dtype) != dtype
            else v
            for v in weights
        ]
        slots = list(self._slots)
        for slot, value in substitutions:
            slots.append(slot)
            values.append(value)
        if self.layer._call_has_training_arg:
            kwargs = {**kwargs, "training": training}
        with substituted(slots, values):
            return self.layer(*args, **kwargs)

    def compute_mask(self, *args, **kwargs):
        return self.layer.compute_mask(*args, **kwargs)
