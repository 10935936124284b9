"""The converter's double arithmetic where the backend computes in float64
(`integer_grid.widest_float`), against numpy's: a range's step, a kernel's
int32 bias, LiteRT's 31-bit multipliers (on JAX without x64 the step and
bias of the float32 emulation, and no multipliers). Run on each backend,
and under JAX with x64 on, where Keras' `floor` and its result type of
float64 and float32 compute in float32. Prints one JSON line."""

import json

import keras
import numpy as np

from tfmot_lite.quantization.integer_grid import range_bias_integers, range_scale, widest_float
from tfmot_lite.quantization.kernel_arithmetic import _quantized_multiplier

rng = np.random.default_rng(0)
n = 20000
lows = -rng.uniform(0.0, 4.0, n).astype("float32")
highs = rng.uniform(0.5, 8.0, n).astype("float32")
max_abs = rng.uniform(1e-3, 2.0, n).astype("float32")
input_step = (highs.astype("float64") - lows) / 255
step_misses = int(np.sum(keras.ops.convert_to_numpy(range_scale(lows, highs))
                         != input_step.astype("float32")))
double_step = input_step * (max_abs.astype("float64") / 127)
biases = (rng.normal(0, 1e5, n) * double_step).astype("float32")
quotients = biases / double_step
expected = np.sign(quotients) * np.floor(np.abs(quotients) + 0.5)
bias_misses = int(np.sum(keras.ops.convert_to_numpy(
    range_bias_integers(biases, lows, highs, max_abs)) != expected))
multiplier_misses = None  # float32 multipliers where the backend has no float64
if widest_float() == "float64":
    reals = rng.uniform(1e-4, 10.0, 10000)
    m, exponent = _quantized_multiplier(keras.ops.convert_to_tensor(reals, "float64"))
    fraction, expected_exponent = np.frexp(reals)
    multiplier_misses = int(
        np.sum(keras.ops.convert_to_numpy(m) != np.floor(fraction * 2.0 ** 31 + 0.5))
        + np.sum(keras.ops.convert_to_numpy(exponent) != expected_exponent))
print(json.dumps({"backend": keras.backend.backend(), "widest_float": widest_float(),
                  "step_misses": step_misses, "bias_misses": bias_misses,
                  "multiplier_misses": multiplier_misses}))
