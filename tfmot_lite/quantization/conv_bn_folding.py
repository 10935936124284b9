"""Conv + BatchNormalization (+ ReLU/ReLU6) trained as the int8 kernel it becomes.

The TFLite converter folds BatchNormalization into the convolution before it
quantizes: it runs `conv(x, W * s) + b` with per output channel

    s = gamma / sqrt(moving_var + eps)
    b = beta + (conv_bias - moving_mean) * s

and quantizes the folded kernel `W * s` per channel. Quantizing `W` and
then applying a BatchNorm would train a different int8 kernel from the one
deployed (Jacob et al. 2018, "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference", sec. 3.2).

`QuantizeConvBatchNorm` uses one fact to keep training cheap: symmetric
per-channel quantization commutes with a per-channel scale,
`fq(W * s) = s * fq(W)` (the int8 values are the same; only the channel's
scale changes). So:

* training (BatchNorm trainable): `y = BN(conv(x, fq(W)))` with batch
  statistics and moving-statistics updates, exactly Keras' BatchNorm on the
  quantized convolution, one convolution per step;
* inference and export: `y = conv(x, fq(W * s)) + b`, the graph the
  converter turns into one int8 CONV_2D / DEPTHWISE_CONV_2D whose int8 kernel
  is the one trained. In inference `b` is added as the int8 kernel adds it,
  rounded to its int32 grid (`BorrowsInputRange.device_bias`).

Per-tensor quantization (`per_axis=False`) does not commute with the
per-channel scale, so training then folds the batch statistics into the
kernel as the converter folds the moving ones: one convolution for the batch
statistics, a second with `fq(W * s_batch)` (Jacob et al., sec. 3.2).

Then the activation (ReLU or ReLU6, fused by the converter) and the output
fake-quantization.

`QuantizeConvBatchNorm` is a `WeightTransformWrapper` around the convolution
(`graph.core_layer` finds it; `strip()` gives the folded float convolution).
A `kernel_transform` (any object with the `Quantizer` interface: a pruning
mask, a cluster structure) is applied to the float kernel before folding and
quantization: the hook that pruning- and cluster-preserving schemes use.
"""

import keras
from keras import ops

from tfmot_lite.core import layer_kinds, techniques
from tfmot_lite.core.weight_wrapper import WeightTransformWrapper, substituted
from tfmot_lite.fast.ops import batch_norm_train
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.integer_grid import (
    KERNEL_MAX_ABS_FLOOR, symmetric_scale,
)
from tfmot_lite.quantization.config import default_activation_quantizer
from tfmot_lite.quantization.input_range import BorrowsInputRange
from tfmot_lite.quantization.integer_inference import batch_norm_call

_register = keras.saving.register_keras_serializable(package="tfmot_lite")

def batch_norm_folding(bn, mean, variance):
    """`(s, b)` with `BN(x) = x * s + b` for the given statistics:
    `s = gamma / sqrt(variance + eps)`, `b = beta - mean * s`."""
    s = ops.rsqrt(ops.add(variance, bn.epsilon))
    if bn.scale:
        s = s * bn.gamma
    b = -mean * s
    if bn.center:
        b = b + bn.beta
    return s, b


@_register
class QuantizeConvBatchNorm(BorrowsInputRange, WeightTransformWrapper):
    """A Conv1D/Conv2D/DepthwiseConv2D and the BatchNormalization after it.

    Args:
      layer: the convolution (linear activation, channels_last).
      batch_norm: the BatchNormalization on its output (last axis).
      activation: None, "relu" or "relu6", applied after the BatchNorm.
      num_bits_weight, num_bits_activation: bit widths (8 for TFLite int8).
      per_axis: one weight range per output channel (TFLite int8 spec); with
        False one range for the whole kernel.
      kernel_transform: optional `Quantizer`-like object applied to the float
        kernel before folding (see the module docstring).
      quantize_output: False where the op's output range is another
        layer's (a Concatenate alone reads it: the converter gives the op
        the concatenation's scale).
    """

    technique = techniques.QAT

    def __init__(self, layer, batch_norm, activation=None, num_bits_weight=8,
                 num_bits_activation=8, per_axis=True, kernel_transform=None,
                 quantize_output=True, **kwargs):
        if activation not in (None, *layer_kinds.FUSED_RELUS):
            raise ValueError(f"activation must be None, 'relu' or 'relu6'; got {activation!r}.")
        if not layer_kinds.folds_batch_norm(layer):
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) cannot fold a "
                "BatchNormalization: QuantizeConvBatchNorm wraps a Conv1D, Conv2D "
                "or DepthwiseConv2D, whose output channels lie on the kernel's "
                "last axis."
            )
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        # The int8 kernel's per-channel layout (the layer table's).
        self._layout = layer_kinds.per_channel(layer)
        self.batch_norm = batch_norm
        self.activation = activation
        self.num_bits_weight = int(num_bits_weight)
        self.num_bits_activation = int(num_bits_activation)
        self.per_axis = bool(per_axis)
        self.kernel_transform = kernel_transform
        self.quantize_output = bool(quantize_output)
        self.output_quantizer = default_activation_quantizer(self.num_bits_activation)

    @property
    def conv(self):
        return self.layer

    def build(self, input_shape=None):
        if not self.conv.built:
            self.conv.build(input_shape)
        if not self.batch_norm.built:
            self.batch_norm.build(self.conv.compute_output_shape(input_shape))
        self._finish_build()

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def target_weights(self):
        conv = self.conv
        return [conv.kernel] + ([conv.bias] if conv.use_bias else [])

    def build_transform(self):
        self._output_vars = (self.output_quantizer.build((1,), "output", self)
                             if self.quantize_output else None)
        self._transform_vars = (
            self.kernel_transform.build(tuple(self.conv.kernel.shape), "kernel_transform", self)
            if self.kernel_transform is not None else None
        )

    def _kernel(self, training):
        kernel = self.conv.kernel
        if self.kernel_transform is None:
            return kernel
        return self.kernel_transform(kernel, bool(training), self._transform_vars)

    def transformed_weights(self, training):
        """The folded inference kernel and bias (what `strip` deploys)."""
        s, b = self._folding()
        kernel = self._kernel(training) * self._kernel_scale(s)
        return [self._quantize_kernel(kernel, training), b]

    # -- math ---------------------------------------------------------------

    def _flat(self, kernel):
        """`kernel` with its output channels on the last axis (a depthwise
        kernel's `(in, multiplier)` axes flattened, as TFLite stores it)."""
        if not self._layout.depthwise:
            return kernel
        shape = kernel.shape
        return ops.reshape(kernel, tuple(shape[:-2]) + (shape[-2] * shape[-1],))

    def _max_abs(self, flat, keepdims=False):
        """`max|W|` per output channel (of the whole kernel without
        `per_axis`): the symmetric range the kernel is rounded in."""
        axes = tuple(range(len(flat.shape) - 1)) if self.per_axis else None
        return ops.stop_gradient(ops.max(ops.abs(flat), axis=axes, keepdims=keepdims))

    def _quantize_kernel(self, kernel, training=False):
        """Symmetric narrow-range fake-quantization, per output channel."""
        flat = self._flat(kernel)
        if self._layout.converter_reshapes and self.per_axis:
            # TF runs conv1d on an expanded kernel; the FakeQuant channel axis
            # does not survive that, so round per channel with plain ops.
            return q.emulated_symmetric_quant(flat, self._max_abs(flat, keepdims=True),
                                              self.num_bits_weight)
        m = ops.maximum(self._max_abs(flat), 1e-8)
        flat = q.fake_quant_own_range(flat, m, self.num_bits_weight,
                                      -1 if self.per_axis else None, training)
        return ops.reshape(flat, kernel.shape) if self._layout.depthwise else flat

    def _kernel_max_abs(self, kernel):
        """`max|w|` of each output channel of the int8 kernel that the
        folded float `kernel` becomes."""
        return ops.maximum(self._max_abs(self._flat(kernel)), 1e-8)

    def _kernel_step(self, kernel):
        """The step of each output channel of that int8 kernel."""
        return symmetric_scale(self._kernel_max_abs(kernel), self.num_bits_weight)

    def _folding(self, mean=None, variance=None):
        """Per-channel `(s, b)` of the BatchNorm: the inference-time one, or
        with the given batch `mean`/`variance`."""
        bn = self.batch_norm
        if mean is None:
            mean, variance = bn.moving_mean, bn.moving_variance
        if self.conv.use_bias:
            mean = mean - self.conv.bias
        return batch_norm_folding(bn, mean, variance)

    def _convolve(self, inputs, kernel, bias):
        values = [kernel] + ([bias] if self.conv.use_bias else [])
        with substituted(self._slots, values):
            y = self.conv(inputs)
        if bias is not None and not self.conv.use_bias:
            y = ops.add(y, bias)
        return y

    def _kernel_scale(self, s):
        if self._layout.depthwise:
            return ops.reshape(s, tuple(self.conv.kernel.shape[-2:]))
        return s

    def call(self, inputs, training=None):
        training = bool(training)
        conv, bn = self.conv, self.batch_norm
        kernel = self._kernel(training)
        bias = conv.bias if conv.use_bias else None
        if training and bn.trainable and self.per_axis:
            # fq(W * s) = s * fq(W) per channel: BatchNorm after fq(W).
            y = self._convolve(inputs, self._quantize_kernel(kernel, training), bias)
            y = batch_norm_train(bn, y)
        else:
            if training and bn.trainable:
                # Per tensor: fold the batch statistics, as export folds
                # the moving ones (the BatchNorm call updates those).
                z = self._convolve(inputs, kernel, bias)
                bn(z, training=True)
                axes = tuple(range(len(z.shape) - 1))
                s, b = self._folding(*ops.moments(z, axes=axes))
            else:
                s, b = self._folding()
            folded = kernel * self._kernel_scale(s)
            source = self.integer_input(training, self.conv)
            output = self.written_range()
            if source is not None and output is not None:
                return self._integer_call(inputs, folded, b, source, output)
            b = self.device_bias(b, lambda: self._kernel_max_abs(folded), training,
                                 self.num_bits_weight)
            y = self._convolve(inputs, self._quantize_kernel(folded, training), b)
        if not self.quantize_output:
            if self.activation is None:
                return y
            return ops.relu6(y) if self.activation == "relu6" else ops.relu(y)
        if self.activation is None:
            return self.output_quantizer(y, training, self._output_vars)
        return q.quantize_relu(self.output_quantizer, y, training, self._output_vars,
                               relu6=self.activation == "relu6")

    def _integer_call(self, inputs, folded, bias, source, output):
        """Inference on the integers the int8 kernel multiplies
        (`integer_inference.py`): the input and folded kernel divided by
        their steps, the folded bias as the int32 the converter stores, the
        accumulator requantized as XNNPACK does."""
        max_abs = ops.maximum(self._kernel_max_abs(folded), KERNEL_MAX_ABS_FLOOR)
        kernel_step = symmetric_scale(max_abs, self.num_bits_weight)
        product_step = source.scale() * kernel_step
        w = ops.round(self._quantize_kernel(folded) / self._kernel_scale(kernel_step))
        integers, _ = source.bias_integers(bias, max_abs, self.num_bits_weight)
        accumulator = self._convolve(self.input_integers(inputs, source), w, integers)
        return output.requantize(accumulator, product_step, self.activation)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def output_range(self):
        """`(quantizer, weights)` of the output's range; None where the op
        after it (a Concatenate) owns it."""
        return (self.output_quantizer, self._output_vars) if self.quantize_output else None

    def bake(self):
        raise ValueError(
            f"'{self.name}' folds a BatchNormalization into its convolution, so "
            "its weights cannot be baked into the convolution alone; use "
            "`strip()` (or `graph.strip`), which returns the folded convolution."
        )

    def strip(self):
        """The float convolution that computes the folded inference graph:
        kernel `fq(W * s)` as trained, bias `b`, the activation fused."""
        conv = self.conv
        config = conv.get_config()
        config.update(use_bias=True, activation=self.activation or "linear")
        folded = conv.__class__.from_config(config)
        folded.build(conv.get_build_config()["input_shape"])
        kernel, bias = self.transformed_weights(False)
        folded.kernel.assign(ops.cast(kernel, folded.kernel.dtype))
        folded.bias.assign(ops.cast(bias, folded.bias.dtype))
        return folded

    def get_config(self):
        config = super().get_config()
        config.update({
            "batch_norm": keras.saving.serialize_keras_object(self.batch_norm),
            "activation": self.activation,
            "num_bits_weight": self.num_bits_weight,
            "num_bits_activation": self.num_bits_activation,
            "per_axis": self.per_axis,
            "kernel_transform": keras.saving.serialize_keras_object(self.kernel_transform),
            "quantize_output": self.quantize_output,
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("layer", "batch_norm", "kernel_transform"):
            config[key] = keras.saving.deserialize_keras_object(
                config.get(key), custom_objects=custom_objects
            )
        return cls(**config)


@_register
class QuantizeBatchNorm(BorrowsInputRange, keras.layers.Layer):
    """A BatchNormalization with no convolution before it to fold into.

    TFLite runs it as MUL by `s` then ADD of `b` (the folding above with no
    kernel); each of the two int8 ops needs an output range, and the
    converter stores `s` and `b` as int8 constants, each over its own range
    (`quantizers.fake_quant_constant`). Training with a trainable BatchNorm
    uses batch statistics as Keras does, and records the range of
    `x * fq(s)` (moving statistics) for the MUL; inference computes
    `fq(fq(x * fq(s)) + fq(b))`, what the device computes, and where the
    input's range is found, on the integers the two ops compute with
    (`integer_inference.batch_norm_call`). Where the ReLU after it owns the
    output range (the ADD fuses it), the ADD writes into that range.
    """

    technique = techniques.QAT

    def __init__(self, batch_norm, num_bits_activation=8, quantize_output=True, **kwargs):
        kwargs.setdefault("name", f"quant_{batch_norm.name}")
        super().__init__(**kwargs)
        self.batch_norm = batch_norm
        self.num_bits_activation = int(num_bits_activation)
        self.quantize_output = bool(quantize_output)
        self.scaled_quantizer = default_activation_quantizer(self.num_bits_activation)
        self.output_quantizer = default_activation_quantizer(self.num_bits_activation)
        self._ready = False

    def build(self, input_shape):
        if not self.batch_norm.built:
            self.batch_norm.build(input_shape)
        if not self._ready:
            self._scaled_vars = self.scaled_quantizer.build((1,), "scaled", self)
            if self.quantize_output:
                self._output_vars = self.output_quantizer.build((1,), "output", self)
            self._ready = True
        self.built = True

    def get_build_config(self):
        return self.batch_norm.get_build_config()

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def call(self, inputs, training=None):
        training = bool(training)
        bn = self.batch_norm
        s, b = batch_norm_folding(bn, bn.moving_mean, bn.moving_variance)
        if not (training and bn.trainable):
            y = batch_norm_call(self, inputs, s, b, training)
            if y is not None:
                return y
        s, b = q.fake_quant_constant(s), q.fake_quant_constant(b)
        scaled = self.scaled_quantizer(inputs * s, training, self._scaled_vars)
        if training and bn.trainable:
            y = batch_norm_train(bn, inputs)
        else:
            y = scaled + b
        if not self.quantize_output:
            return y  # the ReLU after it (fused into the ADD) has the range
        return self.output_quantizer(y, training, self._output_vars)

    def compute_output_shape(self, input_shape):
        return input_shape

    def output_range(self):
        """`(quantizer, weights)` of the output's range; None where the op
        after it owns it."""
        return (self.output_quantizer, self._output_vars) if self.quantize_output else None

    def scaled_range(self):
        """`(quantizer, weights)` of the MUL's output range."""
        return self.scaled_quantizer, self._scaled_vars

    def op_layer(self):
        """The BatchNormalization (whose ADD fuses a ReLU after it)."""
        return self.batch_norm

    def get_config(self):
        return {
            **super().get_config(),
            "batch_norm": keras.saving.serialize_keras_object(self.batch_norm),
            "num_bits_activation": self.num_bits_activation,
            "quantize_output": self.quantize_output,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["batch_norm"] = keras.saving.deserialize_keras_object(config["batch_norm"])
        return cls(**config)

    def strip(self):
        """The float BatchNormalization (see `graph.strip`)."""
        return self.batch_norm
