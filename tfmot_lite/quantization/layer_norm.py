"""Quantization-aware training of `keras.layers.LayerNormalization`.

TFLite has no integer layer-normalization kernel; the converter runs the
normalization as the integer ops below, each with the range of its point
(`LayerNormQuantizeConfig`), over the normalized axes:

    m = mean(x)                mean           MEAN
    d = x - m                  centered       SUB
    v = mean(d * d)            square, variance   MUL, MEAN
    r = rsqrt(v + eps)         variance_eps, inverse_std   ADD, RSQRT (0 -> the
                                                           range's maximum)
    n = d * r                  normalized     MUL
    y = n * gamma + beta       scaled, then the layer's output   MUL, ADD

With Keras' (deprecated) `rms_scaling`, `n = x * r` and no `beta`. `gamma` is an int8
weight (per tensor); `beta` and epsilon are constant operands the converter
quantizes itself, and inference adds `beta` as it stores it (int8 on its own
range, `quantizers.fake_quant_constant`; the float beta had put 2-5% of the
outputs a step off XNNPACK's). The last value computed is quantized by the wrapper's output
quantizer, so no point repeats it. In inference the ops compute on the
integers as the .tflite's kernels do (`_integer_chain`).
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.input_range import either_range
from tfmot_lite.quantization.inside import LAYER_INPUT, LAYER_OUTPUT, InsideQuantizeConfig
from tfmot_lite.quantization.integer_grid import on_integer_grid, stored_constant
from tfmot_lite.quantization.kernel_arithmetic import rsqrt_integers

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


def _steps(layer, quantize_input=False):
    """The point names, in the order `layer_norm_call` computes them; the
    last value computed is the layer's output (no point of its own)."""
    names = ["input"] if quantize_input else []
    names += ["mean", "centered", "square", "variance", "variance_eps", "inverse_std",
              "normalized"]
    if layer.scale:
        names.append("scaled")
    if not (layer.center and not layer.rms_scaling):
        names.pop()  # The last value is the output.
    return names


def _broadcast(weight, axes, rank):
    """`gamma`/`beta` (shaped like the normalized axes) shaped to broadcast
    against a rank-`rank` input."""
    return ops.reshape(weight, [weight.shape[axes.index(i)] if i in axes else 1
                                for i in range(rank)])


def _rsqrt_saturating(x):
    """`1 / sqrt(x)`, and for `x == 0` the largest value it takes elsewhere
    in the batch: the training step's RSQRT.

    A variance within half a step of 0 (a flat patch: digits' background)
    quantizes to 0 when epsilon is below half a step. TFLite's int8 RSQRT
    gives 0 the largest value of its output range, and so does the fake
    quantization of `rsqrt(0) = inf` after it in inference (it clips); in
    a training step that inf would become the tracked range's maximum (NaN
    from there on). The batch's largest finite value keeps the range what
    the other values make it.
    """
    positive = ops.greater(x, 0)
    finite = ops.rsqrt(ops.where(positive, x, ops.ones_like(x)))
    largest = ops.stop_gradient(ops.max(ops.where(positive, finite, ops.zeros_like(x))))
    return ops.where(positive, finite, largest)


def _foldable_points(layer):
    """`{point: (constant, identity)}`: the ranges before a multiply by
    gamma and an add of beta, which the converter folds away, with the
    range, while gamma is ones or beta zeros (a fresh LayerNorm): that range
    would meet the next with nothing between. The converter's trace skips
    them then (`quantizers.folded_away`, read before the wrapper puts the
    quantized gamma in place of the variable); inference decides on the
    values at each call (`quantizers.unless_folded`)."""
    foldable = {}
    if layer.scale:
        foldable["normalized"] = (layer.gamma, 1.0)
        if layer.center and not layer.rms_scaling:
            foldable["scaled"] = (layer.beta, 0.0)
    return foldable


def _integer_chain(layer, points, x, axes):
    """The ops of the module docstring on the int8 integers each computes
    with, as the .tflite computes them: MEAN as XNNPACK's
    (`requantize_mean`), SUB as its fixed-point ADD of the negated mean,
    each MUL as its requantized product (`requantize`; gamma as stored,
    int8 per tensor), RSQRT as LiteRT's own kernel (`rsqrt_integers`),
    beta's ADD into the wrapper's output range (each ADD by the kernel
    that runs it, `kernel_arithmetic.device_sum`). The ADD of epsilon, a
    constant a fraction of a step, stays float (read against the .tflite's
    own tensor: no value off at epsilon 1e-6, 1e-3 or 1e-2). Where the converter folds
    gamma's MUL or beta's ADD away (ones, zeros), the op before rounds
    into the range after.

    Rounding the float chain instead puts a step off the device's on the
    ties: 10% of the inverse deviations after a residual Add on flat
    images (the RSQRT), 181 of 1,048,576 centred values (the SUB), which
    the division by a small deviation makes 10 output steps. None where a
    range is missing, outside inference (`Points.integer_ranges`), with
    `rms_scaling`, or where the normalized size is known only when the
    graph runs: the float chain runs."""
    ranges = points.integer_ranges(layer)
    if ranges is None or layer.rms_scaling:
        return None
    source = ranges.get("input", ranges.get(LAYER_INPUT))
    head = ("mean", "centered", "square", "variance", "variance_eps", "inverse_std")
    sizes = [x.shape[a] for a in axes]
    gamma_step = points.weight_step("gamma") if layer.scale else 1.0
    if (source is None or LAYER_OUTPUT not in ranges or any(n not in ranges for n in head)
            or any(n in points and n not in ranges for n in ("normalized", "scaled"))
            or None in sizes or gamma_step is None):
        return None
    centered, inverse = _normalizing_integers(layer, points, ranges, source, x, axes,
                                              int(np.prod(sizes)))
    return _affine_integers(layer, ranges, centered, inverse, axes, len(x.shape), gamma_step)


def _normalizing_integers(layer, points, r, source, x, axes, count):
    """`(centered, inverse)`: the integers of `x - mean` and of
    `rsqrt(variance + epsilon)` on their points' ranges."""
    def mean_of(values, grid, into):
        total = ops.sum(grid.integers_of(values), axis=axes, keepdims=True)
        return into.requantize_mean(total, count, grid)

    mean = mean_of(x, source, r["mean"])
    centered = r["centered"].integers_of(r["centered"].requantize_sum(
        source.integers_of(x), source.scale(), -r["mean"].integers_of(mean), r["mean"].scale()))
    step = r["centered"].scale()
    square = r["square"].requantize(centered * centered, step * step)
    variance = mean_of(square, r["square"], r["variance"])
    shifted = points("variance_eps", ops.add(variance, layer.epsilon))
    inverse = r["inverse_std"].lookup(
        rsqrt_integers, r["variance_eps"].integers_of(shifted), r["variance_eps"])
    return centered, r["inverse_std"].integers_of(inverse)


def _affine_integers(layer, r, centered, inverse, axes, rank, gamma_step):
    """`centered * inverse * gamma + beta` as its MULs and ADD compute it,
    each into its point's range (the last into the output's), the range
    after where the converter folds the next op away."""
    out = r[LAYER_OUTPUT]
    folds = {name: ops.all(ops.equal(constant, identity))
             for name, (constant, identity) in _foldable_points(layer).items()}
    into_scaled = either_range(folds.get("scaled"), out, r["scaled"]) if "scaled" in r else out
    grid = (either_range(folds.get("normalized"), into_scaled, r["normalized"])
            if "normalized" in r else out)
    y = grid.requantize(centered * inverse, r["centered"].scale() * r["inverse_std"].scale())
    if layer.scale:
        gamma = on_integer_grid(_broadcast(layer.gamma, axes, rank), gamma_step)
        scaled = into_scaled.requantize(grid.integers_of(y) * gamma, grid.scale() * gamma_step)
        y = scaled if "normalized" not in folds else ops.where(folds["normalized"], y, scaled)
        grid = into_scaled
    if layer.center:
        beta, beta_step = stored_constant(_broadcast(layer.beta, axes, rank))
        added = out.requantize_sum(grid.integers_of(y), grid.scale(), beta, beta_step)
        y = added if "scaled" not in folds else ops.where(folds["scaled"], y, added)
    return y


def layer_norm_call(layer, points, quantize_input=False):
    """`layer.call` as the integer ops of the module docstring."""
    foldable = _foldable_points(layer)
    folded = {name for name, (constant, identity) in foldable.items()
              if q.folded_away(constant, identity)}
    names = set(_steps(layer, quantize_input)) - folded

    def at(name, x):
        if name not in names:
            return x
        if name in foldable:
            return q.unless_folded(points(name, x), x, *foldable[name], points.training)
        return points(name, x)

    def call(inputs):
        x = at("input", ops.cast(inputs, layer.compute_dtype))
        axes = [a % len(x.shape) for a in layer.axis]
        device = None if points.training else _integer_chain(layer, points, x, axes)
        if device is not None:
            return device
        mean = at("mean", ops.mean(x, axis=axes, keepdims=True))
        centered = at("centered", ops.subtract(x, mean))
        square = at("square", ops.multiply(centered, centered))
        variance = at("variance", ops.mean(square, axis=axes, keepdims=True))
        shifted = at("variance_eps", ops.add(variance, layer.epsilon))
        inverse = at("inverse_std", _rsqrt_saturating(shifted) if points.training
                     else ops.rsqrt(shifted))
        # Keras' (deprecated) `rms_scaling` divides the uncentered input by
        # the standard deviation.
        y = at("normalized", ops.multiply(x if layer.rms_scaling else centered, inverse))
        if layer.scale:
            y = at("scaled", ops.multiply(y, _broadcast(layer.gamma, axes, len(x.shape))))
        if layer.center and not layer.rms_scaling:
            beta = points.as_stored(layer.beta, "centered")
            y = ops.add(y, _broadcast(beta, axes, len(x.shape)))
        return y

    return call


@_register
class LayerNormQuantizeConfig(InsideQuantizeConfig):
    """LayerNormalization as integer MEAN/SUB/MUL/RSQRT/ADD ops, a range
    after each (module docstring); `gamma` int8 per tensor.

    `quantize_input`: also a range for its input (point `input`). Inside a
    subclassed block (a KerasHub transformer layer) the input is often the
    result of a raw op of the block's `call` (`x + residual`) that no layer
    quantizes; this range makes that op integer too.
    """

    def __init__(self, num_bits_activation=8, num_bits_weight=8, quantize_input=False,
                 weight_quantizers=None):
        super().__init__(num_bits_activation, num_bits_weight, weight_quantizers)
        self.quantize_input = bool(quantize_input)

    def weight_paths(self, layer):
        return ["gamma"] if layer.scale else []

    def point_names(self, layer):
        return _steps(layer, self.quantize_input)

    def substitutions(self, layer, points):
        return [((layer, "call"), layer_norm_call(layer, points, self.quantize_input))]

    def get_config(self):
        return {**super().get_config(), "quantize_input": self.quantize_input}
