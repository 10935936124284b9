"""The activation fake-quant's backward pass, one way against another.

A QAT training step backpropagates through every activation fake-quant:
the upstream gradient where the input lies inside the nudged range, 0
outside. Ways TensorFlow can compute that mask, timed per call inside one
`tf.function` of 20 dependent calls, each on its own input (so nothing is
shared or folded), on activations of MobileNetV2's sizes (batch 32):

* `QuantizeAndDequantizeV4Grad`: TensorFlow's kernel, one native pass
  (what `fast.ops.fake_quant_input_gradient` runs);
* `FakeQuantWithMinMaxVarsGradient`: the op's own gradient, which also
  reduces over the tensor for the gradients of `min` and `max`;
* an XLA-compiled `where` (the previous fast path: one launch per call);
* `tf.where` of two comparisons, uncompiled;
* `Relu6Grad`, for reference: what the plain model's ReLU6 costs.

    python benchmarks/fake_quant_backward.py --rounds 15
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPES = [(32, 6, 6, 160), (32, 12, 12, 96), (32, 24, 24, 72), (32, 48, 48, 48)]
CALLS = 20


@tf.function(jit_compile=True, autograph=False)
def _xla_where(upstream, x, low, high):
    return tf.where(tf.logical_and(x >= low, x <= high), upstream, tf.zeros_like(upstream))


WAYS = {
    "QuantizeAndDequantizeV4Grad": lambda g, x, lo, hi: tf.raw_ops.QuantizeAndDequantizeV4Grad(
        gradients=g, input=x, input_min=lo, input_max=hi, axis=-1)[0],
    "FakeQuant gradient op": lambda g, x, lo, hi: tf.raw_ops.FakeQuantWithMinMaxVarsGradient(
        gradients=g, inputs=x, min=lo, max=hi)[0],
    "XLA where": _xla_where,
    "tf.where": lambda g, x, lo, hi: tf.where(tf.logical_and(x >= lo, x <= hi), g,
                                             tf.zeros_like(g)),
    "Relu6Grad (reference)": lambda g, x, lo, hi: tf.raw_ops.Relu6Grad(gradients=g, features=x),
}


def chain(way):
    """A `tf.function` of `CALLS` masked copies, each on its own input."""
    @tf.function
    def run(inputs, upstream, lo, hi):
        g = upstream
        for x in inputs:
            g = way(g, x, lo, hi)
        return g[0, 0, 0, 0]
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    lo, hi = tf.constant(-2.0), tf.constant(2.5)
    print(f"ms per call, median of {args.rounds} interleaved rounds [min-max]; "
          f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}")
    for shape in SHAPES:
        inputs = [tf.constant(rng.normal(size=shape).astype("float32")) for _ in range(CALLS)]
        upstream = tf.constant(rng.normal(size=shape).astype("float32"))
        runs = {name: chain(way) for name, way in WAYS.items()}
        for run in runs.values():
            run(inputs, upstream, lo, hi)
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run(inputs, upstream, lo, hi).numpy()
                times[name].append((time.perf_counter() - start) * 1e3 / CALLS)
        print(f"{'x'.join(map(str, shape))} ({np.prod(shape):,} values)")
        for name, values in times.items():
            print(f"  {name:28s} {np.median(values):7.3f} [{min(values):.3f}-{max(values):.3f}]")


if __name__ == "__main__":
    sys.exit(main())
