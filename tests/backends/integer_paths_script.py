"""The integer inference paths on the Keras backend named by KERAS_BACKEND:
load the QAT model the test saved on TensorFlow (TFMOT_LITE_REFERENCE, a
folder with `m.keras`, its inputs `x.npy` and TensorFlow's outputs
`tensorflow.npy`), predict (under `jit` on JAX) and call it eagerly,
count the outputs that differ from TensorFlow's; and the range step of
random ranges, int32 biases and stored constants, traced where the backend
traces, against the converter's.
Prints one JSON line."""

import json
import os
import pathlib
import sys

import keras
import numpy as np

from tfmot_lite.quantization.integer_grid import (
    bias_integers, exact_quotient, range_bias_integers, range_scale, range_scale_error,
    stored_constant, symmetric_scale, symmetric_scale_error,
)

folder = pathlib.Path(os.environ["TFMOT_LITE_REFERENCE"])
model = keras.models.load_model(folder / "m.keras")
x = np.load(folder / "x.npy")
reference = np.load(folder / "tensorflow.npy")
predicted = model.predict(x, verbose=0)
called = keras.ops.convert_to_numpy(model(x, training=False))

rng = np.random.default_rng(0)
lows = -np.abs(rng.normal(size=20000) * 10.0 ** rng.uniform(-4, 2, 20000)).astype("float32")
highs = np.abs(rng.normal(size=20000) * 10.0 ** rng.uniform(-4, 2, 20000)).astype("float32")
step, quotient, kernel_step = range_scale, exact_quotient, symmetric_scale
if keras.backend.backend() == "jax":
    import jax

    step = jax.jit(range_scale, static_argnums=(2, 3))
    quotient, kernel_step = jax.jit(exact_quotient), jax.jit(symmetric_scale)
misses = {}
for bits, narrow in ((8, False), (8, True), (16, False)):
    levels = 2 ** bits - 1 - narrow
    converter = ((highs.astype("float64") - lows.astype("float64")) / levels).astype("float32")
    ours = keras.ops.convert_to_numpy(step(lows, highs, bits, narrow))
    misses[f"{bits}{'n' if narrow else ''}"] = int(np.sum(ours != converter))
# A vector over a scalar (a multiplier per channel), and a kernel's step:
# divisions XLA would turn into multiplications by the rounded inverse.
divided = {"by_scalar": sum(
    int(np.sum(keras.ops.convert_to_numpy(quotient(highs, keras.ops.convert_to_tensor(d)))
               != (highs.astype("float64") / np.float64(d)).astype("float32")))
    for d in -lows[:20])}
divided["kernel_step"] = int(np.sum(keras.ops.convert_to_numpy(kernel_step(highs))
                                    != (highs.astype("float64") / 127).astype("float32")))

# The int32 bias over the converter's double steps, traced where the
# backend traces: XLA would simplify the exact products' splitting away.
def converter_bias(bias, low, high, max_abs):
    return bias_integers(bias, range_scale(low, high), symmetric_scale(max_abs), 32,
                         range_scale_error(low, high), symmetric_scale_error(max_abs))


bias_call = converter_bias
if keras.backend.backend() == "jax":
    bias_call = jax.jit(converter_bias)
max_abs = np.abs(rng.normal(size=20000)).astype("float32") + 1e-3
double_step = ((highs.astype("float64") - lows) / 255) * (max_abs.astype("float64") / 127)
biases = (rng.normal(0, 1e5, 20000) * double_step).astype("float32")
quotients = biases / double_step
expected = np.sign(quotients) * np.floor(np.abs(quotients) + 0.5)
bias_misses = int(np.sum(keras.ops.convert_to_numpy(bias_call(biases, lows, highs, max_abs))
                         != expected))
# What a layer calls: in double where the backend has float64, else the
# emulation above.
range_bias_call = jax.jit(range_bias_integers) if keras.backend.backend() == "jax" \
    else range_bias_integers
range_bias_misses = int(np.sum(keras.ops.convert_to_numpy(
    range_bias_call(biases, lows, highs, max_abs)) != expected))

# Constants a few ulps from a half step, stored as TensorFlow's FakeQuant
# kernel rounds them (each step rounded as written, under `jit` too).
import tensorflow as tf  # noqa: E402  (the reference kernel)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from quantization.test_integer_inference import _near_half_steps  # noqa: E402

constant_call = jax.jit(stored_constant) if keras.backend.backend() == "jax" else stored_constant
constant_misses = 0
for _ in range(20):
    values = _near_half_steps(rng, 1000)
    low, high = min(values.min(), 0.0), max(values.max(), 0.0)
    folded = tf.quantization.fake_quant_with_min_max_vars(values, low, high).numpy()
    integers, step = constant_call(values)
    constant_misses += int(np.sum(keras.ops.convert_to_numpy(integers)
                                  != np.round(folded / keras.ops.convert_to_numpy(step))))

print(json.dumps({
    "backend": keras.backend.backend(),
    "size": int(reference.size),
    "predict_differ": int(np.sum(predicted != reference)),
    "call_differ": int(np.sum(called != reference)),
    "range_step_misses": misses,
    "quotient_misses": divided,
    "bias_misses": bias_misses,
    "range_bias_misses": range_bias_misses,
    "constant_misses": constant_misses,
}))
