"""The layers a quantized model is made of.

* `QuantizeWrapper` (alias `QuantizeWrapperV2`): runs a layer with the
  weights, activations and outputs its `QuantizeConfig` names fake-quantized.
* `QuantizeLayer`: fake-quantizes a tensor entering the quantized part of the
  model (the model input): the converter's int8 input scale.
* `QuantizeAnnotate`: marks a layer for `quantize_apply`; it computes exactly
  what the layer computes.
"""

import keras

from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.config import QuantizeConfig

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


def _config_from(value):
    if value is None or isinstance(value, QuantizeConfig):
        return value
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    raise ValueError(
        f"`quantize_config` must be a QuantizeConfig instance; got {value!r}."
    )


def _safe_name(name):
    return name.replace("/", "_").replace(":", "_")


FUSED_ACTIVATIONS = ("linear", "relu", "relu6")


def _activation_name(fn):
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # noqa: BLE001 - custom callables
        return None
    if isinstance(name, dict):
        name = name.get("config", name)
    return name if isinstance(name, str) else None


class _QuantizeAwareActivation:
    """`activation` followed by its quantizer, for one call.

    Activations that TFLite runs as a separate op (softmax, sigmoid, ...) are
    also quantized before, so that the op between them has an int8 input.
    """

    def __init__(self, activation, quantizer, weights, pre_weights, training):
        self.activation = activation
        self.quantizer = quantizer
        self.weights = weights
        self.pre_weights = pre_weights
        self.training = training

    def __call__(self, x):
        if _activation_name(self.activation) not in FUSED_ACTIVATIONS:
            x = self.quantizer(x, self.training, self.pre_weights)
        return self.quantizer(self.activation(x), self.training, self.weights)


@_register
class QuantizeWrapper(keras.layers.Wrapper):
    """Quantization-aware training of one layer, as its `QuantizeConfig` says.

    Each call: the config's weights are fake-quantized and handed to the layer
    (`set_quantize_weights`), its activations are replaced by
    activation-then-quantize (`set_quantize_activations`), the layer runs, its
    attributes are restored, and the outputs are fake-quantized. Quantizer
    state (ranges) lives in this wrapper's non-trainable weights.
    """

    def __init__(self, layer, quantize_config=None, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"QuantizeWrapper wraps a Keras layer; received {layer!r}."
            )
        quantize_config = _config_from(quantize_config)
        if quantize_config is None:
            raise ValueError(
                f"QuantizeWrapper around '{layer.name}' needs a `quantize_config`."
            )
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config
        self.supports_masking = getattr(layer, "supports_masking", False)
        self._quant_ready = False

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._build_quantizers(input_shape)

    def get_build_config(self):
        # A weightless layer built by its first call records no shape; the
        # wrapper's own build did.
        return self.layer.get_build_config() or super().get_build_config()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        shape = config.get("input_shape") if config else None
        self._build_quantizers(shape)

    def _build_quantizers(self, input_shape):
        if self._quant_ready:
            return
        cfg, layer = self.quantize_config, self.layer
        self._weight_quantizers = []
        for weight, quantizer in cfg.get_weights_and_quantizers(layer):
            name = _safe_name(weight.name)
            self._weight_quantizers.append(
                (weight, quantizer, quantizer.build(tuple(weight.shape), name, self))
            )
        self._activation_quantizers = []
        for i, (activation, quantizer) in enumerate(cfg.get_activations_and_quantizers(layer)):
            suffix = "" if i == 0 else f"_{i}"
            self._activation_quantizers.append((
                activation, quantizer,
                quantizer.build((1,), f"post_activation{suffix}", self),
                quantizer.build((1,), f"pre_activation{suffix}", self),
            ))
        out_shape = None
        if input_shape is not None:
            try:
                out_shape = layer.compute_output_shape(input_shape)
            except Exception:  # noqa: BLE001 - only per-axis output ranges need it
                out_shape = None
        self._output_quantizers = []
        for i, quantizer in enumerate(cfg.get_output_quantizers(layer)):
            name = "output" if i == 0 else f"output_{i}"
            shape = out_shape if (out_shape and not isinstance(out_shape, list)) else (1,)
            self._output_quantizers.append((quantizer, quantizer.build(shape, name, self)))
        self._quant_ready = True
        self.built = True

    def call(self, inputs, *args, training=None, **kwargs):
        training = bool(training) if training is not None else False
        cfg, layer = self.quantize_config, self.layer
        quantized = [qz(w, training, v) for w, qz, v in self._weight_quantizers]
        activations = [
            _QuantizeAwareActivation(a, qz, v, pre, training)
            for a, qz, v, pre in self._activation_quantizers
        ]
        saved = dict(vars(layer))
        try:
            if quantized:
                cfg.set_quantize_weights(layer, quantized)
            if activations:
                cfg.set_quantize_activations(layer, activations)
            if layer._call_has_training_arg:
                kwargs["training"] = training
            outputs = layer(inputs, *args, **kwargs)
        finally:
            current = vars(layer)
            for key in [k for k in current if k not in saved]:
                object.__delattr__(layer, key)
            for key, value in saved.items():
                if current.get(key) is not value:
                    object.__setattr__(layer, key, value)
        if not self._output_quantizers:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(
                qz(o, training, v) for o, (qz, v) in zip(outputs, self._output_quantizers)
            )
        qz, v = self._output_quantizers[0]
        return qz(outputs, training, v)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        config = super().get_config()
        config["quantize_config"] = keras.saving.serialize_keras_object(self.quantize_config)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["quantize_config"] = _config_from(config["quantize_config"])
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
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

    def __init__(self, quantizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(quantizer, dict):
            quantizer = keras.saving.deserialize_keras_object(quantizer)
        self.quantizer = quantizer or q.MovingAverageQuantizer(num_bits=8)
        self._vars = None

    def build(self, input_shape):
        self._vars = self.quantizer.build(input_shape, "quantize_layer", self)
        self.built = True

    def call(self, inputs, training=None):
        return self.quantizer(inputs, bool(training) if training is not None else False,
                              self._vars)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "quantizer": keras.saving.serialize_keras_object(self.quantizer),
        }


@_register
class QuantizeAnnotate(keras.layers.Wrapper):
    """Marks `layer` to be quantized by `quantize_apply` (computes `layer`).

    `quantize_config=None` uses the scheme's registry; a `QuantizeConfig`
    overrides it (the way to quantize custom layers).
    """

    def __init__(self, layer, quantize_config=None, **kwargs):
        kwargs.setdefault("name", f"quant_annotate_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = _config_from(quantize_config)
        self.supports_masking = getattr(layer, "supports_masking", False)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config()

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

    def get_config(self):
        config = super().get_config()
        config["quantize_config"] = (
            keras.saving.serialize_keras_object(self.quantize_config)
            if self.quantize_config is not None else None
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["quantize_config"] = _config_from(config.get("quantize_config"))
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)


@_register
class QuantizeOperation(keras.layers.Layer):
    """A raw Keras operation of a Functional graph (`x + 3.0`, `x * y`)
    followed by an output quantizer, so that TFLite's int8 ADD/MUL get their
    output scale."""

    def __init__(self, operation, quantizer=None, constants=None, **kwargs):
        if isinstance(operation, dict):
            operation = keras.saving.deserialize_keras_object(operation)
        kwargs.setdefault("name", f"quant_{operation.name}")
        super().__init__(**kwargs)
        if isinstance(quantizer, dict):
            quantizer = keras.saving.deserialize_keras_object(quantizer)
        self.operation = operation
        self.quantizer = quantizer or q.MovingAverageQuantizer(num_bits=8)
        # Python constants among the operation's positional arguments
        # (`x + 3.0`), as [position, value] pairs; tensors fill the others.
        self.constants = [list(c) for c in (constants or [])]
        self._vars = None

    def build(self, input_shape=None):
        self._vars = self.quantizer.build((1,), "output", self)
        self.built = True

    def call(self, inputs, *args, training=None, **kwargs):
        tensors = [inputs, *args]
        operands = []
        constants = {int(p): v for p, v in self.constants}
        for i in range(len(tensors) + len(constants)):
            operands.append(constants[i] if i in constants else tensors.pop(0))
        y = self.operation(*operands, **kwargs)
        return self.quantizer(y, bool(training) if training is not None else False, self._vars)

    def get_config(self):
        return {
            **super().get_config(),
            "operation": keras.saving.serialize_keras_object(self.operation),
            "constants": self.constants,
            "quantizer": keras.saving.serialize_keras_object(self.quantizer),
        }
