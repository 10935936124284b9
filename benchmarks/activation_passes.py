"""What one pass over QAT's fake-quantized activations costs, beside the step.

A QAT training step reads every tracked activation for its range (`Max`,
and `Min` where the tensor is not a ReLU's), rounds it (`FakeQuant`) and
masks its gradient (`QuantizeAndDequantizeV4Grad`); the plain model runs
`Relu6` and `Relu6Grad` on its ReLU6 outputs only. On a CPU each of these
passes is memory-bound, so together they put a floor under what QAT adds
to a step unless a kernel fuses them with the op that writes the tensor.

This records the shapes of the tensors QAT tracks while a QAT
MobileNetV2 (alpha 0.5, 96x96, batch 32) traces its training step, then
times each kind of pass over all of them, in one `tf.function` per kind,
in shuffled interleaved rounds with the plain fused model's training step
(`paired_steps.py`'s model) as the yardstick.

    python benchmarks/activation_passes.py --rounds 15
    python benchmarks/activation_passes.py --rounds 1 --blocks 3    # a smoke run
"""

import argparse
import os
import random
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mobilenet_blocks  # noqa: E402
from paired_steps import build  # noqa: E402
from tfmot_lite.quantization import quantizers  # noqa: E402


def _first(t):
    """One element of `t`: a scalar the pass that wrote `t` cannot be
    folded away from."""
    return tf.reshape(t, [-1])[0]


# One pass of each kind over a tensor `x` (`g` an upstream gradient of its
# shape).
PASSES = {
    "Max": lambda x, g: tf.reduce_max(x),
    "Min + Max": lambda x, g: tf.reduce_min(x) + tf.reduce_max(x),
    "FakeQuant": lambda x, g: _first(tf.quantization.fake_quant_with_min_max_vars(x, -3.0, 3.0)),
    "Relu6": lambda x, g: _first(tf.nn.relu6(x)),
    "QuantizeAndDequantizeV4Grad": lambda x, g: _first(tf.raw_ops.QuantizeAndDequantizeV4Grad(
        gradients=g, input=x, input_min=-3.0, input_max=3.0, axis=-1)[0]),
    "Relu6Grad": lambda x, g: _first(tf.raw_ops.Relu6Grad(gradients=g, features=x)),
}


def tracked_shapes(stepper, x, y):
    """`[(shape, after_relu)]` of every activation range the QAT step
    tracks, recorded while its training step traces (once)."""
    seen = []
    track = quantizers._TrackedRangeQuantizer.tracked_range

    def recording(self, inputs, weights, **kwargs):
        seen.append((tuple(inputs.shape), bool(kwargs.get("nonnegative"))))
        return track(self, inputs, weights, **kwargs)

    quantizers._TrackedRangeQuantizer.tracked_range = recording
    try:
        stepper(x, y)
    finally:
        quantizers._TrackedRangeQuantizer.tracked_range = track
    # Keras traces the step for the symbolic build and for the step itself.
    half = len(seen) // 2
    if seen[:half] == seen[half:]:
        seen = seen[:half]
    return [(shape, relu) for shape, relu in seen if shape[0] == x.shape[0]]


def over_all(kind, tensors, upstream):
    @tf.function(autograph=False)
    def run():
        return tf.add_n([PASSES[kind](t, g) for t, g in zip(tensors, upstream)])
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    mobilenet_blocks.add_argument(parser)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 96, 96, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    steppers = build(["qat"], args.blocks)
    shapes = tracked_shapes(steppers["qat"], x, y)
    tensors = [tf.constant(rng.standard_normal(s).astype("float32")) for s, _ in shapes]
    upstream = [tf.constant(rng.standard_normal(s).astype("float32")) for s, _ in shapes]
    runs = {kind: over_all(kind, tensors, upstream) for kind in PASSES}
    plain = steppers["plain fused"]
    runs["plain fused step"] = lambda: plain(x, y)
    for run in runs.values():  # trace and warm up
        run()
        run()
    times = {name: [] for name in runs}
    order = random.Random(0)
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        names = list(runs)
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            out = runs[name]()
            if out is not None:
                out.numpy()
            times[name].append((time.perf_counter() - start) * 1e3)

    values = sum(int(np.prod(s)) for s, _ in shapes)
    relu = [s for s, r in shapes if r]
    step = float(np.median(times["plain fused step"]))
    print(f"{mobilenet_blocks.label(args.blocks)}, 96x96, batch {args.batch_size}, "
          f"{keras.backend.backend()} "
          f"backend, {os.cpu_count()} CPUs; load average {load:.2f} at start; "
          f"{args.rounds} interleaved rounds")
    print(f"{len(shapes)} tracked activations, {values / 1e6:.1f}M values "
          f"({4 * values / 2 ** 20:.0f} MiB), {len(relu)} of them a ReLU's "
          f"({sum(int(np.prod(s)) for s in relu) / 1e6:.1f}M values)")
    print(f"{'over all of them':30s} {'ms, median [min-max]':>24s}   share of the plain step")
    for name, v in times.items():
        share = "" if name == "plain fused step" else f"   {np.median(v) / step:6.1%}"
        print(f"{name:30s} {np.median(v):8.2f} [{min(v):6.2f} - {max(v):6.2f}]{share}")


if __name__ == "__main__":
    sys.exit(main())
