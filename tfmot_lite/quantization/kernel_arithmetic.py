"""What the device's int8 kernels compute, on integers (XNNPACK and
LiteRT's built-in kernels, each checked against the kernel it names):

* `requantize`: a convolution's or fully connected layer's accumulator
  into its output range, `round(acc * M)` in float32, a tie to even;
* `requantize_sum`: an ADD, in XNNPACK's 21-bit fixed point, a tie up;
  `builtin_sum`, LiteRT's built-in ADD (which runs an ADD XNNPACK does not
  take), in 32-bit fixed point; `device_sum` picks the one that runs;
* `requantize_mean`: a MEAN's sum of stored integers, in XNNPACK's float32
  convert (its zero points folded into one float offset);
* `requantize_copy`: a QUANTIZE from one int8 range into another (what the
  converter puts before a CONCATENATION), in XNNPACK's 8-bit fixed point;
* `hard_swish_integers`: LiteRT's int8 HARD_SWISH, in 16-bit fixed point;
* `rsqrt_integers`: LiteRT's int8 RSQRT (a LayerNormalization's), in
  32-bit fixed point;
* `average_rounding`, `interpolation_rounding`: how an average pool and a
  bilinear resize round their means;

Integers are held in float32 (exact below 2**24) unless a kernel's
fixed point needs int32. No gradient: inference only. On JAX an eager call
of a kernel runs as one compiled program (`fast.compiled`).
"""

import numpy as np
from keras import ops

from tfmot_lite.core.layer_kinds import FUSED_RELUS
from tfmot_lite.fast import ops as fast_ops
from tfmot_lite.fast.compiled import compiled
from tfmot_lite.quantization.integer_grid import (
    exact_quotient, floor_wide, integer_grid, nudged_grid, widest_float,
)


@compiled("num_bits", "narrow_range", "activation")
def requantize(accumulator, product_step, min_val, max_val, num_bits=8,
               narrow_range=False, activation=None):
    """The outputs of an int8 convolution or fully connected kernel, from
    its accumulator, as XNNPACK computes them:

        acc = sum(x_q * w_q) + bias_q          (integers)
        q   = clip(round(acc * M) + zero_point, q_lo, q_hi),
        M   = (input_scale * kernel_scale) / output_scale   (float32)
        y   = (q - zero_point) * output_scale

    `accumulator` holds `acc` (integers in float32: exact while below
    2**24), `product_step` is `input_scale * kernel_scale` (per output
    channel on the last axis). `round` is to the nearest, a tie to even, as
    XNNPACK's float requantization rounds. A fused "relu" or "relu6"
    (`activation`) raises `q_lo` to the zero point and caps `q_hi` at 6.0.

    The float path, `fq(conv(x, w) + b)`, computes the same integers but
    within a few 10^-4 of an output step of a tie: its float sums and
    FakeQuant's own arithmetic round where the device's integers do not, and
    an input with flat regions (an upsampled image, a background) repeats
    such a tie on every pixel of the region (the stem of a QAT EfficientNetB0
    on digits: 0.007% of its outputs a step off XNNPACK's, all of them
    within 2e-4 of a step of a tie). No gradient: inference only."""
    scale, zero_point, q_min, q_max = integer_grid(min_val, max_val, num_bits, narrow_range)
    multiplier = exact_quotient(ops.cast(product_step, "float32"), scale)
    # The clamp in integers less the zero point: four passes over the
    # outputs (multiply, round, clip, scale).
    q_lo, q_hi = fused_bounds(scale, zero_point, q_min, q_max, activation)
    return ops.clip(ops.round(accumulator * multiplier), q_lo, q_hi) * scale


def fused_bounds(scale, zero_point, q_min, q_max, activation=None):
    """`(q_lo, q_hi)`, the integers (less the zero point) an int8 op clamps
    its output to: its range's `[q_min, q_max]`; a fused "relu" or "relu6"
    (`activation`) raises `q_lo` to the zero point (0.0), and "relu6" caps
    `q_hi` at 6.0 (`round(6 / scale)` steps)."""
    q_lo, q_hi = q_min - zero_point, q_max - zero_point
    if activation in FUSED_RELUS:
        q_lo = ops.maximum(q_lo, 0.0)
    if activation == "relu6":
        q_hi = ops.minimum(ops.round(exact_quotient(6.0, scale)), q_hi)
    return q_lo, q_hi


@compiled("count", "num_bits", "narrow_range")
def requantize_mean(total, count, input_step, input_zero_point, min_val, max_val, num_bits=8,
                    narrow_range=False):
    """The outputs of an int8 MEAN over `count` values whose integers less
    their zero point sum to `total` (in float32: exact below 2**24), as
    XNNPACK computes them: the sum of the stored integers, converted to
    int8 by one multiply and one add in float32, the zero points folded
    into the add's constant,

        M      = (input_scale / output_scale) * (1 / count)                (float32)
        offset = output_zero_point - (count * input_zero_point) * M        (float32)
        q      = clip(round(stored_sum * M + offset), q_lo, q_hi),   a tie to even

    zero points and stored integers signed (int8). Where the offset is not
    a whole number its float add rounds the product a second time: a sum
    whose exact mean lies within a few 10^-6 of a step above a tie can
    land on the tie, and go to even (22.5000023 steps -> 22); exact
    requantization of the sum, and the Keras float mean, send it up. No
    gradient: inference only."""
    scale, zero_point, q_min, q_max = integer_grid(min_val, max_val, num_bits, narrow_range)
    half = 2.0 ** (num_bits - 1)
    multiplier = exact_quotient(ops.cast(input_step, "float32"), scale) * np.float32(1.0 / count)
    stored_zero_point = ops.cast(input_zero_point, "float32") - half
    output_zero_point = zero_point - half
    offset = output_zero_point - (count * stored_zero_point) * multiplier
    stored_sum = ops.convert_to_tensor(total, "float32") + count * stored_zero_point
    q = ops.round(stored_sum * multiplier + offset)
    return (ops.clip(q, q_min - half, q_max - half) - output_zero_point) * scale


@compiled("num_bits", "narrow_range")
def average_rounding(x, min_val, max_val, num_bits=8, narrow_range=False):
    """`x`, a mean of values on the grid of `[min_val, max_val]`, rounded
    as TFLite's integer AVERAGE_POOL_2D rounds it (XNNPACK and the built-in
    kernel alike, measured): the mean of the stored integers, `q - 2**(b-1)`,
    half away from zero. FakeQuant rounds a tie half up, so on values below
    the range's midpoint (every value of a range starting at 0) a tie lands
    a step lower on the device. No gradient. (Measured on int8; a 16-bit
    range is assumed to round the same way.)

    A mean of `n` integers is a multiple of `1/n`: one within 1e-3 of a
    half is a tie (float rounding of the mean may have moved it) for any
    pool of fewer than 500 values."""
    low, high, scale, q_min = nudged_grid(min_val, max_val, num_bits, narrow_range)
    half = 2.0 ** (num_bits - 1)
    stored = (ops.clip(x, low, high) - low) / scale + (q_min - half)
    nearest = ops.sign(stored) * ops.floor(ops.abs(stored) + 0.5 + 1e-3)
    return (nearest + half - q_min) * scale + low


@compiled("num_bits", "narrow_range")
def interpolation_rounding(x, min_val, max_val, num_bits=8, narrow_range=False):
    """`x`, a weighted average of values on the grid of `[min_val,
    max_val]` (a bilinear resize), rounded as XNNPACK's int8
    RESIZE_BILINEAR rounds it (measured): to the nearest step, a tie up.
    A value within 1e-3 of a step below a tie counts as one (float
    rounding of the weighted sum may have moved it; the device sums
    integers). No gradient."""
    low, high, scale, _ = nudged_grid(min_val, max_val, num_bits, narrow_range)
    steps = (ops.clip(x, low, high) - low) / scale
    return ops.floor(steps + 0.5 + 1e-3) * scale + low


@compiled("num_bits", "narrow_range", "activation")
def requantize_sum(a, a_step, b, b_step, min_val, max_val, num_bits=8, narrow_range=False,
                   activation=None):
    """The outputs of an int8 ADD of `a` and `b` (integers less their zero
    points, in float32, on the steps `a_step` and `b_step`) as XNNPACK
    computes them, in fixed point:

        r_a, r_b = a_step / output_scale, b_step / output_scale   (float32)
        shift    = 20 - floor(log2(max(r_a, r_b)))
        m_a, m_b = round(r_a * 2**shift), round(r_b * 2**shift)   (21 bits)
        q        = floor((2**(shift-1) + a * m_a + b * m_b) / 2**shift) + zero_point

    so a tie goes up, and the multipliers' own rounding moves values within
    a few 10^-6 of a half step. The float sum rounds such a value the way
    its float error points, where XNNPACK's goes up: a `Rescaling(1/127.5,
    offset=-1)` on pixels (MobileNetV3's input) puts every output on a half
    step. A fused ReLU (`activation`) clamps `q` (`fused_bounds`). No
    gradient."""
    scale, zero_point, q_min, q_max = integer_grid(min_val, max_val, num_bits, narrow_range)
    a_ratio = exact_quotient(ops.cast(a_step, "float32"), scale)
    b_ratio = exact_quotient(ops.cast(b_step, "float32"), scale)
    # XNNPACK takes ratios in [2**-10, 2**8): the shift stays in [12, 30]
    # (an operand on an empty range, ratio 0, would have none).
    top = ops.clip(ops.maximum(ops.max(a_ratio), ops.max(b_ratio)), 2.0 ** -10, 2.0 ** 8 - 1)
    exponent = ops.floor(ops.log2(top))
    exponent = ops.where(ops.power(2.0, exponent) > top, exponent - 1.0, exponent)
    exponent = ops.where(ops.power(2.0, exponent + 1.0) <= top, exponent + 1.0, exponent)
    shift = 20.0 - exponent
    unit = ops.power(2.0, shift)

    def fixed(x):
        return ops.cast(ops.round(x), "int32")

    total = (fixed(unit / 2.0) + fixed(a) * fixed(a_ratio * unit)
             + fixed(b) * fixed(b_ratio * unit))
    q = ops.cast(ops.right_shift(total, ops.cast(shift, "int32")), "float32")
    return ops.clip(q, *fused_bounds(scale, zero_point, q_min, q_max, activation)) * scale


# XNNPACK's int8-to-int8 convert takes scale ratios in [2**-8, 2**7].
COPY_RATIO_LIMITS = (2.0 ** -8, 2.0 ** 7)


@compiled("num_bits", "narrow_range")
def requantize_copy(x, input_step, min_val, max_val, num_bits=8, narrow_range=False):
    """The outputs of an int8 QUANTIZE of `x` (integers less their zero
    point, on `input_step`) into the range `[min_val, max_val]`, as
    XNNPACK's int8 convert computes them, with 8 fractional bits:

        m = round(256 * (input_step / output_scale))        (float32 ratio, a tie to even)
        q = floor((x * m + 128) / 256) + zero_point         (clamped to the grid)

    The converter moves each operand of a CONCATENATION that lies on
    another range into the output's so. The multiplier's own rounding (up
    to 1/512 of the ratio) puts 2-3% of a copy's outputs a step off the
    exactly rounded value that FakeQuant gives (an Inception-style block);
    the device computes these. A ratio outside `COPY_RATIO_LIMITS`, which
    XNNPACK does not take, is the caller's to avoid. No gradient."""
    scale, zero_point, q_min, q_max = integer_grid(min_val, max_val, num_bits, narrow_range)
    multiplier = ops.round(256.0 * exact_quotient(ops.cast(input_step, "float32"), scale))
    q = ops.floor((x * multiplier + 128.0) / 256.0)
    return ops.clip(q, q_min - zero_point, q_max - zero_point) * scale


def _fixed_point(multiplier):
    """TFLite's `QuantizeMultiplier` then `DownScaleInt32ToInt16Multiplier`
    of a positive float32 `multiplier`: `(m16, exponent)` with
    `multiplier = m16 / 2**15 * 2**exponent`, `m16` in [2**14, 2**15)."""
    exponent = ops.floor(ops.log2(multiplier)) + 1.0
    exponent = ops.where(ops.power(2.0, exponent - 1.0) > multiplier, exponent - 1.0, exponent)
    exponent = ops.where(ops.power(2.0, exponent) <= multiplier, exponent + 1.0, exponent)
    fraction = multiplier / ops.power(2.0, exponent)  # in [0.5, 1), 24 bits: exact
    m16 = ops.minimum(ops.floor(fraction * 32768.0 + 0.5), 32767.0)
    return ops.cast(m16, "int32"), ops.cast(exponent, "int32")


def _rounding_doubling_high_mul(a, b):
    """gemmlowp's `SaturatingRoundingDoublingHighMul` on int16 values held
    in int32: `(a * b + nudge) / 2**15`, truncated toward zero."""
    product = a * b
    nudged = product + ops.where(product >= 0, 1 << 14, 1 - (1 << 14))
    magnitude = ops.right_shift(ops.abs(nudged), 15)
    return ops.where(nudged >= 0, magnitude, -magnitude)


def _rounding_divide_by_power_of_two(x, exponent):
    """gemmlowp's `RoundingDivideByPOT`: `x / 2**exponent`, a tie away from
    zero."""
    mask = ops.left_shift(ops.ones_like(x), exponent) - 1
    remainder = ops.bitwise_and(x, mask)
    threshold = ops.right_shift(mask, 1) + ops.cast(x < 0, "int32")
    return ops.right_shift(x, exponent) + ops.cast(remainder > threshold, "int32")


@compiled()
def hard_swish_integers(x, input_step, output_step):
    """TFLite's int8 HARD_SWISH kernel (LiteRT's built-in kernel, which runs
    it: XNNPACK takes no int8 HARD_SWISH here) on `x`, integers less the
    input's zero point: the integers of `x * relu6(x + 3) / 6` less the
    output's zero point, in its 16-bit fixed point:

        hires     = x * 2**7                                (input_step / 2**7)
        pre       = RDHM(hires, m_out)                      (output_step, before the shift)
        reluish   = RDHM(hires << (e_r - 1), m_r) << 1      (3 / 2**15 units, e_r > 0;
                    RDHM(hires, m_r) / 2**-e_r otherwise)
        reluish   = (reluish + 2**15) / 2                   (relu6(x + 3) / 6 in [0, 2**15))
        q         = RoundingDivideByPOT(reluish * pre / 2**15, -e_out)   (/ toward zero)

    with `m_out, e_out` and `m_r, e_r` the 16-bit multipliers of
    `input_step / 2**7 / output_step` and `input_step / 2**7 / (3 / 2**15)`.
    Exact rounding of the float function puts 0.25% of outputs a step off
    this kernel's (a layer of 16,384 values, measured); MobileNetV3's
    hard-swishes run on it."""
    hires_step = ops.cast(input_step, "float32") / 128.0
    m_out, e_out = _fixed_point(exact_quotient(hires_step, ops.cast(output_step, "float32")))
    m_r, e_r = _fixed_point(exact_quotient(hires_step, 3.0 / 32768.0))
    hires = ops.cast(x, "int32") * 128
    pre = _rounding_doubling_high_mul(hires, m_out)

    def saturate(v):
        return ops.clip(v, -32768, 32767)

    shifted = saturate(ops.left_shift(hires, ops.maximum(e_r - 1, 0)))
    reluish = _rounding_doubling_high_mul(shifted, m_r)
    reluish = ops.where(e_r > 0, saturate(ops.left_shift(reluish, 1)),
                        _rounding_divide_by_power_of_two(reluish, ops.maximum(-e_r, 0)))
    reluish = ops.right_shift(reluish + (1 << 15), 1)
    product = reluish * pre  # SaturatingDoublingHighMul: / 2**15 toward zero
    magnitude = ops.right_shift(ops.abs(product), 15)
    preshift = ops.where(product >= 0, magnitude, -magnitude)
    return ops.cast(_rounding_divide_by_power_of_two(preshift, -e_out), "float32")


# -- LiteRT's int8 RSQRT ------------------------------------------------------
#
# The kernel computes `2**20 / sqrt(v)` for the integer `v` (its input less
# the zero point) with gemmlowp's fixed-point Newton iteration, then
# multiplies by the op's 31-bit multiplier of `1 / (sqrt(s_in) * s_out)`.
# The first part depends on `v` alone: a table of the 256 values an int8
# input can take, computed once here on Python's integers.

_INT32_MAX = 2 ** 31 - 1


def _high_mul_reference(a, b):
    """gemmlowp's 32-bit `SaturatingRoundingDoublingHighMul` on Python ints."""
    if a == b == -2 ** 31:
        return _INT32_MAX
    product = a * b
    nudged = product + ((1 << 30) if product >= 0 else 1 - (1 << 30))
    return (abs(nudged) >> 31) * (1 if nudged >= 0 else -1)


def _divide_by_power_of_two_reference(x, exponent):
    """gemmlowp's `RoundingDivideByPOT` on Python ints (a tie away from zero)."""
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def _times_power_of_two_reference(x, exponent):
    """gemmlowp's `SaturatingRoundingMultiplyByPOT` on Python ints."""
    if exponent < 0:
        return _divide_by_power_of_two_reference(x, -exponent)
    limit = (1 << (31 - exponent)) - 1
    return _INT32_MAX if x > limit else -2 ** 31 if x < -limit else x << exponent


def _inverse_sqrt_q20(value):
    """`2**20 / sqrt(value)` for an int `value >= 2` as LiteRT's int8 RSQRT
    computes it: `GetInvSqrtQuantizedMultiplierExp` (five Newton steps in
    fixed point with 3 integer bits, then a multiply by sqrt(2)/2), then
    `MultiplyByQuantizedMultiplier(1, multiplier, shift + 20)`."""
    shift = 11
    pairs = (31 - value.bit_length()) // 2 - 1  # (leading zeros - 1) // 2 - 1
    shift -= pairs
    value <<= 2 * pairs
    half_input = _times_power_of_two_reference(value >> 1, -1)
    three_halves = (1 << 28) + (1 << 27)
    x = 1 << 28  # one
    for _ in range(5):
        cube = _times_power_of_two_reference(
            _high_mul_reference(_high_mul_reference(x, x), x), 6)
        x = _times_power_of_two_reference(
            _high_mul_reference(three_halves, x) - _high_mul_reference(half_input, cube), 3)
    multiplier = _high_mul_reference(x, 1518500250)  # sqrt(2) / 2 in Q31
    if shift < 0:
        multiplier, shift = multiplier << -shift, 0
    left = max(20 - shift, 0)
    return _divide_by_power_of_two_reference(
        _high_mul_reference(1 << left, multiplier), max(shift - 20, 0))


# v = 0 has no inverse (the kernel outputs its largest value); v = 1 is
# taken as the multiplier INT32_MAX with no shift.
_INVERSE_SQRT_Q20 = np.array(
    [0, _high_mul_reference(1 << 20, _INT32_MAX)]
    + [_inverse_sqrt_q20(v) for v in range(2, 256)], "int32")


def _high_mul(a, b):
    """gemmlowp's `SaturatingRoundingDoublingHighMul` of an int32 tensor `a`
    and one `0 <= b < 2**31`: `(a * b + nudge) / 2**31` truncated toward
    zero, the nudge `2**30` (`1 - 2**30` for a negative product), exact
    on int32 alone (the 62-bit product as 11-bit limbs: JAX has no int64
    unless x64 is on). TensorFlow multiplies in int64 instead
    (`fast.ops.high_mul_int64`: the same integers in a fifth of the ops)."""
    fast = fast_ops.high_mul_int64(a, b)
    if fast is not None:
        return fast
    mask = 2047
    magnitude = ops.abs(a)
    a0, a1, a2 = (ops.bitwise_and(magnitude, mask),
                  ops.bitwise_and(ops.right_shift(magnitude, 11), mask),
                  ops.right_shift(magnitude, 22))
    b0, b1, b2 = ops.bitwise_and(b, mask), ops.bitwise_and(ops.right_shift(b, 11), mask), \
        ops.right_shift(b, 22)
    # |a| * b + 2**30 - (1 for a negative a), column by column.
    c0 = a0 * b0 - ops.cast(a < 0, "int32")
    c1 = a0 * b1 + a1 * b0 + ops.right_shift(c0, 11)
    c2 = a0 * b2 + a1 * b1 + a2 * b0 + 256 + ops.right_shift(c1, 11)  # + 2**30
    c3 = a1 * b2 + a2 * b1 + ops.right_shift(c2, 11)
    c4 = a2 * b2 + ops.right_shift(c3, 11)
    high = (c4 * 8192 + ops.bitwise_and(c3, mask) * 4
            + ops.right_shift(ops.bitwise_and(c2, mask), 9))
    return ops.where(a < 0, -high, high)


def _quantized_multiplier(real):
    """TFLite's `QuantizeMultiplier` of a positive double: `(m, exponent)`,
    `real = m / 2**31 * 2**exponent`, `m` in [2**30, 2**31) rounded half
    away from zero (in float32 where the backend has no float64)."""
    exponent = ops.floor(ops.log2(real)) + 1.0
    exponent = ops.where(ops.power(2.0, exponent - 1.0) > real, exponent - 1.0, exponent)
    exponent = ops.where(ops.power(2.0, exponent) <= real, exponent + 1.0, exponent)
    m = floor_wide(real / ops.power(2.0, exponent) * 2.0 ** 31 + 0.5)
    exponent = ops.where(m >= 2.0 ** 31, exponent + 1.0, exponent)
    m = ops.where(m >= 2.0 ** 31, 2.0 ** 30, m)
    return ops.cast(m, "int32"), ops.cast(exponent, "int32")


@compiled()
def rsqrt_integers(x, input_step, output_step):
    """LiteRT's int8 RSQRT kernel (XNNPACK takes none; a LayerNormalization's
    `1 / sqrt(variance + epsilon)`) on `x`, integers less the input's zero
    point: the integers of `1 / sqrt(x * input_step)` less the output's
    zero point, in its 32-bit fixed point,

        d = 2**20 / sqrt(x)                                 (`_INVERSE_SQRT_Q20`)
        m, e = QuantizeMultiplier(1 / (sqrt(input_step) * output_step))   (double)
        q = RoundingDivideByPOT(SRDHM(d << max(e - 20, 0), m), max(20 - e, 0))

    and `x = 0` the int8 maximum (returned as 2**24 here, for the caller's
    clamp). It rounds `1 / sqrt(x)` as exact rounding does but on ties,
    which it sends up: a LayerNormalization's inverse on flat patches (its
    range ends at the inverse of one variance step, so `255 / sqrt(v)` is
    a tie at v = 4, 36, 100) came out a step off the kernel on 10% of the
    values of one after a residual Add on flat images."""
    wide = widest_float()
    real = exact_quotient(1.0, ops.sqrt(ops.cast(input_step, wide)) * ops.cast(output_step, wide))
    m, exponent = _quantized_multiplier(real)
    value = ops.cast(ops.clip(x, 0, 255), "int32")
    d = ops.take(ops.convert_to_tensor(_INVERSE_SQRT_Q20), value)
    d = ops.left_shift(d, ops.maximum(exponent - 20, 0))
    q = _rounding_divide_by_power_of_two(_high_mul(d, m), ops.maximum(20 - exponent, 0))
    return ops.where(value == 0, 2.0 ** 24, ops.cast(q, "float32"))


@compiled("num_bits", "narrow_range", "activation")
def builtin_sum(a, a_step, b, b_step, min_val, max_val, num_bits=8, narrow_range=False,
                activation=None):
    """The outputs of an int8 ADD of `a` and `b` (integers less their zero
    points, on `a_step` and `b_step`) as LiteRT's built-in kernel computes
    them, which runs an ADD XNNPACK does not take (an operand's scale
    outside `[2**-10, 2**8)` of the output's: a LayerNorm's epsilon, a
    residual of a tiny layer scale):

        t      = 2 * max(a_step, b_step)                          (double)
        a', b' = MBQM((a, b) << 20, QuantizeMultiplier(step / t))
        q      = MBQM(a' + b', QuantizeMultiplier(t / (2**20 * output_scale))) + zero_point

    each `MBQM` (MultiplyByQuantizedMultiplierSmallerThanOneExp) a doubling
    high multiply then a divide by a power of two, a tie away from zero;
    a fused ReLU (`activation`) clamps `q` (`fused_bounds`). No gradient."""
    scale, zero_point, q_min, q_max = integer_grid(min_val, max_val, num_bits, narrow_range)
    wide = widest_float()
    a_step, b_step = ops.cast(a_step, wide), ops.cast(b_step, wide)
    twice_max = 2.0 * ops.maximum(a_step, b_step)

    def scaled(x, real):
        m, exponent = _quantized_multiplier(real)
        return _rounding_divide_by_power_of_two(_high_mul(x, m), ops.maximum(-exponent, 0))

    total = (scaled(ops.cast(a, "int32") * (1 << 20), exact_quotient(a_step, twice_max))
             + scaled(ops.cast(b, "int32") * (1 << 20), exact_quotient(b_step, twice_max)))
    q = scaled(total, exact_quotient(twice_max, 2.0 ** 20 * ops.cast(scale, wide)))
    bounds = fused_bounds(scale, zero_point, q_min, q_max, activation)
    return ops.clip(ops.cast(q, "float32"), *bounds) * scale


# The input-to-output scale ratios XNNPACK's ADD takes (the delegate
# leaves others to LiteRT's built-in ADD).
ADD_RATIO_LIMITS = (2.0 ** -10, 2.0 ** 8)


@compiled("num_bits", "narrow_range", "activation")
def device_sum(a, a_step, b, b_step, min_val, max_val, num_bits=8, narrow_range=False,
               activation=None):
    """An int8 ADD as the .tflite runs it: XNNPACK's (`requantize_sum`)
    where the delegate takes it, both operands' scales within
    `ADD_RATIO_LIMITS` of the output's (float32 ratios, as it checks them),
    else LiteRT's built-in kernel's (`builtin_sum`), a fused ReLU
    (`activation`) clamped in. No gradient."""
    scale = integer_grid(min_val, max_val, num_bits, narrow_range)[0]
    low, high = ADD_RATIO_LIMITS

    def taken(step):
        ratio = exact_quotient(ops.cast(step, "float32"), scale)
        return ops.logical_and(ops.all(ratio >= low), ops.all(ratio < high))

    args = (a, a_step, b, b_step, min_val, max_val, num_bits, narrow_range, activation)
    return ops.where(ops.logical_and(taken(a_step), taken(b_step)),
                     requantize_sum(*args), builtin_sum(*args))
