"""JAX: an eager call of a pure tensor function as one compiled program.

On JAX each eager `keras.ops` call runs as an XLA program of its own,
compiled the first time it meets an op, shape and dtype. The integer
arithmetic a QAT model's inference runs (`kernel_arithmetic`) and its
fake-quant rounding are dozens of small ops per layer: the first eager
call of the suite's QAT transformer block compiled some 450 programs, 34 s
on a CPU (about 55 ms each), before a second call took 0.9 s.

`compiled` runs such a function through `jax.jit` instead: one program per
function and set of shapes, the arguments named in `static` (bit widths,
flags, counts) part of its key. Under a trace (`jit`, a training or
predict step) the jitted function is inlined into the caller's program, as
it was written. On TensorFlow and PyTorch the function runs as written.

Only for functions of tensors and such settings: nothing read from Python
state while they run (a context variable, a Keras variable not passed in)
is looked at again once a shape has been compiled.
"""

import functools
import inspect

import keras


def compiled(*static):
    """Decorator: on JAX, `fn` runs as `jax.jit(fn, static_argnames=static)`,
    Keras variables among its arguments passed as their values."""

    def decorate(fn):
        signature = inspect.signature(fn)
        jitted = []

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if keras.backend.backend() != "jax":
                return fn(*args, **kwargs)
            if not jitted:
                import jax

                jitted.append(jax.jit(fn, static_argnames=static))
            bound = signature.bind(*args, **kwargs)
            return jitted[0](**{name: _value(value) for name, value in bound.arguments.items()})

        return call

    return decorate


def _value(argument):
    """A Keras variable's value (in a stateless scope, the scope's), else
    the argument itself."""
    if isinstance(argument, keras.Variable):
        return keras.ops.convert_to_tensor(argument)
    return argument
