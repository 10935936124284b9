"""`QuantizeConfig`: which tensors of a layer are quantized, and how.

A config answers three questions about one layer: which weights are
fake-quantized (`get_weights_and_quantizers`), which activation functions are
followed by a quantizer (`get_activations_and_quantizers`), and which outputs
are (`get_output_quantizers`). `QuantizeWrapper` calls it.

`set_quantize_weights` receives the quantized tensors for one call and must
make the layer use them; the wrapper restores the layer's attributes after
the call, so a config may simply assign attributes. Keras 3 layers often keep
a weight behind a read-only property (`Dense.kernel` reads `_kernel`), so
`Default8BitQuantizeConfig` assigns the attribute that holds the variable.
"""

import keras

from tfmot_lite.quantization import quantizers as q
from tfmot_lite.weight_wrapper import find_weight_slots

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


class QuantizeConfig:
    """Base class (tfmot's `QuantizeConfig`); subclass it for custom layers.

    Register subclasses with `keras.saving.register_keras_serializable` (or
    load inside `quantize_scope`) so that models using them load.
    """

    def get_weights_and_quantizers(self, layer):
        """`[(variable, Quantizer)]` for the weights to quantize."""
        raise NotImplementedError

    def get_activations_and_quantizers(self, layer):
        """`[(activation_callable, Quantizer)]` for activations to quantize."""
        raise NotImplementedError

    def set_quantize_weights(self, layer, quantize_weights):
        """Makes `layer` use `quantize_weights` (same order) in this call."""
        raise NotImplementedError

    def set_quantize_activations(self, layer, quantize_activations):
        """Makes `layer` use `quantize_activations` (same order)."""
        raise NotImplementedError

    def get_output_quantizers(self, layer):
        """Quantizers applied to the layer's outputs (one per output)."""
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self == other


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return keras.saving.deserialize_keras_object(config)


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
        if isinstance(weight_quantizer, dict):
            weight_quantizer = _deserialize(weight_quantizer)
        if isinstance(activation_quantizer, dict):
            activation_quantizer = _deserialize(activation_quantizer)
        self.weight_quantizer = weight_quantizer or q.LastValueQuantizer(
            num_bits=8, per_axis=False, symmetric=True, narrow_range=True
        )
        self.activation_quantizer = activation_quantizer or q.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False
        )

    def _weight(self, layer, attr):
        if not hasattr(layer, attr):
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) has no weight "
                f"attribute '{attr}' named in its QuantizeConfig."
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
        variables = [self._weight(layer, a) for a in self.weight_attrs]
        for (owner, name), value in zip(find_weight_slots(layer, variables), quantize_weights):
            object.__setattr__(owner, name, value)

    def set_quantize_activations(self, layer, quantize_activations):
        for attr, fn in zip(self.activation_attrs, quantize_activations):
            object.__setattr__(layer, attr, fn)

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

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


@_register
class OutputQuantizeConfig(Default8BitQuantizeConfig):
    """Quantizes only the output of a layer (Add, ReLU, pooling means, ...)."""

    def __init__(self, activation_quantizer=None, **kwargs):
        kwargs.pop("weight_attrs", None)
        kwargs.pop("activation_attrs", None)
        kwargs.pop("quantize_output", None)
        kwargs.pop("weight_quantizer", None)
        super().__init__((), (), True, None, activation_quantizer)

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
