"""TensorFlow kernels for training-time math that Keras 3 spells as many ops.

Every technique trains through `keras.ops`, so it runs on the TensorFlow,
JAX and PyTorch backends. On TensorFlow, two pieces of that math cost far
more than they need to (measured in docs/perf.md):

* Keras 3's `BatchNormalization` in training is `moments` plus
  `batch_normalization`: a dozen element-wise passes over the activation
  forward and as many backward, about half of a MobileNetV2 step on CPU.
  TensorFlow's `FusedBatchNormV3` (oneDNN's kernel) does it in one pass
  each way; tf_keras, and so tfmot, uses it.
* `ops.take` wraps negative indices with three element-wise passes over
  the indices; `tf.gather` does not.
* `ops.searchsorted` (clustering's nearest-centroid search) is TensorFlow's
  `LowerBound` kernel, about 40 ns per weight on CPU, and a `while` loop
  under JAX; compiled by XLA into one loop of comparisons it is 10-20x
  faster (`searchsorted_left`).
* `FakeQuantWithMinMaxVars`' gradient op computes, besides the input's
  straight-through gradient, the gradients of `min` and `max`: two more
  passes over the tensor, thrown away for an activation range tracked from
  the batches (which takes no gradient). `fake_quant_input_gradient` keeps
  the forward op and backpropagates with one masked copy (a native kernel,
  `QuantizeAndDequantizeV4Grad`, about as fast as `Relu6Grad`).
* gemmlowp's `SaturatingRoundingDoublingHighMul`, in the integer paths a
  QAT model's inference runs (`kernel_arithmetic._high_mul`), is a 62-bit
  product written as 11-bit limbs on int32 (JAX has no int64 unless x64 is
  on): some forty ops over the tensor. TensorFlow multiplies in int64
  (`high_mul_int64`): eight.

This module is the one place that chooses: each function below computes what
its `keras.ops` form computes (the tests compare values, gradients and
updates) and is that form on every other backend, where XLA or eager
PyTorch gains nothing from the special case. Nothing here runs at export:
the converter sees the inference graph, which does not use these.
"""

import keras
from keras import ops

# TensorFlow's FusedBatchNormV3 refuses smaller epsilons.
FUSED_MIN_EPSILON = 1.001e-5


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


def can_fuse_batch_norm(bn, rank):
    """Whether `batch_norm_train(bn, y)` runs TensorFlow's fused kernel for a
    rank-`rank` input (else it calls the layer): TensorFlow backend, 4-D
    channels-last input, no batch renormalization or cross-replica
    statistics, epsilon the kernel accepts."""
    axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) else bn.axis
    if isinstance(bn.axis, (list, tuple)) and len(bn.axis) != 1:
        return False
    return (
        _on_tensorflow()
        and rank == 4
        and axis in (-1, 3)
        and not getattr(bn, "renorm", False)
        and not getattr(bn, "synchronized", False)
        and bn.epsilon >= FUSED_MIN_EPSILON
    )


def batch_norm_train(bn, y):
    """`bn(y, training=True)` for a trainable BatchNormalization: normalize
    with the batch statistics and update the moving ones as Keras does,

        moving <- moving * momentum + batch * (1 - momentum)

    with the biased (population) batch variance.

    Where `can_fuse_batch_norm` holds, the normalization is one
    `FusedBatchNormV3` forward and one backward. The op's variance output is
    Bessel-corrected, so it is scaled back by `(n - 1) / n` before the
    update. Anywhere else the layer itself runs.
    """
    if not can_fuse_batch_norm(bn, len(y.shape)):
        return bn(y, training=True)
    import tensorflow as tf

    x = tf.cast(y, "float32")
    channels = int(x.shape[-1])
    gamma = tf.cast(bn.gamma, "float32") if bn.scale else tf.ones((channels,))
    beta = tf.cast(bn.beta, "float32") if bn.center else tf.zeros((channels,))
    out, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=bn.epsilon, data_format="NHWC", is_training=True
    )
    if x.shape.is_fully_defined():  # a constant: no ops in the step
        n = x.shape.num_elements() // channels
        unbias = max(n - 1, 1) / n
    else:
        n = tf.cast(tf.size(x) // channels, "float32")
        unbias = tf.maximum(n - 1.0, 1.0) / n
    variance = variance * unbias
    m = bn.momentum
    bn.moving_mean.assign(
        tf.cast(bn.moving_mean, "float32") * m + tf.stop_gradient(mean) * (1.0 - m)
    )
    bn.moving_variance.assign(
        tf.cast(bn.moving_variance, "float32") * m + tf.stop_gradient(variance) * (1.0 - m)
    )
    return tf.cast(out, bn.compute_dtype)


def take_nonnegative(table, indices):
    """`ops.take(table, indices)` for indices known to be in
    `[0, len(table))` (cluster assignments from `searchsorted`/`argmin`)."""
    if _on_tensorflow():
        import tensorflow as tf

        return tf.gather(table, indices)
    return ops.take(table, indices)


# Below this many values `searchsorted_left` keeps `ops.searchsorted`: an
# XLA compilation (about 0.1 s per new shape) would not pay for itself.
XLA_SEARCH_MIN_SIZE = 1 << 14

# JAX compares with every boundary at once up to this many boundaries.
_COMPARE_ALL_MAX = 64

_xla_searchsorted = None


def _tf_xla_searchsorted():
    global _xla_searchsorted
    if _xla_searchsorted is None:
        import tensorflow as tf

        @tf.function(jit_compile=True, autograph=False)
        def search(boundaries, values):
            return tf.cast(tf.searchsorted(boundaries, values, side="left"), tf.int32)

        _xla_searchsorted = search
    return _xla_searchsorted


def searchsorted_left(boundaries, values):
    """`ops.searchsorted(boundaries, values, side="left")` as int32, for 1-D
    ascending `boundaries` and 1-D `values`: `#{j : boundaries[j] < v}`.

    TensorFlow: an XLA-compiled search for `values` of at least
    `XLA_SEARCH_MIN_SIZE` entries. JAX: a fused comparison with every
    boundary (XLA turns it into one loop) for up to 64 boundaries. Both give
    the same integers as `ops.searchsorted`; use it in training steps only
    (an exported graph should not carry an XLA call).
    """
    size = values.shape[0]
    if _on_tensorflow() and size is not None and size >= XLA_SEARCH_MIN_SIZE:
        import tensorflow as tf

        return _tf_xla_searchsorted()(tf.stop_gradient(boundaries), tf.stop_gradient(values))
    if keras.backend.backend() == "jax" and boundaries.shape[0] <= _COMPARE_ALL_MAX:
        above = ops.greater(ops.expand_dims(values, -1), boundaries)
        return ops.sum(ops.cast(above, "int32"), axis=-1)
    return ops.cast(ops.searchsorted(boundaries, values, side="left"), "int32")


def _nudged_bounds(lo, hi, num_bits, narrow_range):
    """`[low, high]`, the interval FakeQuant's straight-through gradient
    passes: `[lo, hi]` moved so that 0.0 is a grid point, computed as
    TensorFlow's `Nudge` computes it (float32, zero point rounded half up),
    and `[-inf, inf]` for the empty range `[0, 0]` (the op passes every
    gradient there), as one 2-vector.

    A dozen scalar ops, each traced into every training step of every
    activation range: the two ends share their arithmetic, and the empty
    range is the one whose zero point is 0/0 (NaN); a range of one other
    value (scale 0, zero point infinite) has both ends 0 whichever end its
    zero point clamps to. Plain TensorFlow ops, not XLA, whose rewrites of
    the division would move the bounds by an ulp."""
    import tensorflow as tf

    quant_min, quant_max = (1.0 if narrow_range else 0.0), float(2 ** num_bits - 1)
    scale = (hi - lo) / (quant_max - quant_min)
    from_min = quant_min - lo / scale
    zero_point = tf.clip_by_value(tf.floor(from_min + 0.5), quant_min, quant_max)
    bounds = (tf.constant([quant_min, quant_max]) - zero_point) * scale
    return tf.where(tf.math.is_nan(from_min), tf.constant([-float("inf"), float("inf")]), bounds)


def high_mul_int64(a, b):
    """gemmlowp's `SaturatingRoundingDoublingHighMul` of an int32 tensor
    `a` and one `0 <= b < 2**31` on TensorFlow, in int64:

        (a * b + nudge) / 2**31     truncated toward zero,

    the nudge `2**30`, or `1 - 2**30` for a negative product (no
    saturation: it needs `a = b = -2**31`). None elsewhere: the caller
    keeps its int32 form."""
    if not _on_tensorflow():
        return None
    import tensorflow as tf

    product = tf.cast(a, tf.int64) * tf.cast(b, tf.int64)
    nudge = tf.where(product >= 0, tf.constant(1 << 30, tf.int64),
                     tf.constant(1 - (1 << 30), tf.int64))
    return tf.cast(tf.truncatediv(product + nudge, tf.constant(1 << 31, tf.int64)), tf.int32)


def fake_quant_fast_path():
    """Whether `fake_quant_input_gradient` runs its own backward pass
    (TensorFlow); elsewhere `fake_quant` keeps the Keras form."""
    return _on_tensorflow()


def fake_quant_input_gradient(x, lo, hi, num_bits=8, narrow_range=False):
    """TensorFlow's `FakeQuantWithMinMaxVars(x, lo, hi)` for a scalar range
    that takes no gradient (an activation range tracked from the batches),
    backpropagating only to `x`.

    Forward, the op itself. Backward, the upstream gradient inside the
    nudged range `[low, high]` (ends included) and 0 outside: what the op's
    gradient op gives for `x`, without its two reductions for `min` and
    `max`. That masked copy is one pass of TensorFlow's own
    `QuantizeAndDequantizeV4Grad` kernel, given the nudged ends (it
    compares with the range it is handed and returns zeros for the range's
    gradients). The nudged ends are computed in the backward pass, so a
    training call traced without a gradient (a calibration pass) carries
    none of their ops. Training steps only: inference keeps the plain op
    the converter reads.
    """
    import tensorflow as tf

    lo, hi = _scalar(tf, lo), _scalar(tf, hi)

    def inside_range(upstream, values):
        low, high = tf.unstack(_nudged_bounds(lo, hi, num_bits, narrow_range))
        return tf.raw_ops.QuantizeAndDequantizeV4Grad(
            gradients=upstream, input=values, input_min=low, input_max=high, axis=-1)[0]

    @tf.custom_gradient
    def quantize(values):
        out = tf.quantization.fake_quant_with_min_max_vars(
            values, lo, hi, num_bits=num_bits, narrow_range=narrow_range)
        return out, lambda upstream: inside_range(upstream, values)

    return tf.cast(quantize(tf.cast(x, "float32")), x.dtype)


def _scalar(tf, value):
    """`value` as a float32 scalar tensor, reshaped only where its shape
    is not already `()` (each op is traced into every training step)."""
    value = tf.cast(value, "float32")
    return value if value.shape.rank == 0 else tf.reshape(value, ())
