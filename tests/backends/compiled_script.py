"""`fast.compiled` on the Keras backend named by KERAS_BACKEND: a decorated
function computes what it computes as written, with a Keras variable and
a static setting among its arguments; on JAX an eager call of it compiles
one XLA program (none when called again on the same shapes), and it runs
under `jit` and `grad`. Prints one JSON line."""

import json

import keras
import numpy as np
from keras import ops

from tfmot_lite.fast.compiled import compiled
from tfmot_lite.quantization.kernel_arithmetic import device_sum


@compiled("levels")
def rounded(x, scale, levels=255):
    return ops.clip(ops.round(ops.divide(x, scale)), -levels, levels) * scale


rng = np.random.default_rng(0)
x = rng.normal(size=(4, 7)).astype("float32")
scale = keras.Variable(np.float32(0.1))
report = {"backend": keras.backend.backend()}
as_written = keras.ops.convert_to_numpy(rounded.__wrapped__(x, scale, levels=7))
report["variable_differ"] = int(np.sum(keras.ops.convert_to_numpy(rounded(x, scale, levels=7))
                                       != as_written))
report["static_differ"] = int(np.sum(keras.ops.convert_to_numpy(rounded(x, scale))
                                     != keras.ops.convert_to_numpy(rounded.__wrapped__(x, scale))))

# An int8 ADD, XNNPACK's or the built-in kernel's (`device_sum`): its
# scalar arithmetic as one program.
a, b = (np.round(rng.uniform(-128, 127, size=(3, 5, 8))).astype("float32") for _ in "ab")
args = (a, np.float32(0.02), b, np.float32(0.03), np.float32(-4.0), np.float32(3.0))
summed = keras.ops.convert_to_numpy(device_sum(*args, activation="relu"))
report["device_sum_differ"] = int(np.sum(
    summed != keras.ops.convert_to_numpy(device_sum.__wrapped__(*args, activation="relu"))))

if keras.backend.backend() == "jax":
    import jax
    import jax.monitoring

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    y = rng.normal(size=(6, 9)).astype("float32")  # shapes not seen yet
    rounded(y, scale, levels=127)
    report["first_call_programs"] = len(compiles)
    rounded(y + 1.0, scale, levels=127)
    report["second_call_programs"] = len(compiles) - report["first_call_programs"]
    rounded.__wrapped__(y, scale, levels=63)
    report["as_written_programs"] = len(compiles) - report["first_call_programs"]
    # Inside a traced function (a training step): inlined, differentiable.
    gradient = jax.jit(jax.grad(lambda v: ops.sum(rounded(v, np.float32(0.5)) * v)))(y)
    report["gradient_finite"] = bool(np.isfinite(np.asarray(gradient)).all())
print(json.dumps(report))
