"""Inference on the integers an int8 op computes with, as XNNPACK does.

A QAT layer's float path, `fq(conv(x, w) + b)`, computes the device's
integers but within a few 10^-4 of an output step of a tie, where its float
sums and FakeQuant's own arithmetic round and the device's integers do not;
an input with flat regions repeats such a tie on every pixel of the region.
In inference (float32, 8-bit activations, eagerly or in Keras' own fit,
evaluate and predict steps: never in a graph the TFLite converter traces,
`quantizers.in_keras_step`) the layers below compute on the integers
instead:

* a convolution, depthwise convolution, Conv1D or Dense (`integer_call`;
  the folded Conv-BatchNorm in `conv_bn_folding.py`): input and kernel
  divided by their steps (exact integers in float32), the bias as the
  int32 the converter stores (`Borrowed.bias_integers`), the accumulator
  requantized as XNNPACK does (`kernel_arithmetic.requantize`) into the range the
  float path rounds it into first: the output's, a fused ReLU or ReLU6
  clamped in, or the input range of an activation TFLite runs as its own
  op (sigmoid, swish), which then runs as before;
* a Rescaling's MUL or ADD (the layout splits one with both), its constant
  as the converter stores it (`integer_grid.stored_constant`); the ADD as
  XNNPACK's fixed-point ADD (`kernel_arithmetic.requantize_sum`), as is an `Add`
  of two tensors with a range of its own;
* a hard-swish `Activation` layer, as LiteRT's int8 HARD_SWISH kernel
  computes it (`kernel_arithmetic.hard_swish_integers`);
* a `Concatenate` into its own range: each operand moved into it as the
  int8 QUANTIZE the converter puts before the CONCATENATION computes it
  (`kernel_arithmetic.requantize_copy`);
* a `Multiply`'s MUL (a squeeze-and-excite's gate) into its own range:
  the product of the two operands' integers requantized as a convolution's
  accumulator is (`kernel_arithmetic.requantize`: in float32, a tie to
  even, where FakeQuant sends a tie up);
* a global average pooling's MEAN into its own range: the sum of the
  input's integers converted as XNNPACK converts it
  (`kernel_arithmetic.requantize_mean`);
* a layer scale (`keras.applications`' LayerScale, ConvNeXt's `x * gamma`)
  into its own range: the MUL by `gamma` as the converter stores it (int8,
  `integer_grid.stored_constant`), requantized as a MUL is.
* a standalone BatchNormalization (`QuantizeBatchNorm`, `batch_norm_call`):
  the MUL by its folded scale as stored, into the MUL's range, then
  XNNPACK's ADD of its folded offset as stored.

A raw ADD, SUB or MUL of two tensors of the graph (a `QuantizeOperation`)
computes as an `Add` or `Multiply` does (`operation_call`). A
LayerNormalization, and a Dense over more than two axes or an
EinsumDense, compute their ops on integers inside their own calls
(`layer_norm._integer_chain`, `inside._integer_projection`), with the
ranges of their points.

A layer with no range of its own computes into the range of the one
layer reading it, where its op writes that range
(`BorrowsInputRange.reader_range`): a ReLU the op fuses, clamped in, or a
Concatenate whose scale it writes.

Every other layer, and these in another layout (16-bit activations, a
config of several activations, an input whose range is not found),
computes in float as before. Training always does (the gradient's path).
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.core.layer_kinds import family, keras_relu_name
from tfmot_lite.quantization.input_range import int8_range
from tfmot_lite.quantization.inside import InsideQuantizeConfig
from tfmot_lite.quantization.integer_grid import (
    KERNEL_MAX_ABS_FLOOR, exact_quotient, stored_constant, symmetric_scale,
)
from tfmot_lite.quantization.kernel_arithmetic import COPY_RATIO_LIMITS, hard_swish_integers

# The layers whose int8 op (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED)
# `integer_call` computes.
_KERNEL_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                  keras.layers.Dense)


def integer_call(wrapper, inputs):
    """A `QuantizeWrapper`'s inference call on integers (see the module
    docstring), or None where it does not apply."""
    if isinstance(wrapper.layer, keras.layers.Rescaling):
        return _rescaling(wrapper, inputs)
    if type(wrapper.layer) is keras.layers.Add:
        return _add(wrapper, inputs)
    if type(wrapper.layer) is keras.layers.Activation:
        return _hard_swish(wrapper, inputs)
    if type(wrapper.layer) is keras.layers.Concatenate:
        return _concatenate(wrapper, inputs)
    if type(wrapper.layer) is keras.layers.Multiply:
        return _multiply(wrapper, inputs)
    if isinstance(wrapper.layer, _GLOBAL_AVERAGES):
        return _global_average(wrapper, inputs)
    if getattr(family(wrapper.layer), "name", None) == "layer scale":
        return _layer_scale(wrapper, inputs)
    if isinstance(wrapper.layer, _KERNEL_LAYERS):
        return _kernel_call(wrapper, inputs)
    return None


class _Requantizing:
    """The activation slot of an integer call: the accumulator requantized
    into `found` (a `Borrowed` range), a fused "relu" or "relu6" clamped in;
    `then`, an activation TFLite runs as its own op, applied after."""

    def __init__(self, found, product_step, relu=None, then=None):
        self.found = found
        self.product_step = product_step
        self.relu = relu
        self.then = then

    def __call__(self, accumulator):
        y = self.found.requantize(accumulator, self.product_step, self.relu)
        return y if self.then is None else self.then(y)


def _fused_relu(function):
    """`(fused, relu)`: whether `function` is Keras' linear, relu or relu6,
    and the ReLU's name where it is one (else None)."""
    relu = keras_relu_name(function)
    return function is keras.activations.linear or relu is not None, relu


def _kernel_shaped(step, kernel):
    """A kernel's step per output channel (flat, as TFLite stores it),
    shaped to divide `kernel`: as is for a kernel whose last axis holds
    the output channels, `(in, multiplier)` for a depthwise kernel, a
    scalar for one step. None for another layout."""
    size = int(np.prod([int(d) for d in step.shape]))
    if size == 1:
        return ops.reshape(step, ())
    if size == int(kernel.shape[-1]):
        return step
    if len(kernel.shape) > 1 and size == int(kernel.shape[-2]) * int(kernel.shape[-1]):
        return ops.reshape(step, tuple(kernel.shape[-2:]))
    return None


def _kernel_call(wrapper, inputs):
    layer = wrapper.layer
    if (isinstance(wrapper.quantize_config, InsideQuantizeConfig)
            or len(wrapper._weight_pairs) != 1
            or (isinstance(layer, keras.layers.Dense) and len(inputs.shape) != 2)):
        return None
    kernel, quantizer = wrapper._weight_pairs[0]
    if kernel is not getattr(layer, "kernel", None) or not hasattr(quantizer, "kernel_max_abs"):
        return None
    if getattr(layer, "bias", None) is not None and wrapper._bias is None:
        return None
    source = wrapper.integer_input(False, layer)
    slot = _requantizing_slot(wrapper)
    max_abs = quantizer.kernel_max_abs(kernel, wrapper._weight_vars[0])
    if source is None or slot is None or max_abs is None:
        return None
    # An all-zero channel (a pruned one) has no step: the converter's.
    max_abs = ops.maximum(max_abs, KERNEL_MAX_ABS_FLOOR)
    kernel_step = symmetric_scale(max_abs, quantizer.num_bits)
    (weights,) = wrapper.transformed_weights(False)
    shaped = _kernel_shaped(kernel_step, weights)
    if shaped is None:
        return None
    slot, make = slot
    substitutions = [(slot, make(source.scale() * kernel_step))]
    if wrapper._bias is not None:
        integers, _ = source.bias_integers(layer.bias, max_abs, quantizer.num_bits)
        substitutions.append((wrapper._bias[0], integers))
    return wrapper.call_substituted(
        (wrapper.input_integers(inputs, source),), {}, [ops.round(weights / shaped)],
        substitutions, False)


def _requantizing_slot(wrapper):
    """`(slot, product_step -> _Requantizing)` for the layer's activation:
    the slot the config put it in (its range after it, or the range before
    an activation that runs as its own op), or the layer's own linear or
    ReLU activation with the output quantizer's range, or where it has
    none, the range of the layer reading it that its op writes
    (`reader_range`: a fused ReLU's, a concatenation's). None for other
    layouts."""
    if len(wrapper._activation_pairs) == 1 and not wrapper._output_quantizers:
        ((slot, aware),) = wrapper._activations(False)
        fused, relu = _fused_relu(aware.activation)
        if aware.fused and fused:
            found = int8_range((aware.quantizer, aware.weights))
            return None if found is None else (
                slot, lambda step: _Requantizing(found, step, relu))
        found = int8_range((aware.quantizer, aware.pre_weights))
        if aware.fused or found is None:
            return None
        return slot, lambda step: _Requantizing(found, step, then=aware)
    if wrapper._activation_pairs or len(wrapper._output_quantizers) > 1:
        return None
    fused, relu = _fused_relu(getattr(wrapper.layer, "activation", None))
    found = wrapper.written_range()
    if not fused or found is None:
        return None
    return (wrapper.layer, "activation"), lambda step: _Requantizing(found, step, relu)


def _own_range(wrapper):
    """The range a layer without weights or activations of its own rounds
    its output into (its one output quantizer's, or where it has none, the
    range of the layer reading it that its op writes, `reader_range`: the
    range of a ReLU the op fuses, which the `Borrowed` clamps in), or
    None."""
    if (wrapper._weight_pairs or wrapper._activation_pairs
            or len(wrapper._output_quantizers) > 1):
        return None
    return wrapper.written_range()


def _times_constant(found, x, source, value):
    """The integers `x` (on the range `source`) times `value` as the
    converter stores that constant (a MUL), requantized into `found`."""
    constant, step = stored_constant(value)
    return found.requantize(x * constant, source.scale() * step)


def _plus_constant(found, x, source, value):
    """The integers `x` (on the range `source`) plus `value` as the
    converter stores that constant (an ADD, XNNPACK's fixed point), into
    `found`."""
    constant, step = stored_constant(value)
    return found.requantize_sum(x, source.scale(), ops.zeros_like(x) + constant, step)


def _rescaling(wrapper, inputs):
    """A Rescaling's MUL by its scale or ADD of its offset; a scale of one
    or an offset of zero, which the converter folds away, computes in
    float as before."""
    layer = wrapper.layer
    found = _own_range(wrapper)
    source = wrapper.integer_input(False, layer)
    scale = np.asarray(ops.convert_to_numpy(layer.scale), "float32")
    offset = np.asarray(ops.convert_to_numpy(layer.offset), "float32")
    if source is None or found is None or np.all(scale == 1) == np.all(offset == 0):
        return None
    x = wrapper.input_integers(inputs, source)
    if np.all(offset == 0):
        return _times_constant(found, x, source, scale)
    return _plus_constant(found, x, source, offset)


def _two_operands(wrapper, inputs):
    """`(found, [(a, a_source), (b, b_source)])` for a merge of two tensors
    into its own range `found`: each operand as its integers, with the
    range it lies on. None where that does not apply."""
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        return None
    found = _own_range(wrapper)
    sources = wrapper.integer_inputs(False, wrapper.layer)
    if found is None or sources is None:
        return None
    return found, [(wrapper.input_integers(x, source), source)
                   for x, source in zip(inputs, sources)]


def _add(wrapper, inputs):
    """An `Add` of two tensors into its own range, as XNNPACK's int8 ADD
    computes it. Not one whose ReLU the ADD fuses (the ReLU's range is the
    op's), nor one of three or more tensors."""
    operands = _two_operands(wrapper, inputs)
    if operands is None:
        return None
    found, ((a, a_source), (b, b_source)) = operands
    return found.requantize_sum(a, a_source.scale(), b, b_source.scale())


def _concatenate(wrapper, inputs):
    """A `Concatenate` into its own range, as the .tflite computes it:
    each operand whose range was found moved into the output's by the int8
    QUANTIZE the converter puts before the CONCATENATION (XNNPACK's
    convert; an operand already on that range comes out unchanged). An
    operand with no range of its own (a convolution's, which the converter
    requantizes straight into the output's range, as its integer call does:
    `reader_range`) is on that range already and rounds there unchanged,
    with the joined tensor. An operand on a scale XNNPACK's
    convert does not take (`COPY_RATIO_LIMITS`: a range 256 times narrower
    than the output's, or 128 times wider) is rounded to the nearest step,
    as LiteRT's built-in QUANTIZE, which then runs it, nearly does."""
    if not isinstance(inputs, (list, tuple)):
        return None
    found = _own_range(wrapper)
    sources = wrapper.integer_inputs(False, wrapper.layer, partial=True)
    if sources is None or found is None:
        return None
    low, high = COPY_RATIO_LIMITS
    parts = []
    for x, source in zip(inputs, sources):
        if source is None:
            parts.append(x)
            continue
        integers = wrapper.input_integers(x, source)
        ratio = exact_quotient(source.scale(), found.scale())
        parts.append(ops.where((ratio >= low) & (ratio <= high),
                               found.requantize_copy(integers, source),
                               found.requantize(integers, source.scale())))
    return wrapper.transform_outputs(wrapper.layer(parts), False)


# A raw op's name (`keras.ops`' class) -> the sign of its second operand
# in an ADD, or None for a MUL.
_RAW_BINARY = {"Add": 1.0, "Subtract": -1.0, "Multiply": None}


def operation_call(layer, tensors):
    """A `QuantizeOperation`'s raw ADD, SUB (XNNPACK's ADD of the negated
    operand) or MUL of two tensors into its own range, on the integers, as
    an `Add` or `Multiply` layer computes (`_add`, `_multiply`); None for
    another op, a constant operand, or where a range is not found."""
    operation = layer.operation
    if (len(tensors) != 2 or type(operation).__module__ != "keras.src.ops.numpy"
            or type(operation).__name__ not in _RAW_BINARY):
        return None
    found = int8_range(layer.output_range())
    sources = layer.integer_inputs(False, layer)
    if found is None or sources is None:
        return None
    (a, a_source), (b, b_source) = [(layer.input_integers(x, source), source)
                                    for x, source in zip(tensors, sources)]
    sign = _RAW_BINARY[type(operation).__name__]
    if sign is None:
        return found.requantize(a * b, a_source.scale() * b_source.scale())
    return found.requantize_sum(a, a_source.scale(), sign * b, b_source.scale())


def _multiply(wrapper, inputs):
    """A `Multiply` of two tensors into its own range, as XNNPACK's int8
    MUL computes it: the product of the operands' integers, requantized
    with the multiplier `a_step * b_step / output_step`."""
    operands = _two_operands(wrapper, inputs)
    if operands is None:
        return None
    found, ((a, a_source), (b, b_source)) = operands
    return found.requantize(a * b, a_source.scale() * b_source.scale())


# The layers whose int8 op is a MEAN over their spatial axes.
_GLOBAL_AVERAGES = (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
                    keras.layers.GlobalAveragePooling3D)


def _global_average(wrapper, inputs):
    """A global average pooling into its own range, as XNNPACK's int8 MEAN
    computes it from the sum of the input's integers over the pooled axes
    (`kernel_arithmetic.requantize_mean`). Not one given a mask (a masked
    mean is no MEAN)."""
    layer = wrapper.layer
    found = _own_range(wrapper)
    source = wrapper.integer_input(False, layer)
    if found is None or source is None or getattr(inputs, "_keras_mask", None) is not None:
        return None
    rank = len(inputs.shape)
    axes = (tuple(range(1, rank - 1)) if layer.data_format == "channels_last"
            else tuple(range(2, rank)))
    pooled = [inputs.shape[a] for a in axes]
    if None in pooled:
        return None  # a size known only when the graph runs
    count = int(np.prod(pooled))
    total = ops.sum(wrapper.input_integers(inputs, source), axis=axes, keepdims=layer.keepdims)
    return found.requantize_mean(total, count, source)


def _layer_scale(wrapper, inputs):
    """`x * gamma` (a LayerScale) into its own range, as the MUL by the
    constant the converter stores for `gamma` computes it. The float path
    multiplies by the float `gamma`, which the .tflite never sees: 2.5-4.3%
    of a ConvNeXt-style layer scale's outputs a step off XNNPACK's."""
    layer = wrapper.layer
    found = _own_range(wrapper)
    source = wrapper.integer_input(False, layer)
    gamma = getattr(layer, "gamma", None)
    if found is None or source is None or gamma is None:
        return None
    return _times_constant(found, wrapper.input_integers(inputs, source), source, gamma)


def batch_norm_call(layer, inputs, scale, offset, training):
    """A standalone BatchNormalization (`QuantizeBatchNorm`) as its two
    int8 ops compute it: the MUL by `scale` as the converter stores that
    constant, into the MUL's range, then the ADD of `offset` (stored the
    same way) as XNNPACK's ADD computes it, into the range the ADD writes
    (its own, or that of the ReLU it fuses, clamped in). None where an
    input or output range is not found, or in training."""
    source = layer.integer_input(training, layer.batch_norm)
    found = layer.written_range()
    scaled_range = int8_range(layer.scaled_range())
    if source is None or found is None or scaled_range is None:
        return None
    scaled = _times_constant(scaled_range, layer.input_integers(inputs, source), source, scale)
    return _plus_constant(found, scaled_range.integers_of(scaled), scaled_range, offset)


# Keras' own hard-swish (`hard_silu`, also named "hard_swish").
_HARD_SWISH = (keras.activations.hard_silu,)


def _hard_swish(wrapper, inputs):
    """A hard-swish `Activation` layer (MobileNetV3's) from its input's
    integers into its range, as the int8 HARD_SWISH kernel computes it."""
    layer = wrapper.layer
    if (not any(layer.activation is f for f in _HARD_SWISH) or wrapper._weight_pairs
            or len(wrapper._activation_pairs) != 1 or wrapper._output_quantizers):
        return None
    ((_, aware),) = wrapper._activations(False)
    source = wrapper.integer_input(False, layer)
    found = int8_range((aware.quantizer, aware.weights))
    if source is None or found is None:
        return None
    return found.lookup(hard_swish_integers, wrapper.input_integers(inputs, source), source)
