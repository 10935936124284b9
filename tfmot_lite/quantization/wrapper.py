"""The layers a quantized model is made of.

* `QuantizeWrapper` (alias `QuantizeWrapperV2`): a `WeightTransformWrapper`
  that runs a layer with the weights, activations and outputs its
  `QuantizeConfig` names fake-quantized.
* `QuantizeLayer`: fake-quantizes a tensor entering the quantized part of the
  model (the model input): the converter's int8 input scale.
* `QuantizeAnnotate`: marks a layer for `quantize_apply`; it computes exactly
  what the layer computes.
* `QuantizeOperation`: a raw operation (`x + 3.0`) with an output quantizer.

The fused Conv-BatchNorm layers live in `conv_bn_folding.py`.
"""

import keras
from keras import ops

from tfmot_lite.core import layer_kinds, techniques
from tfmot_lite.core.layer_kinds import (
    FUSED_RELUS, activation_name, fuses_activation, keras_relu_name,
)
from tfmot_lite.core.weight_wrapper import (
    NO_INPUTS,
    WeightTransformWrapper,
    assigned_slot,
    carry_input_shape,
    find_weight_slots,
    recorded_assignments,
)
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.config import (
    QuantizeConfig,
    default_activation_quantizer,
    device_activation,
    fixed_output_quantizer,
)
from tfmot_lite.quantization.input_range import BorrowsInputRange
from tfmot_lite.quantization.integer_inference import integer_call, operation_call
from tfmot_lite.quantization.inside import InsideQuantizeConfig, Points

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


def _check_config(layer, config, optional=False):
    if config is None and optional:
        return None
    if not isinstance(config, QuantizeConfig):
        raise ValueError(
            f"`quantize_config` for layer '{layer.name}' must be a "
            f"`tfmot.quantization.keras.QuantizeConfig` instance; got {config!r}. "
            "Subclass QuantizeConfig and pass an instance of it."
        )
    return config


def _config_object(value):
    """A QuantizeConfig from `from_config`: a serialized dict (loading), or
    the object itself (`graph.copy_layer` hands it over unserialized)."""
    if value is None or isinstance(value, QuantizeConfig):
        return value
    return keras.saving.deserialize_keras_object(value)


def _safe_name(name):
    return name.replace("/", "_").replace(":", "_")


def _nonnegative_output(layer):
    """Whether `layer`'s outputs are never negative: a ReLU/ReLU6 activation,
    or a ReLU layer with no negative slope."""
    if isinstance(layer, keras.layers.ReLU):
        return not layer.negative_slope and layer.threshold >= 0
    return activation_name(getattr(layer, "activation", None)) in FUSED_RELUS


class _QuantizeAwareActivation:
    """`activation` followed by its quantizer, for one call.

    Activations that TFLite runs as a separate op (softmax, sigmoid, ...) are
    also quantized before, so that the op between them has an int8 input,
    unless the input is quantized already (`pre_weights` None: an
    `Activation` layer after a quantized layer). So is a ReLU the layer's
    op does not fuse (`fused` False: a Conv2DTranspose's;
    `layer_kinds.fuses_activation`).
    """

    def __init__(self, activation, quantizer, weights, pre_weights, training, fused):
        self.activation = activation
        self.quantizer = quantizer
        self.weights = weights
        self.pre_weights = pre_weights
        self.training = training
        self.fused = fused

    def __call__(self, x):
        if not self.fused and self.pre_weights is not None:
            x = self.quantizer(x, self.training, self.pre_weights)
        relu = keras_relu_name(self.activation)
        if relu:  # `quantize_relu` may fold it into the fake-quant
            return q.quantize_relu(self.quantizer, x, self.training, self.weights,
                                   relu6=relu == "relu6")
        y, final = device_activation(self.activation, x, self.training,
                                     getattr(self.quantizer, "num_bits", 8))
        return y if final else self.quantizer(y, self.training, self.weights)


class _StandIn:
    """What `set_quantize_*` receives at build time in place of a tensor."""

    def __init__(self, index, like=None):
        self.index = index
        self.shape = getattr(like, "shape", None)
        self.dtype = getattr(like, "dtype", None)

    def __repr__(self):
        return f"<quantized value #{self.index}>"


@_register
class QuantizeWrapper(BorrowsInputRange, WeightTransformWrapper):
    """Quantization-aware training of one layer, as its `QuantizeConfig` says.

    At build the config is asked, once, for the weights and activations to
    quantize; its `set_quantize_weights` / `set_quantize_activations` run on
    stand-ins so that the wrapper learns which attribute each assignment
    targets (`layer.kernel = ...` means the variable behind Keras 3's
    read-only `Dense.kernel`). Each call then swaps the fake-quantized
    weights and the activation-then-quantize functions into those attributes,
    runs the layer, puts the attributes back and fake-quantizes the outputs.
    Quantizer state (ranges) lives in this wrapper's non-trainable weights.

    In inference a layer whose int8 kernel adds its bias as an int32
    (`layer_kinds.int32_bias`: Conv, DepthwiseConv, Dense) adds it rounded
    as the device does (`BorrowsInputRange.device_bias`), where its input's
    range and its kernel quantizer's `max|w|` (`kernel_max_abs`) are known.
    """

    technique = techniques.QAT

    # `graph.copy_layer` hands the config object to the copy unserialized.
    _copied_by_reference = ("quantize_config",)

    def __init__(self, layer, quantize_config, **kwargs):
        if isinstance(layer, keras.layers.Layer):
            _check_config(layer, quantize_config)
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config

    # -- build: ask the config once -----------------------------------------

    def _learn_slots(self, method, items, weights):
        """Runs `config.<method>(layer, stand-ins)` and resolves each
        stand-in's assignment to an `(owner, attribute)` slot."""
        layer, config = self.layer, self.quantize_config
        if not items:
            return []
        stand_ins = [_StandIn(i, w) for i, w in enumerate(weights)]
        with recorded_assignments(layer) as records:
            getattr(config, method)(layer, stand_ins)
        slots = [None] * len(items)
        for owner, name, value in records:
            if not isinstance(value, _StandIn) or value not in stand_ins:
                raise ValueError(
                    f"{type(config).__name__}.{method} assigned {value!r} to "
                    f"'{name}' of layer '{layer.name}'. It should only assign "
                    "the values it receives, in order (e.g. `layer.kernel = "
                    "quantize_weights[0]`)."
                )
            slots[value.index] = assigned_slot(layer, owner, name, weights[value.index])
        missing = [i for i, slot in enumerate(slots) if slot is None]
        if missing:
            raise ValueError(
                f"{type(config).__name__}.{method} did not assign value(s) "
                f"{missing} to an attribute of layer '{layer.name}'. Assign each "
                "item it receives to the attribute the layer reads, in the order "
                "the matching `get_*_and_quantizers` returns them."
            )
        return slots

    def weight_slots(self):
        config, layer = self.quantize_config, self.layer
        self._weight_pairs = list(config.get_weights_and_quantizers(layer))
        self._activation_pairs = list(config.get_activations_and_quantizers(layer))
        self._activation_slots = self._learn_slots(
            "set_quantize_activations", self._activation_pairs,
            [None] * len(self._activation_pairs),
        )
        return self._learn_slots(
            "set_quantize_weights", self._weight_pairs, [w for w, _ in self._weight_pairs]
        )

    def target_weights(self):
        return [weight for weight, _ in self._weight_pairs]

    def build_transform(self):
        config, layer = self.quantize_config, self.layer
        self._weight_vars = [
            quantizer.build(tuple(weight.shape), _safe_name(weight.name), self)
            for weight, quantizer in self._weight_pairs
        ]
        self._activation_vars = []
        quantizes_inputs = getattr(config, "quantizes_activation_inputs", True)
        for i, (activation, quantizer) in enumerate(self._activation_pairs):
            suffix = "" if i == 0 else f"_{i}"
            # A fixed output range (LOGISTIC's, TANH's, ...): none to track.
            self._activation_vars.append((
                {} if fixed_output_quantizer(activation) is not None
                else quantizer.build((1,), f"post_activation{suffix}", self),
                quantizer.build((1,), f"pre_activation{suffix}", self)
                if quantizes_inputs else None,
            ))
        out_shape = None
        input_shape = (layer.get_build_config() or {}).get("input_shape")
        if input_shape is not None:
            try:
                out_shape = layer.compute_output_shape(input_shape)
            except Exception:  # noqa: BLE001 - only per-axis output ranges need it
                out_shape = None
        if not out_shape or isinstance(out_shape, list):
            out_shape = (1,)
        # Ranges inside the layer's computation (`inside.py`): one per point.
        points = getattr(config, "get_point_quantizers", lambda _: {})(layer)
        self._points = {
            name: (quantizer, quantizer.build((1,), name, self))
            for name, quantizer in points.items()
        }
        self._output_quantizers = []
        for i, quantizer in enumerate(config.get_output_quantizers(layer)):
            name = "output" if i == 0 else f"output_{i}"
            self._output_quantizers.append((quantizer, quantizer.build(out_shape, name, self)))
        self._bias = self._int32_bias()

    def _int32_bias(self):
        """`(slot, kernel, kernel quantizer, its variables)` for a layer
        whose int8 kernel adds its bias as an int32, when the config
        quantizes the kernel with a quantizer that knows its step and leaves
        the bias alone; else None."""
        layer = self.layer
        bias, kernel = getattr(layer, "bias", None), getattr(layer, "kernel", None)
        if bias is None or kernel is None or not layer_kinds.int32_bias(layer):
            return None
        if any(weight is bias for weight, _ in self._weight_pairs):
            return None
        for (weight, quantizer), variables in zip(self._weight_pairs, self._weight_vars):
            if weight is kernel and hasattr(quantizer, "kernel_max_abs"):
                (slot,) = find_weight_slots(layer, [bias])
                return slot, kernel, quantizer, variables
        return None

    # -- call -----------------------------------------------------------------

    def transformed_weights(self, training):
        training = bool(training)
        return [
            quantizer(weight, training, variables)
            for (weight, quantizer), variables in zip(self._weight_pairs, self._weight_vars)
        ]

    def bake(self):
        """As `WeightTransformWrapper.bake`; a quantizer that folds a factor
        into its weight (`attention.ScaledQuantizer`) gives the layer's own
        weight back (`unscaled`)."""
        values = self.transformed_weights(False)
        for (weight, quantizer), value in zip(self._weight_pairs, values):
            if hasattr(quantizer, "unscaled"):
                value = quantizer.unscaled(value)
            weight.assign(ops.cast(value, weight.dtype))

    def call(self, inputs=NO_INPUTS, *args, training=None, **kwargs):
        if not (args or kwargs or inputs is NO_INPUTS or training):
            integer = integer_call(self, inputs)
            if integer is not None:
                return integer
        return super().call(inputs, *args, training=training, **kwargs)

    def _activations(self, training):
        return [
            (slot, _QuantizeAwareActivation(
                activation, quantizer, post, pre, training,
                fused=fuses_activation(self.layer, activation_name(activation))))
            for slot, (activation, quantizer), (post, pre) in zip(
                self._activation_slots, self._activation_pairs, self._activation_vars
            )
        ]

    def call_substitutions(self, training):
        training = bool(training)
        found = self._activations(training)
        if isinstance(self.quantize_config, InsideQuantizeConfig):
            paths = self.quantize_config.weight_paths(self.layer)
            points = Points(self._points, training, self.input_source, self.written_range(), {
                path: (weight, quantizer, variables) for path, (weight, quantizer), variables
                in zip(paths, self._weight_pairs, self._weight_vars)}, self.input_sources)
            found += self.quantize_config.substitutions(self.layer, points)
        if self._bias is not None and not training:
            slot, kernel, quantizer, variables = self._bias
            bias = self.device_bias(self.layer.bias,
                                    lambda: quantizer.kernel_max_abs(kernel, variables), training,
                                    quantizer.num_bits)
            if bias is not self.layer.bias:
                found.append((slot, bias))
        return found

    def transform_outputs(self, outputs, training):
        training = bool(training)
        if not self._output_quantizers:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(
                qz(o, training, v) for o, (qz, v) in zip(outputs, self._output_quantizers)
            )
        quantizer, variables = self._output_quantizers[0]
        hint = q.nonnegative_hint(quantizer) if _nonnegative_output(self.layer) else {}
        return quantizer(outputs, training, variables, **hint)

    def output_range(self):
        """`(quantizer, weights)` of the range the layer's one output is
        rounded into (its output quantizer, or the quantizer after its
        activation), or None."""
        outputs = getattr(self, "_output_quantizers", None)
        if outputs is None:
            return None  # not built
        if len(outputs) == 1:
            return outputs[0]
        if not outputs and len(self._activation_vars) == 1:
            post, _ = self._activation_vars[0]
            if post:
                return self._activation_pairs[0][1], post
        return None

    # -- serialization --------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config["quantize_config"] = keras.saving.serialize_keras_object(self.quantize_config)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["quantize_config"] = _config_object(config["quantize_config"])
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        return cls(layer, **config)


@_register
class QuantizeWrapperV2(QuantizeWrapper):
    """tfmot's second wrapper version; identical here."""


@_register
class QuantizeLayer(keras.layers.Layer):
    """Fake-quantizes its input: where float values enter the int8 model.

    `quantizer` defaults to the asymmetric 8-bit `MovingAverageQuantizer`;
    its range becomes the TFLite model's input scale and zero point.
    """

    technique = techniques.QAT

    def __init__(self, quantizer=None, **kwargs):
        super().__init__(**kwargs)
        self.quantizer = quantizer or default_activation_quantizer()
        self._vars = None

    def build(self, input_shape):
        self._vars = self.quantizer.build(input_shape, "quantize_layer", self)
        self.built = True

    def call(self, inputs, training=None):
        return self.quantizer(inputs, bool(training), self._vars)

    def compute_output_shape(self, input_shape):
        return input_shape

    def output_range(self):
        """`(quantizer, weights)` of the range its output is rounded into."""
        return self.quantizer, self._vars

    def strip(self):
        """Float again: the identity (see `graph.strip`)."""
        return keras.layers.Identity(name=self.name)

    def get_config(self):
        return {
            **super().get_config(),
            "quantizer": keras.saving.serialize_keras_object(self.quantizer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["quantizer"] = keras.saving.deserialize_keras_object(config["quantizer"])
        return cls(**config)


@_register
class QuantizeAnnotate(keras.layers.Wrapper):
    """Marks `layer` to be quantized by `quantize_apply` (computes `layer`).

    `quantize_config=None` uses the scheme's registry; a `QuantizeConfig`
    overrides it (the way to quantize custom layers). A first layer given
    `input_shape=` keeps building its Sequential model once annotated.
    """

    technique = techniques.QAT_ANNOTATION

    _copied_by_reference = ("quantize_config", "output_fused")

    def __init__(self, layer, quantize_config=None, output_fused=False, **kwargs):
        """`output_fused` (set by the layout transform): the layer's output
        feeds a ReLU its TFLite op fuses, whose range is the op's one output
        range; the layer's config is applied without its output quantizer
        (`config.without_output`)."""
        if isinstance(layer, keras.layers.Layer):
            _check_config(layer, quantize_config, optional=True)
        kwargs.setdefault("name", f"quant_annotate_{layer.name}")
        super().__init__(layer, **kwargs)
        carry_input_shape(layer, self)
        self.quantize_config = quantize_config
        self.output_fused = bool(output_fused)
        self.supports_masking = getattr(layer, "supports_masking", False)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def get_build_config(self):
        # A layer without weights may record no build shape; ours has it.
        return self.layer.get_build_config() or super().get_build_config()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        self.built = True

    def call(self, inputs, *args, training=None, **kwargs):
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        return self.layer(inputs, *args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def strip(self):
        """The layer it marks: an annotation has no weights of its own."""
        return self.layer

    def get_config(self):
        config = super().get_config()
        config["quantize_config"] = (
            keras.saving.serialize_keras_object(self.quantize_config)
            if self.quantize_config is not None else None
        )
        if self.output_fused:
            config["output_fused"] = True
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["quantize_config"] = _config_object(config.get("quantize_config"))
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        return cls(layer, **config)


def call_operation(layer, args, kwargs):
    """`layer` (a `QuantizeOperation`) called on its operation's arguments
    in a graph being built: the Python constants among them (`x + 3.0`)
    become its `constants` (Keras passes only tensors positionally), the
    tensors are passed. A call with tensors alone keeps the constants the
    layer holds (a copy rebuilt from its config)."""
    constants = [[i, a] for i, a in enumerate(args) if not isinstance(a, keras.KerasTensor)]
    if constants:
        layer.constants = constants
    return layer(*[a for a in args if isinstance(a, keras.KerasTensor)], **kwargs)


@_register
class QuantizeOperation(BorrowsInputRange, keras.layers.Layer):
    """A raw Keras operation of a Functional graph (`x + 3.0`, `x * y`)
    followed by an output quantizer, so that TFLite's int8 ADD/MUL get their
    output scale. `quantize_output=False` where the ReLU after it sets that
    scale: TFLite fuses the ReLU into the ADD, SUB or MUL, which rounds once,
    into the ReLU's range (MobileNetV3's `ReLU(6.0)(x + 3.0)`). In
    inference an ADD, SUB or MUL of two tensors computes on the integers
    as XNNPACK does (`integer_inference.operation_call`), as an `Add` or
    `Multiply` layer does."""

    technique = techniques.QAT

    def __init__(self, operation, quantizer=None, constants=None, quantize_output=True,
                 **kwargs):
        kwargs.setdefault("name", f"quant_{operation.name}")
        super().__init__(**kwargs)
        self.operation = operation
        self.quantizer = quantizer or default_activation_quantizer()
        # Python constants among the operation's positional arguments
        # (`x + 3.0`), as [position, value] pairs; tensors fill the others.
        self.constants = [list(c) for c in (constants or [])]
        self.quantize_output = bool(quantize_output)
        self._vars = None

    def build(self, input_shape=None):
        if self.quantize_output:
            self._vars = self.quantizer.build((1,), "output", self)
        self.built = True

    def __call__(self, *args, **kwargs):
        if len(args) > 1:  # a binary op's operands: the ranges of both
            self._find_input_ranges(list(args))
        return super().__call__(*args, **kwargs)

    def call(self, inputs, *args, training=None, **kwargs):
        if not (training or kwargs or self.constants):
            integer = operation_call(self, [inputs, *args])
            if integer is not None:
                return integer
        tensors = [inputs, *args]
        operands = []
        constants = {int(p): v for p, v in self.constants}
        for i in range(len(tensors) + len(constants)):
            operands.append(constants[i] if i in constants else tensors.pop(0))
        y = self.operation(*operands, **kwargs)
        if not self.quantize_output:
            return y
        return self.quantizer(y, bool(training), self._vars)

    def output_range(self):
        """`(quantizer, weights)` of the range the output is rounded into,
        or None (no range of its own, or not built): the layer after finds
        its input's grid here (ConvNeXt's `inputs + x` before a
        LayerNormalization)."""
        return (self.quantizer, self._vars) if self.quantize_output and self._vars else None

    def get_config(self):
        return {
            **super().get_config(),
            "operation": keras.saving.serialize_keras_object(self.operation),
            "constants": self.constants,
            "quantize_output": self.quantize_output,
            "quantizer": keras.saving.serialize_keras_object(self.quantizer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["operation"] = keras.saving.deserialize_keras_object(config["operation"])
        config["quantizer"] = keras.saving.deserialize_keras_object(config["quantizer"])
        return cls(**config)

