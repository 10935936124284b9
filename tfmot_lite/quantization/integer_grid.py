"""A range's integers as the TFLite converter stores them.

The converter turns each FakeQuant range into a step (scale) and a zero
point, a constant operand into int8 integers, a bias into int32 integers of
the product of its input's and kernel's steps. What it computes in double
(the step, the bias quotient) is computed here in double too where the
backend has float64 (`widest_float`: TensorFlow, PyTorch, JAX with x64),
and exactly in float32 where it has not, so the integer paths
(`kernel_arithmetic.py`, `integer_inference.py`) read the stored values to
the bit:

    scale      = (max - min) / (q_max - q_min)          (rounded once)
    zero_point = round_half_up(q_min - min / scale)     (clamped to the grid)
    bias_q     = round_half_away(bias / (S_in * S_w))   (int32, saturated)

where `S_in` and `S_w` are the input's and kernel's steps in double,
`(max - min) / 255` and `max|w| / 127`, not the float32 scales the .tflite
stores (`range_scale_error`, `symmetric_scale_error`).
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.fast.compiled import compiled
from tfmot_lite.quantization import graph_memo


def widest_float():
    """float64, where the backend computes in it (JAX only with x64 on)."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


def floor_wide(x):
    """`floor(x)` in `x`'s own dtype, for a float64 `x` below 2**63 in
    magnitude too: Keras' `ops.floor` computes a float64 in float32 on
    PyTorch and on JAX with x64 (its result type of float64 and a Python
    float), which loses a 31-bit multiplier's last bits."""
    if keras.backend.standardize_dtype(x.dtype) != "float64":
        return ops.floor(x)
    truncated = ops.cast(ops.cast(x, "int64"), "float64")
    return truncated - ops.cast(truncated > x, "float64")


def _as_written(*tensors):
    """`tensors`, kept from being rewritten together with what follows.
    Under JAX's `jit` (and in the jitted functions behind its eager ops),
    XLA's algebraic simplifier rewrites float arithmetic: the two-sum below
    becomes zero, and a division by a constant or by a broadcast tensor a
    multiplication by its rounded inverse, an ulp off on about a quarter of
    quotients. `jax.lax.optimization_barrier` stops it there. TensorFlow's
    graphs and PyTorch run the ops as written."""
    if keras.backend.backend() != "jax":
        return tensors
    import jax

    return jax.lax.optimization_barrier(tensors)


def exact_quotient(numerator, denominator):
    """`numerator / denominator` rounded once, as IEEE division (and the
    converter's and the kernels' float arithmetic) rounds it, on every
    backend: on JAX both operands are broadcast to one shape and kept as
    written first (`_as_written`), where XLA would multiply by the
    denominator's rounded inverse. For the small tensors a kernel's
    multipliers and steps are computed from; a quotient an ulp off moves
    every tie that multiplier rounds."""
    if keras.backend.backend() != "jax":
        return ops.divide(numerator, denominator)
    numerator, denominator = ops.convert_to_tensor(numerator), ops.convert_to_tensor(denominator)
    dtypes = {keras.backend.standardize_dtype(t.dtype) for t in (numerator, denominator)}
    # Keras' result type of float64 and float32 is float32 on JAX.
    dtype = "float64" if "float64" in dtypes else keras.backend.result_type(*dtypes)
    numerator, denominator = ops.cast(numerator, dtype), ops.cast(denominator, dtype)
    shape = np.broadcast_shapes(tuple(numerator.shape), tuple(denominator.shape))
    numerator, denominator = _as_written(ops.broadcast_to(numerator, shape),
                                         ops.broadcast_to(denominator, shape))
    return numerator / denominator


def range_scale(min_val, max_val, num_bits=8, narrow_range=False):
    """The step of FakeQuant's grid over `[min_val, max_val]` (0 for the
    empty range; nudging moves the ends, not the step), as the TFLite
    converter stores it: `(max - min) / levels` computed exactly and
    rounded once to float32 (the converter computes it in double).

    In float32 `max - min` rounds where the two ends' exponents differ, and
    the step then lands an ulp off the stored one on about a quarter of
    ranges; an int8 kernel's requantization (`requantize`) reads it. So the
    difference is kept as `d + e` (Knuth's two-sum: exact), and the
    quotient corrected by its remainder, `d + e - q * levels`, computed
    exactly as `levels = 2**b - c` (c = 1, or 2 with `narrow_range`):
    `d - q * 2**b` and adding `c * q` are exact by Sterbenz' lemma. Each
    step is kept as written under JAX's `jit` (`_as_written`), where XLA
    would simplify the correction away. Where the backend computes in
    float64 (`widest_float`) the step is the converter's own double
    quotient rounded to float32: five ops, where the emulation traces
    fourteen for each range."""
    if widest_float() == "float64":
        return graph_memo.memoized(
            "range_scale", (min_val, max_val, num_bits, narrow_range),
            lambda: ops.cast(_double_step(min_val, max_val, num_bits, narrow_range), "float32"))
    quotient, correction = _range_scale_parts(min_val, max_val, num_bits, narrow_range)
    return quotient + correction


def _double_step(min_val, max_val, num_bits, narrow_range):
    """`(max - min) / (2**b - c)` in float64 (c = 1, or 2 with
    `narrow_range`), as the converter computes a range's step: the
    difference of two float32 values is exact in double. Once per range
    in a traced graph (`graph_memo`)."""
    levels = 2.0 ** num_bits - (2.0 if narrow_range else 1.0)
    return graph_memo.memoized(
        "double_step", (min_val, max_val, num_bits, narrow_range),
        lambda: exact_quotient(ops.cast(max_val, "float64") - ops.cast(min_val, "float64"),
                               levels))


def range_scale_error(min_val, max_val, num_bits=8, narrow_range=False):
    """`(max - min) / levels - range_scale(...)` (to float32 precision):
    what the converter's step, a double, holds beyond the float32 one it
    stores. Its int32 biases divide by the double steps (`bias_integers`)."""
    quotient, correction = _range_scale_parts(min_val, max_val, num_bits, narrow_range)
    (step,) = _as_written(quotient + correction)
    return (quotient - step) + correction


def _range_scale_parts(min_val, max_val, num_bits, narrow_range):
    """`(quotient, correction)`: `(max - min) / levels` as the float32
    quotient of the exact difference and the float32 quotient of its
    exact remainder (see `range_scale`). Once per range in a traced
    graph (`graph_memo`)."""
    return graph_memo.memoized(
        "range_scale_parts", (min_val, max_val, num_bits, narrow_range),
        lambda: _range_scale_parts_of(min_val, max_val, num_bits, narrow_range))


def _range_scale_parts_of(min_val, max_val, num_bits, narrow_range):
    power = 2.0 ** num_bits
    extra = 1 + (1 if narrow_range else 0)
    levels = power - extra
    high = ops.cast(max_val, "float32")
    low = ops.negative(ops.cast(min_val, "float32"))
    (width,) = _as_written(high + low)
    (carried,) = _as_written(width - high)
    error = (high - (width - carried)) + (low - carried)
    quotient, error = _as_written(exact_quotient(width, levels), error)
    below, added_back = _as_written(width - quotient * power, extra * quotient)
    remainder = below + added_back + error
    return quotient, exact_quotient(remainder, levels)


def integer_grid(min_val, max_val, num_bits, narrow_range):
    """The integers of a range as the converter stores them: `(scale,
    zero_point, q_min, q_max)`, the zero point `q_min - min / scale`
    computed from the exact step and nudged onto an integer of `[q_min,
    q_max]`, a half up (a range `[-1, 1]`: 127.5 -> 128, where float32's
    step gives 127.49999 and TensorFlow's FakeQuant 127, so the two clip a
    step apart at the ends). Once per range in a traced graph
    (`graph_memo`)."""
    return graph_memo.memoized(
        "integer_grid", (min_val, max_val, num_bits, narrow_range),
        lambda: _integer_grid_of(min_val, max_val, num_bits, narrow_range))


def _integer_grid_of(min_val, max_val, num_bits, narrow_range):
    q_min, q_max = (1 if narrow_range else 0), 2 ** num_bits - 1
    min_val = ops.cast(min_val, "float32")
    max_val = ops.cast(max_val, "float32")
    scale = ops.maximum(range_scale(min_val, max_val, num_bits, narrow_range), 1e-12)
    width = max_val - min_val
    from_min = q_min - exact_quotient(min_val * (q_max - q_min), ops.where(width > 0, width, 1.0))
    zero_point = ops.clip(ops.floor(from_min + 0.5), q_min, q_max)
    return scale, zero_point, q_min, q_max


def nudged_grid(min_val, max_val, num_bits, narrow_range):
    """FakeQuant's nudged grid for a range: `(low, high, scale, q_min)`,
    `low` the value of the integer `q_min` (0, or 1 with `narrow_range`)."""
    scale, zero_point, q_min, q_max = integer_grid(min_val, max_val, num_bits, narrow_range)
    low, high = (q_min - zero_point) * scale, (q_max - zero_point) * scale
    return low, high, scale, q_min


@compiled("num_bits")
def stored_constant(value, num_bits=8):
    """`(integers, step)` of a constant MUL or ADD operand as the converter
    stores it (`fake_quant_constant`): int8 on `[min(v, 0), max(v, 0)]`,
    the integers less the zero point. TensorFlow folds the constant's
    FakeQuant before the converter quantizes it, so the integers are that
    kernel's (`fake_quant_integers`), not `round(v / step)`."""
    value = ops.cast(value, "float32")
    low, high = ops.minimum(ops.min(value), 0.0), ops.maximum(ops.max(value), 0.0)
    return fake_quant_integers(value, low, high, num_bits), range_scale(low, high, num_bits)


@compiled("num_bits")
def fake_quant_integers(x, min_val, max_val, num_bits=8):
    """The integers (less the zero point) TensorFlow's FakeQuantWithMinMaxVars
    kernel rounds `x` to, over one range `[min_val, max_val]` holding 0,
    each step rounded in float32 as that kernel rounds it:

        scale = (max - min) / (2**b - 1),    inverse = (2**b - 1) / (max - min)
        zero  = round_half_away(-min / scale)           (clamped to the grid)
        low   = -zero * scale
        shift = floor(-low * inverse + 0.5)
        k     = floor((clip(x, low, high) - low) / scale - shift + 0.5)

    The shift by `low` and the subtraction round, so a value within a few
    ulps of a half step can land on the other side of it from where
    `round(x / scale)` puts it: one channel of 1024 in a ResNet50V2
    BatchNorm's offset, -11.499996 steps, stored as -12. 0 for an empty
    range."""
    levels = float(2 ** num_bits - 1)
    low, high = ops.cast(min_val, "float32"), ops.cast(max_val, "float32")
    empty = high <= low
    width = ops.where(empty, 1.0, high - low)
    scale, inverse = exact_quotient(width, levels), exact_quotient(levels, width)
    from_min = ops.clip(-exact_quotient(low, scale), 0.0, levels)
    whole = ops.floor(from_min)
    zero = whole + ops.cast(from_min - whole >= 0.5, "float32")
    nudged_low, nudged_high = -zero * scale, (levels - zero) * scale
    (shift,) = _as_written(-nudged_low * inverse)
    shift = ops.floor(shift + 0.5)
    (shifted,) = _as_written(ops.clip(ops.cast(x, "float32"), nudged_low, nudged_high)
                             - nudged_low)
    (steps,) = _as_written(exact_quotient(shifted, scale))
    (steps,) = _as_written(steps - shift)
    integers = ops.floor(steps + 0.5)
    return ops.where(empty, ops.zeros_like(integers), integers)


@compiled()
def on_integer_grid(x, step):
    """`x / step` rounded to integers (`x` as is where `step` is 0): an
    input on its range's grid as the integers the kernel reads (less the
    zero point)."""
    step = ops.cast(step, "float32")
    return ops.round(ops.cast(x, "float32") / ops.where(step > 0, step, 1.0))


def _split(a):
    """`a = high + low`, each half of `a`'s 24 bits (Veltkamp): products
    of halves are exact in float32."""
    c = a * 4097.0
    high = c - (c - a)
    return high, a - high


def _exact_product(a, b):
    """`(p, e)` with `p + e == a * b` exactly (Dekker's two-product)."""
    p = a * b
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    return p, ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low


@compiled("bits")
def bias_integers(bias, input_step, kernel_step, bits=32, input_error=0.0, kernel_error=0.0):
    """The int32 the converter stores for `bias`: `bias / (S_in * S_w)`
    rounded (a half away from zero), the quotient and the product of the
    two steps in double, `S_in = input_step + input_error` and `S_w =
    kernel_step + kernel_error` the steps as the converter holds them
    (doubles; `range_scale_error`, `symmetric_scale_error`), not the
    float32 scales it stores.

    In float32 a bias of a few thousand steps lands within 10^-3 of a half
    often enough to round the other way (one of 480 channels of an
    EfficientNetB0 depthwise layer), and every output of the channel with
    it; the float32 product of the float32 steps, a few 10^-8 off the
    double one, moves a bias of 10^5 steps by 10^-3 of a step (one of 16
    channels of a Conv-BN a step off, 47 outputs). So the rounded float
    quotient `n` is corrected by its remainder `bias - n * S_in * S_w`,
    exact to first order in the steps' errors and the float32 product's
    rounding. Zero where a step is 0."""
    bias = ops.cast(bias, "float32")
    input_step, kernel_step = ops.cast(input_step, "float32"), ops.cast(kernel_step, "float32")
    step, step_error = _as_written(*_exact_product(input_step, kernel_step))
    safe = ops.where(step > 0, step, 1.0)
    # S_in * S_w = step * (1 + relative), to first order: the float32
    # product's rounding and each step's own error.
    relative = (exact_quotient(step_error, safe)
                + exact_quotient(ops.cast(input_error, "float32"),
                                 ops.where(input_step > 0, input_step, 1.0))
                + exact_quotient(ops.cast(kernel_error, "float32"),
                                 ops.where(kernel_step > 0, kernel_step, 1.0)))
    quotient = bias / safe
    n = ops.round(quotient - quotient * relative)
    product, product_error = _exact_product(n, safe)
    remainder = ((bias - product) - product_error) - (product * relative)
    half, half_error = 0.5 * safe, 0.5 * safe * relative
    (above,) = _as_written(remainder - half)
    (below,) = _as_written(remainder + half)
    above, below = above - half_error, below + half_error
    up = (above > 0) | ((above == 0) & (bias > 0))
    down = (below < 0) | ((below == 0) & (bias < 0))
    n = n + ops.cast(up, "float32") - ops.cast(down, "float32")
    # Saturated to the stored width (int32; int64 beside 16-bit
    # activations), as the converter stores it (a pruned channel's step is
    # tiny).
    n = ops.clip(n, -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return ops.where(step > 0, n, 0.0)


# The converter's floor on a kernel channel's `max|w|` (an all-zero, pruned
# channel gets the step `5e-7 / 127`, measured), which integer inference
# uses so such a channel adds its bias as the device does.
KERNEL_MAX_ABS_FLOOR = 5e-7


def symmetric_scale(max_abs, num_bits=8):
    """The step of symmetric narrow-range quantization over `[-m, m]`:
    `m / (2**(b-1) - 1)` (FakeQuant's nudging keeps that range exact)."""
    return exact_quotient(max_abs, float(2 ** (num_bits - 1) - 1))


def symmetric_scale_error(max_abs, num_bits=8):
    """`m / (2**(b-1) - 1) - symmetric_scale(m)` (to float32 precision):
    what the converter's kernel step, a double, holds beyond the float32
    one it stores (`bias_integers`)."""
    levels = float(2 ** (num_bits - 1) - 1)
    max_abs = ops.cast(max_abs, "float32")
    step = symmetric_scale(max_abs, num_bits)
    product, product_error = _as_written(*_exact_product(step, levels))
    (left,) = _as_written(max_abs - product)
    return exact_quotient(left - product_error, levels)


def range_bias_integers(bias, low, high, kernel_max_abs, num_bits=8, narrow_range=False,
                        kernel_bits=8, bits=32):
    """The integers the converter stores for `bias` (int32; `bits`) of a
    kernel reading the range `[low, high]` (`num_bits`, `narrow_range`)
    whose channels' largest weights are `kernel_max_abs` (symmetric,
    `kernel_bits`). Where the backend computes in float64 (`widest_float`:
    TensorFlow, PyTorch, JAX with x64) in double, as the converter does,

        S_in = (high - low) / (2**b - c),    S_w = max|w| / (2**(k-1) - 1)
        bias_q = round_half_away(bias / (S_in * S_w))    (saturated; 0 where a step is 0)

    a dozen ops where the float32 emulation below traces some 120 for each
    kernel layer (40% of the ops of a QAT MobileNetV2's inference graph);
    elsewhere `bias_integers` of the float32 steps and their errors."""
    if widest_float() != "float64":
        return bias_integers(
            bias, range_scale(low, high, num_bits, narrow_range),
            symmetric_scale(kernel_max_abs, kernel_bits), bits,
            range_scale_error(low, high, num_bits, narrow_range),
            symmetric_scale_error(kernel_max_abs, kernel_bits))
    input_step = _double_step(low, high, num_bits, narrow_range)
    kernel_step = exact_quotient(ops.cast(kernel_max_abs, "float64"),
                                 float(2 ** (kernel_bits - 1) - 1))
    step = input_step * kernel_step
    quotient = exact_quotient(ops.cast(bias, "float64"), ops.where(step > 0, step, 1.0))
    limit = 2.0 ** (bits - 1)
    n = ops.sign(quotient) * floor_wide(ops.clip(ops.abs(quotient) + 0.5, 0.0, limit))
    n = ops.clip(n, -limit, limit - 1)
    return ops.cast(ops.where(step > 0, n, 0.0), "float32")
