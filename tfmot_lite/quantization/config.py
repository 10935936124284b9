"""`QuantizeConfig`: which tensors of a layer are quantized, and how.

A config answers three questions about one layer: which weights are
fake-quantized (`get_weights_and_quantizers`), which activation functions are
followed by a quantizer (`get_activations_and_quantizers`), and which outputs
are (`get_output_quantizers`). `QuantizeWrapper` asks it once, at build.

`set_quantize_weights` / `set_quantize_activations` are written as tfmot's
guide writes them: `layer.kernel = quantize_weights[0]`,
`layer.activation = quantize_activations[0]`. `QuantizeWrapper` runs them
once at build, on stand-ins, to learn which attribute each assignment
targets (for Keras 3's read-only `Dense.kernel`, the variable behind it);
each call then swaps the quantized tensors into those attributes and puts
the originals back afterwards.
"""

import keras

from tfmot_lite.core.config_equality import ConfigEquality
from tfmot_lite.quantization import quantizers as q

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


class QuantizeConfig(ConfigEquality):
    """Base class (tfmot's `QuantizeConfig`); subclass it for custom layers.

    A config need not be registered to be applied: `quantize_annotate_*` and
    `quantize_apply` keep the object itself. Register it with
    `keras.saving.register_keras_serializable` (or load inside
    `quantize_scope`) so that saved models using it load.
    """

    def get_weights_and_quantizers(self, layer):
        """`[(variable, Quantizer)]` for the weights to quantize."""
        raise NotImplementedError

    def get_activations_and_quantizers(self, layer):
        """`[(activation_callable, Quantizer)]` for activations to quantize."""
        raise NotImplementedError

    def set_quantize_weights(self, layer, quantize_weights):
        """Assigns `quantize_weights` (same order) to the layer's attributes."""
        raise NotImplementedError

    def set_quantize_activations(self, layer, quantize_activations):
        """Assigns `quantize_activations` (same order) to the layer."""
        raise NotImplementedError

    def get_output_quantizers(self, layer):
        """Quantizers applied to the layer's outputs (one per output)."""
        raise NotImplementedError

    # Mutable (`weight_attrs` lists): equal by config, but not hashable.
    __hash__ = None


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return keras.saving.deserialize_keras_object(config)


def default_weight_quantizer(num_bits=8):
    """Symmetric narrow-range per-tensor `LastValueQuantizer` (int8 Dense)."""
    return q.LastValueQuantizer(num_bits, per_axis=False, symmetric=True, narrow_range=True)


def default_activation_quantizer(num_bits=8):
    """Per-tensor `MovingAverageQuantizer`: asymmetric for int8 activations,
    symmetric for 16 bits (TFLite's int16 activations have zero point 0)."""
    return q.MovingAverageQuantizer(num_bits, per_axis=False, symmetric=num_bits == 16,
                                    narrow_range=False)


def probability_quantizer(num_bits=8):
    """The fixed output range of TFLite's integer SOFTMAX and LOGISTIC:
    scale 1/256 and zero point -128 in int8, scale 1/32768 and zero point 0
    in int16, so the converter needs no requantization after them."""
    if num_bits == 16:
        return q.FixedQuantizer(16, -1.0, 32767.0 / 32768.0)
    levels = 2.0 ** num_bits
    return q.FixedQuantizer(num_bits, 0.0, (levels - 1.0) / levels)


def tanh_quantizer(num_bits=8):
    """The fixed output range of TFLite's integer TANH: scale 1/128 and
    zero point 0 in int8, 1/32768 and 0 in int16."""
    levels = 2.0 ** (num_bits - 1)
    return q.FixedQuantizer(num_bits, -1.0, (levels - 1.0) / levels)


# The activations TFLite runs as integer kernels whose output range is fixed
# (the converter keeps no other range after them: a tracked one would cost a
# requantizing op and its rounding), by Keras name: the quantizer of that
# range. Layer activations, Activation and Softmax layers, and the gates of
# recurrent cells all read it here.
FIXED_OUTPUT_RANGES = {
    "sigmoid": probability_quantizer,
    "softmax": probability_quantizer,
    "tanh": tanh_quantizer,
}


def fixed_output_quantizer(activation, num_bits=8):
    """The quantizer of the fixed output range TFLite's integer kernel gives
    `activation` (a name, or Keras' own function of that name), or None.
    A custom function that only shares a name with Keras' gets None."""
    if activation is None:
        return None
    if isinstance(activation, str):
        name = activation
    else:
        name = getattr(activation, "__name__", None)
        if activation is not getattr(keras.activations, str(name), None):
            return None
    make = FIXED_OUTPUT_RANGES.get(name)
    return make(num_bits) if make is not None else None


def device_activation(activation, x, training, num_bits=8):
    """`(activation(x) as TFLite's integer kernels compute it, final)`.

    An activation with a fixed output range (`FIXED_OUTPUT_RANGES`) comes
    back rounded into it (`final`: nothing rounds it again where that range
    is the layer's output); silu as TFLite runs it, `x * LOGISTIC(x)`, the
    logistic rounded into its fixed range and the product not yet rounded;
    any other as it is. The caller rounds a value that is not final into
    its output range."""
    fixed = fixed_output_quantizer(activation, num_bits)
    if fixed is not None:
        return fixed(activation(x), training, {}), True
    if activation is keras.activations.silu:
        logistic = fixed_output_quantizer("sigmoid", num_bits)
        return x * logistic(keras.ops.sigmoid(x), training, {}), False
    return activation(x), False


@_register
class Default8BitQuantizeConfig(QuantizeConfig):
    """Quantizes the weights named in `weight_attrs`, the activations named
    in `activation_attrs` and, with `quantize_output`, the layer's output.

    Args:
      weight_attrs: attribute names of weights, e.g. `["kernel"]`.
      activation_attrs: attribute names of activation callables.
      quantize_output: add an activation quantizer after the layer.
      weight_quantizer: a `Quantizer` for every weight (default: symmetric
        narrow-range 8-bit `LastValueQuantizer`, per tensor).
      activation_quantizer: a `Quantizer` for activations and outputs
        (default: asymmetric 8-bit `MovingAverageQuantizer`).
    """

    def __init__(self, weight_attrs=(), activation_attrs=(), quantize_output=False,
                 weight_quantizer=None, activation_quantizer=None):
        self.weight_attrs = list(weight_attrs)
        self.activation_attrs = list(activation_attrs)
        self.quantize_output = bool(quantize_output)
        self.weight_quantizer = weight_quantizer or default_weight_quantizer()
        self.activation_quantizer = activation_quantizer or default_activation_quantizer()

    def _weight(self, layer, attr):
        if not hasattr(layer, attr):
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) has no weight "
                f"attribute '{attr}' named in its QuantizeConfig. Name an "
                "attribute that holds a variable of the layer."
            )
        return getattr(layer, attr)

    def get_weights_and_quantizers(self, layer):
        return [(self._weight(layer, a), self.weight_quantizer) for a in self.weight_attrs]

    def get_activations_and_quantizers(self, layer):
        return [(getattr(layer, a), self.activation_quantizer) for a in self.activation_attrs]

    def set_quantize_weights(self, layer, quantize_weights):
        if len(quantize_weights) != len(self.weight_attrs):
            raise ValueError(
                f"Layer '{layer.name}': expected {len(self.weight_attrs)} quantized "
                f"weights, got {len(quantize_weights)}."
            )
        for attr, value in zip(self.weight_attrs, quantize_weights):
            setattr(layer, attr, value)

    def set_quantize_activations(self, layer, quantize_activations):
        for attr, fn in zip(self.activation_attrs, quantize_activations):
            setattr(layer, attr, fn)

    def get_output_quantizers(self, layer):
        return [self.activation_quantizer] if self.quantize_output else []

    def get_config(self):
        return {
            "weight_attrs": self.weight_attrs,
            "activation_attrs": self.activation_attrs,
            "quantize_output": self.quantize_output,
            "weight_quantizer": _serialize(self.weight_quantizer),
            "activation_quantizer": _serialize(self.activation_quantizer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("weight_quantizer", "activation_quantizer"):
            if config.get(key) is not None:
                config[key] = _deserialize(config[key])
        return cls(**config)


@_register
class OutputQuantizeConfig(Default8BitQuantizeConfig):
    """Quantizes only the output of a layer (Add, ReLU, pooling means, ...)."""

    def __init__(self, activation_quantizer=None):
        super().__init__((), (), True, None, activation_quantizer)

    def get_config(self):
        return {"activation_quantizer": _serialize(self.activation_quantizer)}


@_register
class ActivationQuantizeConfig(Default8BitQuantizeConfig):
    """An `Activation` layer: its function runs as a layer activation does
    in `QuantizeWrapper` (a ReLU folded into the range, a fixed output range
    for sigmoid, tanh and softmax, silu as `x * LOGISTIC(x)` with the
    logistic rounded), on an input the layer before has quantized already:
    no second range for the input (`quantizes_activation_inputs`)."""

    quantizes_activation_inputs = False

    def __init__(self, activation_quantizer=None):
        super().__init__((), ("activation",), False, None, activation_quantizer)

    def get_config(self):
        return {"activation_quantizer": _serialize(self.activation_quantizer)}


@_register
class NoOpQuantizeConfig(QuantizeConfig):
    """Quantizes nothing: the layer stays float inside a quantized model."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def without_output(config, layer):
    """`config` leaving `layer`'s output unquantized, or None where it
    cannot.

    For a layer whose output range another op sets: a ReLU that TFLite
    fuses into the layer's op (`layer_kinds.fuses_relu`; the op computes
    `relu(x)` and rounds once, into the ReLU's range), or a concatenation
    that alone reads it (the op writes the concatenation's scale). The
    layer's own range would be a rounding the device never does. A config
    with an activation of its own quantized after it keeps its range,
    except a ReLU's (an `Activation("relu")` layer).
    """
    if callable(getattr(config, "without_output", None)):
        return config.without_output()  # a config that knows its own
    if type(config) is OutputQuantizeConfig:
        return NoOpQuantizeConfig()
    if type(config) is ActivationQuantizeConfig and getattr(layer, "activation", None) in (
            keras.activations.relu, keras.activations.relu6):
        return NoOpQuantizeConfig()
    if type(config) is Default8BitQuantizeConfig and not config.activation_attrs:
        return Default8BitQuantizeConfig(config.weight_attrs, (), False,
                                         config.weight_quantizer, config.activation_quantizer)
    return None

