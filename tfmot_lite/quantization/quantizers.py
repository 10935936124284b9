"""Quantizers: how a float tensor is rounded to `num_bits` and back.

Every quantizer computes the fake-quantization of TensorFlow's
`FakeQuantWithMinMaxVars` (the op the TFLite converter reads):

    scale = (max - min) / (q_max - q_min)
    q     = clip(round(x / scale) + zero_point, q_min, q_max)
    x_fq  = (q - zero_point) * scale

with `[q_min, q_max] = [0, 2**num_bits - 1]`, or `[1, 2**num_bits - 1]`
with `narrow_range` (the symmetric int8 weights of the TFLite spec: -127..127),
and `[min, max]` nudged so that 0.0 is exactly representable. The gradient is
the straight-through estimator: 1 inside `[min, max]`, 0 outside.

The quantizers differ only in where `[min, max]` comes from:

* `LastValueQuantizer`: the tensor's own range at the last training step
  (weights). `symmetric` uses `[-m, m]` with `m = max|x|`; `per_axis` keeps
  one range per output channel.
* `MovingAverageQuantizer`: an exponential moving average of the batch
  ranges seen in training (activations), `ema = decay * ema + (1 - decay) *
  batch`, started at the first batch's range.
* `AllValuesQuantizer`: the running min of the minima and max of the maxima.
* `FixedQuantizer`: a constant range.

A quantizer is stateless: `build` creates its variables on the layer that
owns it and `__call__` receives them back.

Data parallelism (`tf.distribute.MirroredStrategy` and friends): the batch
range of a tracked quantizer is taken over the global batch (every
replica's share, gathered), so all replicas compute the same update, and the
range variables are created with `aggregation="mean"` (written as the mean
over replicas) so they stay identical: the run matches one device on the
same global batches. Under JAX's `keras.distribution.DataParallel` the step
already sees the global batch.
"""

import contextlib
import contextvars

import keras
import numpy as np
from keras import ops

from tfmot_lite.core.config_equality import ConfigEquality
from tfmot_lite.fast import ops as fast_ops
from tfmot_lite.fast.compiled import compiled
from tfmot_lite.quantization import graph_memo
from tfmot_lite.quantization.integer_grid import nudged_grid, symmetric_scale

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


_ACTIVATIONS_FLOAT = contextvars.ContextVar("activations_float", default=False)


@contextlib.contextmanager
def float_activations():
    """Within the block, the activation quantizers (tracked and fixed
    ranges) pass values through unchanged, and weights are rounded with
    plain arithmetic instead of a FakeQuant op (`_rounded`), which the
    converter folds into float constants on the int8 grid. A 16x8 QAT model
    is traced this way for the converter's calibrated 16x8 mode
    (`export/pipeline.py`): the integer ops its layers are written as, its
    int8 weights, ranges calibrated by the converter."""
    token = _ACTIVATIONS_FLOAT.set(True)
    try:
        yield
    finally:
        _ACTIVATIONS_FLOAT.reset(token)


def activations_are_float():
    """Whether the caller is inside `float_activations()`."""
    return _ACTIVATIONS_FLOAT.get()


_CONVERTER_TRACE = contextvars.ContextVar("converter_trace", default=False)


@contextlib.contextmanager
def converter_trace():
    """Within the block the model is traced for the TFLite converter: a
    layer emits only the ops the converter turns into int8 kernels, and
    leaves to those kernels the rounding it simulates otherwise (an
    average's ties, `average_rounding`). `export.to_tflite` traces in it."""
    token = _CONVERTER_TRACE.set(True)
    try:
        yield
    finally:
        _CONVERTER_TRACE.reset(token)


def tracing_for_converter():
    """Whether the caller is inside `converter_trace()`.

    The model is then traced by `tf.function`, on the TensorFlow backend."""
    return _CONVERTER_TRACE.get()


# The graphs Keras' TensorFlow trainer traces its fit, evaluate and predict
# steps in (`keras/src/backend/tensorflow/trainer.py`).
_KERAS_STEP_GRAPHS = ("one_step_on", "multi_step_on")


def in_keras_step():
    """Whether the caller runs eagerly, in one of Keras' own fit, evaluate
    or predict steps, or on a backend other than TensorFlow: not in a graph
    another tracer builds. TensorFlow's `TFLiteConverter.from_keras_model`
    (tfmot's guides convert so) and a SavedModel export trace the model
    themselves, and must see the FakeQuant ops the converter turns into
    int8 kernels, not the integer arithmetic that computes what those
    kernels compute (`integer_inference.py`): a QAT model converted so had
    come out float."""
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    if tf.executing_eagerly():
        return True
    name = getattr(tf.compat.v1.get_default_graph(), "name", "") or ""
    return name.startswith(_KERAS_STEP_GRAPHS)


def added_for_nothing(constant):
    """Whether, in the converter's trace, adding `constant` (a bias, a
    LayerNorm's beta) is an ADD of zeros, which the converter folds away.

    A range before such an add (a matmul's, a LayerNorm's scaled value)
    then meets the range after it with nothing between: the second is
    tracked over values already on the first's grid, so the two scales
    differ in their last bits, and the converter refuses the model where
    such a pair meets a same-scale op (`'tfl.reshape' op quantization
    parameters violate the same scale constraint`: a freshly initialised
    ConvNeXt block, whose LayerNorm beta is zero). The caller skips the
    range before the add; the converter's requantize into the range after
    it is the single rounding left. Read eagerly; False outside the trace."""
    return folded_away(constant, 0.0)


def multiplied_for_nothing(constant):
    """Whether, in the converter's trace, multiplying by `constant` (a
    LayerNorm's gamma, ones when freshly initialised) is a MUL by ones,
    which the converter folds away as it folds an add of zeros
    (`added_for_nothing`): the caller skips the range before it."""
    return folded_away(constant, 1.0)


def unless_folded(rounded, x, constant, identity, training):
    """`rounded` (`x` rounded into the range before an add of, or a
    multiply by, `constant`), or `x` as it was where every value of
    `constant` is `identity`: the converter folds such an op away and
    the range with it (`folded_away` in its trace), so inference rounds there
    only where the .tflite does. Decided on the constant's value when the
    call runs (a traced inference stays right once training moves the
    constant); training, and the converter's trace (which skipped the
    range already where it folds), keep `rounded`."""
    if training or constant is None or tracing_for_converter():
        return rounded
    return ops.where(ops.all(ops.equal(constant, identity)), x, rounded)


def folded_away(constant, identity):
    """Whether the converter's trace is running and every value of
    `constant` is `identity` (read eagerly)."""
    if not tracing_for_converter() or constant is None:
        return False
    import tensorflow as tf

    with tf.init_scope():
        return bool(np.all(keras.ops.convert_to_numpy(constant) == identity))


def fake_quant(x, min_val, max_val, num_bits=8, narrow_range=False, axis=None,
               range_gradient=True):
    """`FakeQuantWithMinMaxVars(PerChannel)`; per-channel along `axis`.

    On TensorFlow this emits the TF op the TFLite converter folds into int8
    tensors; elsewhere it is the same arithmetic with a straight-through
    gradient (see `keras.quantizers.fake_quant_with_min_max_vars`).
    `range_gradient=False` says the range takes no gradient (a range tracked
    in a training step): on TensorFlow one range over the whole tensor then
    backpropagates to `x` alone (`fast.ops.fake_quant_input_gradient`).
    """
    if _ACTIVATIONS_FLOAT.get():
        return _rounded(x, min_val, max_val, num_bits, narrow_range)
    if not range_gradient and axis is None and fast_ops.fake_quant_fast_path():
        return fast_ops.fake_quant_input_gradient(x, min_val, max_val, num_bits, narrow_range)
    return _keras_fake_quant(x, min_val, max_val, num_bits=num_bits,
                             narrow_range=narrow_range, axis=axis)


@compiled("num_bits", "narrow_range", "axis")
def _keras_fake_quant(x, min_val, max_val, num_bits, narrow_range, axis):
    """`keras.quantizers.fake_quant_with_min_max_vars` (one compiled
    program per shape in JAX's eager calls)."""
    if keras.backend.backend() != "tensorflow":
        # An empty range ([0, 0]: a value that was zero so far) has no
        # scale; TensorFlow's op maps it to 0, Keras' arithmetic to NaN.
        max_val = ops.maximum(max_val, ops.add(min_val, 1e-6))
    return keras.quantizers.fake_quant_with_min_max_vars(
        x, min_val, max_val, num_bits=num_bits, narrow_range=narrow_range, axis=axis
    )


def fake_quant_own_range(x, max_abs, num_bits=8, axis=None, training=False):
    """`fake_quant(x, -m, m, narrow_range=True)` for `m = max|x|` (per
    channel along `axis`): a weight quantized over its own symmetric range.

    That range holds every value of `x` (narrow-range nudging keeps
    `[-m, m]` exact), so FakeQuant's straight-through gradient is the
    identity. In training it is written `x + stop_gradient(fq(x) - x)`: the
    same values bit for bit (`fq(x) - x` is exact: the two are within a
    factor of 2 or `fq(x)` is 0) and no FakeQuant gradient op in the
    backward pass. Inference emits the plain op the converter reads.
    """
    quantized = fake_quant(x, -max_abs, max_abs, num_bits, narrow_range=True, axis=axis)
    if not training or _ACTIVATIONS_FLOAT.get():
        return quantized
    return x + ops.stop_gradient(quantized - x)


def fake_quant_constant(x, num_bits=8):
    """A constant operand the converter quantizes by itself (the per-channel
    scale and offset vectors of a standalone BatchNormalization's MUL and
    ADD): one asymmetric range per tensor, `[min(x, 0), max(x, 0)]`, full
    range. A scale vector spanning 0.01 to 8 has steps of 8/255, so its
    small entries round to 0 or twice their value on the device; simulating
    that rounding is what keeps the Keras model predicting what it does."""
    lo = ops.minimum(ops.min(x), 0.0)
    hi = ops.maximum(ops.max(x), 0.0)
    return fake_quant(x, lo, hi, num_bits)


def _rounded(x, min_val, max_val, num_bits, narrow_range):
    """FakeQuant's values (nudged range, rounding) with plain ops and no
    gradient; `min_val`/`max_val` per channel broadcast on the last axis."""
    low, high, scale, _ = nudged_grid(min_val, max_val, num_bits, narrow_range)
    return ops.round((ops.clip(x, low, high) - low) / scale) * scale + low


def emulated_symmetric_quant(x, max_abs, num_bits=8):
    """Symmetric narrow-range quantization `round(x / s) * s`, `s = m / (2**(b-1) - 1)`.

    Written with plain ops (no FakeQuant op) for weights whose channel axis
    the converter cannot follow through a transpose (Conv2DTranspose). The
    values it produces are exactly representable with one scale per channel,
    so the converter's own per-channel weight quantization reproduces them.
    Gradient: straight-through.
    """
    scale = symmetric_scale(ops.maximum(max_abs, 1e-12), num_bits)
    q = ops.round(x / scale) * scale
    return x + ops.stop_gradient(q - x)


# Range variables are written in the training step; under a tf.distribute
# strategy each replica's write is averaged so that replicas never disagree.
RANGE_AGGREGATION = "mean"


def _global_range(lo, hi):
    """`(min, max)` over the batches of all replicas of a tf.distribute
    strategy (each replica sees only its share); `(lo, hi)` elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return lo, hi
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return lo, hi
    both = context.all_gather(ops.expand_dims(ops.stack([lo, hi]), 0), axis=0)
    return ops.min(both[:, 0], axis=0), ops.max(both[:, 1], axis=0)


def _reduce_axes(rank, per_axis):
    return tuple(range(rank - 1)) if per_axis else tuple(range(rank))


def _range_of(x, per_axis, symmetric):
    axes = _reduce_axes(len(x.shape), per_axis)
    if symmetric:
        m = ops.max(ops.abs(x), axis=axes)
        return -m, m
    return ops.min(x, axis=axes), ops.max(x, axis=axes)


class Quantizer(ConfigEquality):
    """Base class (tfmot's `quantizers.Quantizer`).

    Implement `build(tensor_shape, name, layer) -> dict of variables`,
    `__call__(inputs, training, weights, **kwargs) -> tensor` and
    `get_config()`.
    """

    def build(self, tensor_shape, name, layer):
        raise NotImplementedError

    def __call__(self, inputs, training, weights, **kwargs):
        raise NotImplementedError


def _check_num_bits(num_bits):
    """`num_bits` as an int: 2 to 8 (TFLite's int8 tensors, fewer levels
    below 8) or 16 (the int16 activations of TFLite's 16x8 kernels)."""
    if not (2 <= int(num_bits) <= 8 or int(num_bits) == 16):
        raise ValueError(
            f"`num_bits` must be between 2 and 8 (TFLite's int8 kernels) or 16 "
            f"(int16 activations of its 16x8 kernels); got {num_bits}."
        )
    return int(num_bits)


class _RangeQuantizer(Quantizer):
    """Shared state: `min_var`/`max_var` (one per channel with `per_axis`)."""

    def __init__(self, num_bits=8, per_axis=False, symmetric=False, narrow_range=False):
        self.num_bits = _check_num_bits(num_bits)
        self.per_axis = bool(per_axis)
        self.symmetric = bool(symmetric)
        self.narrow_range = bool(narrow_range)

    def _shape(self, tensor_shape):
        return (int(tensor_shape[-1]),) if self.per_axis else ()

    def _add_range(self, tensor_shape, name, layer, init_min=-6.0, init_max=6.0):
        shape = self._shape(tensor_shape)
        return {
            "min_var": layer.add_weight(
                name=f"{name}_min", shape=shape, trainable=False,
                initializer=keras.initializers.Constant(init_min),
                aggregation=RANGE_AGGREGATION,
            ),
            "max_var": layer.add_weight(
                name=f"{name}_max", shape=shape, trainable=False,
                initializer=keras.initializers.Constant(init_max),
                aggregation=RANGE_AGGREGATION,
            ),
        }

    def _quantize(self, inputs, min_val, max_val, range_gradient=True):
        axis = -1 if self.per_axis else None
        return fake_quant(inputs, min_val, max_val, self.num_bits, self.narrow_range, axis,
                          range_gradient)

    def get_config(self):
        return {
            "num_bits": self.num_bits,
            "per_axis": self.per_axis,
            "symmetric": self.symmetric,
            "narrow_range": self.narrow_range,
        }


@_register
class LastValueQuantizer(_RangeQuantizer):
    """Range = the tensor's own range at the last training step.

    Training: `[min, max] = [min(x), max(x)]` (or `[-max|x|, max|x|]` when
    `symmetric`), per output channel with `per_axis`, stored in the layer's
    variables. Inference: the stored range.
    """

    def build(self, tensor_shape, name, layer):
        return self._add_range(tensor_shape, name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        if training:
            lo, hi = _range_of(ops.stop_gradient(inputs), self.per_axis, self.symmetric)
            weights["min_var"].assign(lo)
            weights["max_var"].assign(hi)
            graph_memo.note_range_assignment()
            if self.symmetric and self.narrow_range:
                return fake_quant_own_range(inputs, hi, self.num_bits,
                                            -1 if self.per_axis else None, training=True)
        else:
            lo, hi = weights["min_var"], weights["max_var"]
        return self._quantize(inputs, lo, hi)

    def kernel_max_abs(self, kernel, weights):
        """`max|w|` of the int8 kernel this quantizer rounds in inference
        (one per output channel with `per_axis`), from which the converter
        computes the kernel's step, `max|w| / 127`: with the input's step,
        the unit of the kernel's int32 bias (`Borrowed.bias_integers`).
        None unless symmetric narrow-range, the int8 kernels' layout."""
        if not (self.symmetric and self.narrow_range):
            return None
        return ops.cast(weights["max_var"], "float32")


class _TrackedRangeQuantizer(_RangeQuantizer):
    """A range learned from the batches seen in training; `seen` marks the
    first batch, which sets the range directly.

    Training: the batch's range (`_batch_range`, over every replica's
    share) is merged into the stored one (`_merge`), stored, and used.
    Inference: the stored range.
    """

    def build(self, tensor_shape, name, layer):
        weights = self._add_range(tensor_shape, name, layer)
        weights["seen"] = layer.add_weight(
            name=f"{name}_seen", shape=(), trainable=False, initializer="zeros",
            aggregation=RANGE_AGGREGATION,
        )
        return weights

    def _batch_range(self, x, **kwargs):
        return _range_of(x, self.per_axis, self.symmetric)

    def _merge(self, stored_min, stored_max, lo, hi):
        raise NotImplementedError

    def tracked_range(self, inputs, weights, **kwargs):
        """The training step's range: the batch's merged into the stored
        one, stored, and returned as `(min, max)`."""
        lo, hi = _global_range(*self._batch_range(ops.stop_gradient(inputs), **kwargs))
        first = ops.equal(weights["seen"], 0.0)
        merged_lo, merged_hi = self._merge(weights["min_var"], weights["max_var"], lo, hi)
        lo = ops.where(first, lo, merged_lo)
        hi = ops.where(first, hi, merged_hi)
        weights["min_var"].assign(lo)
        weights["max_var"].assign(hi)
        weights["seen"].assign(1.0)
        graph_memo.note_range_assignment()
        return lo, hi

    def __call__(self, inputs, training, weights, **kwargs):
        if _ACTIVATIONS_FLOAT.get():
            return inputs
        lo, hi = self.step_range(inputs, training, weights, **kwargs)
        return self._quantize(inputs, lo, hi, range_gradient=not training)

    def step_range(self, inputs, training, weights, **kwargs):
        """`(min, max)` this call rounds `inputs` into: tracked over them
        (and stored) in training, the stored range in inference."""
        if not training:
            return weights["min_var"], weights["max_var"]
        return self.tracked_range(inputs, weights, **kwargs)


@_register
class MovingAverageQuantizer(_TrackedRangeQuantizer):
    """Range = exponential moving average of batch ranges (activations).

    Training: `r <- decay * r + (1 - decay) * r_batch`, where the first
    training batch sets `r` directly; the range is widened to include 0 so
    that zero is exact (TFLite int8 requirement). Inference: the stored range.
    """

    def __init__(self, num_bits=8, per_axis=False, symmetric=False,
                 narrow_range=False, decay=0.999):
        super().__init__(num_bits, per_axis, symmetric, narrow_range)
        self.decay = float(decay)

    def __call__(self, inputs, training, weights, nonnegative=False, **kwargs):
        """`nonnegative=True` tells the quantizer that `inputs >= 0` (a ReLU's
        output), so the batch minimum after widening to 0 is 0 without
        reducing over the tensor; the range is the same."""
        return super().__call__(inputs, training, weights, nonnegative=nonnegative)

    def folds_relu(self, training):
        """Whether `quantize_relu` may skip the ReLU: a training call with
        the fake-quant on, one asymmetric range for the tensor."""
        return (bool(training) and not _ACTIVATIONS_FLOAT.get()
                and not self.symmetric and not self.per_axis)

    def quantize_relu(self, x, weights, relu6=False):
        """Training: `fq(relu(x))` (or `relu6`) without the ReLU's pass.

        A range that only ever sees ReLU outputs is `[0, M]` (`M <= 6` after
        ReLU6: it averages batch maxima of clipped values), and
        fake-quantizing with it clips to it, so

            fq(relu(x), 0, M) = fq(x, 0, M)     (and the same for relu6),

        values and straight-through gradients alike (both pass the gradient
        for `0 <= x <= M` and zero elsewhere, up to the single point
        `x = 0`). The batch range is read from `x` as
        `min(max(max(x), 0), 6)`. Only where `folds_relu(training)`.
        """
        ceiling = 6.0 if relu6 else None
        lo, hi = self.tracked_range(x, weights, nonnegative=True, ceiling=ceiling)
        if relu6:
            hi = ops.minimum(hi, ceiling)
        return self._quantize(x, ops.zeros_like(lo), hi, range_gradient=False)

    def _batch_range(self, x, nonnegative=False, ceiling=None):
        if nonnegative and not self.symmetric:
            axes = _reduce_axes(len(x.shape), self.per_axis)
            hi = ops.maximum(ops.max(x, axis=axes), 0.0)
            if ceiling is not None:
                hi = ops.minimum(hi, ceiling)
            return ops.zeros_like(hi), hi
        lo, hi = _range_of(x, self.per_axis, self.symmetric)
        return ops.minimum(lo, 0.0), ops.maximum(hi, 0.0)

    def _merge(self, stored_min, stored_max, lo, hi):
        d = self.decay
        return d * stored_min + (1.0 - d) * lo, d * stored_max + (1.0 - d) * hi

    def get_config(self):
        return {**super().get_config(), "decay": self.decay}


def nonnegative_hint(quantizer):
    """`{"nonnegative": True}` for a `MovingAverageQuantizer` (its range
    minimum on values known to be >= 0 is then 0 without a reduction), `{}`
    for any other quantizer: a user's quantizer gets tfmot's call signature."""
    return {"nonnegative": True} if isinstance(quantizer, MovingAverageQuantizer) else {}


def quantize_relu(quantizer, x, training, weights, relu6=False):
    """`quantizer(relu(x))` (or of `relu6(x)`): a ReLU and the
    fake-quantization of its output, as a folded Conv-BN-ReLU or a
    `Dense(activation="relu")` trains. A `MovingAverageQuantizer` folds the
    ReLU away in training (`MovingAverageQuantizer.quantize_relu`); every
    other case runs the ReLU as written."""
    if isinstance(quantizer, MovingAverageQuantizer) and quantizer.folds_relu(training):
        return quantizer.quantize_relu(x, weights, relu6)
    y = ops.relu6(x) if relu6 else ops.relu(x)
    return quantizer(y, training, weights, **nonnegative_hint(quantizer))


@_register
class AllValuesQuantizer(_TrackedRangeQuantizer):
    """Range = smallest minimum and largest maximum seen in training."""

    def _merge(self, stored_min, stored_max, lo, hi):
        return ops.minimum(stored_min, lo), ops.maximum(stored_max, hi)


@_register
class FixedQuantizer(Quantizer):
    """A constant range `[init_min, init_max]` (e.g. `[0, 6]` after ReLU6)."""

    def __init__(self, num_bits=8, init_min=-6.0, init_max=6.0, narrow_range=False):
        if init_min > 0 or init_max < 0:
            raise ValueError(
                f"FixedQuantizer range [{init_min}, {init_max}] must contain 0."
            )
        self.num_bits = _check_num_bits(num_bits)
        self.init_min = float(init_min)
        self.init_max = float(init_max)
        self.narrow_range = bool(narrow_range)

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        if _ACTIVATIONS_FLOAT.get():
            return inputs
        return fake_quant(inputs, self.init_min, self.init_max, self.num_bits,
                          self.narrow_range)

    def get_config(self):
        return {
            "num_bits": self.num_bits,
            "init_min": self.init_min,
            "init_max": self.init_max,
            "narrow_range": self.narrow_range,
        }


@_register
class DepthwiseKernelQuantizer(LastValueQuantizer):
    """`LastValueQuantizer` for a depthwise kernel `(kh, kw, in, multiplier)`.

    TFLite stores a depthwise filter as `(1, kh, kw, in * multiplier)` and
    quantizes it per output channel `c * multiplier + m`; the kernel is
    reshaped to that layout, quantized along its last axis and reshaped back.
    """

    def build(self, tensor_shape, name, layer):
        shape = tuple(tensor_shape[:-2]) + (int(tensor_shape[-2]) * int(tensor_shape[-1]),)
        return super().build(shape, name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        shape = inputs.shape
        flat = ops.reshape(inputs, tuple(shape[:-2]) + (shape[-2] * shape[-1],))
        return ops.reshape(super().__call__(flat, training, weights), shape)


@_register
class ChannelKernelQuantizer(LastValueQuantizer):
    """Symmetric per-output-channel quantizer for kernels the converter
    reshapes or transposes before use (Conv1D: expanded to 2-D;
    Conv2DTranspose: output channel on axis -2).

    A FakeQuant op's channel axis does not survive those rewrites, so the
    values are rounded with `emulated_symmetric_quant` instead, using the
    kernel's current `max|x|` per channel, in training and inference alike
    (a weight's last value: no stored range). The result is exactly
    representable per channel, so the converter's own per-channel weight
    quantization reproduces it bit for bit. It is per-axis, symmetric and
    narrow-range by construction; other values of those arguments are
    rejected.
    """

    def __init__(self, num_bits=8, per_axis=True, symmetric=True, narrow_range=True,
                 channel_axis=-1):
        for name, value in (("per_axis", per_axis), ("symmetric", symmetric),
                            ("narrow_range", narrow_range)):
            if not value:
                raise ValueError(
                    f"ChannelKernelQuantizer is per-axis, symmetric and narrow-range "
                    f"by construction; got {name}={value!r}. Use LastValueQuantizer "
                    "for other layouts."
                )
        super().__init__(num_bits, True, True, True)
        self.channel_axis = int(channel_axis)

    def build(self, tensor_shape, name, layer):
        # The range is the kernel's own `max|x|` at every call: no state.
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        rank = len(inputs.shape)
        channel = self.channel_axis % rank
        axes = tuple(i for i in range(rank) if i != channel)
        m = ops.max(ops.abs(ops.stop_gradient(inputs)), axis=axes, keepdims=True)
        return emulated_symmetric_quant(inputs, m, self.num_bits)

    def kernel_max_abs(self, kernel, weights):
        """`max|w|` of each output channel of `kernel` (see
        `LastValueQuantizer.kernel_max_abs`)."""
        rank = len(kernel.shape)
        channel = self.channel_axis % rank
        axes = tuple(i for i in range(rank) if i != channel)
        return ops.max(ops.abs(ops.cast(kernel, "float32")), axis=axes)

    def get_config(self):
        return {"num_bits": self.num_bits, "channel_axis": self.channel_axis}
