"""Each technique's training step against the plain model, one step at a time.

`training_overhead.py` times whole `fit` calls; on a shared 2-CPU machine a
slow phase of a few seconds lands on one model's fit and moves that
round's ratio by 10-30%. Here the models take turns step by step: every
round runs one `train_on_batch` of each model in a fresh random order
(after one untimed step each, so caches and the allocator have seen that
model just before), and the ratio is taken per round against the plain
model on the same fast path ("plain fused", BatchNormalization through
TensorFlow's fused kernel, as every technique's rewrite trains it). A
phase of load then hits all models of a round alike, and the bootstrap
interval of the median ratio is a few percent wide after ~40 rounds.

Same models as `training_overhead.py` (MobileNetV2 alpha 0.5, 96x96,
batch 32, weights=None, Adam), same batch every step, NumPy input
through `train_on_batch` (the step `fit` runs, without its loop), with
the technique's callbacks' batch hooks around it as `fit` calls them.

    python benchmarks/paired_steps.py                          # qat, cluster, prune; 40 rounds
    python benchmarks/paired_steps.py --techniques qat --rounds 60
    python benchmarks/paired_steps.py --rounds 2 --blocks 3                # a smoke run
"""

import argparse
import os
import random
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mobilenet_blocks  # noqa: E402
from stats import bootstrap_median  # noqa: E402
from training_overhead import TECHNIQUES, lite, plain_fused  # noqa: E402
from tfmot_lite.example_models import mobilenet_v2  # noqa: E402


class Stepper:
    """One model's training step as `fit` takes it: its callbacks' batch
    hooks (pruning's step counter) around `train_on_batch`."""

    def __init__(self, model, callbacks):
        self.model, self.callbacks, self.steps = model, callbacks, 0
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()

    def __call__(self, x, y):
        for callback in self.callbacks:
            callback.on_train_batch_begin(self.steps)
        self.model.train_on_batch(x, y)
        for callback in self.callbacks:
            callback.on_train_batch_end(self.steps)
        self.steps += 1


def build(techniques, blocks=None):
    """`{name: Stepper}`: 'plain fused' and each technique, compiled
    (MobileNetV2's first `blocks` blocks only where given)."""
    models = {"plain fused": (plain_fused(mobilenet_v2(0.5, blocks=blocks)), [])}
    for t in techniques:
        models[t] = lite(t, mobilenet_v2(0.5, blocks=blocks))
    for model, _ in models.values():
        model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return {name: Stepper(*pair) for name, pair in models.items()}


def paired_times(steppers, x, y, rounds, seed):
    """`{name: [ms per step, one per round]}`, the models taking turns."""
    order = random.Random(seed)
    times = {name: [] for name in steppers}
    for _ in range(rounds):
        names = list(steppers)
        order.shuffle(names)
        for name in names:
            steppers[name](x, y)
            start = time.perf_counter()
            steppers[name](x, y)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--techniques", default=",".join(TECHNIQUES),
                        help=f"comma-separated subset of {','.join(TECHNIQUES)}")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    mobilenet_blocks.add_argument(parser)
    args = parser.parse_args(argv)
    techniques = [t for t in args.techniques.split(",") if t]
    unknown = sorted(set(techniques) - set(TECHNIQUES))
    if unknown:
        parser.error(f"unknown technique(s) {', '.join(unknown)}; choose from {', '.join(TECHNIQUES)}")

    rng = np.random.default_rng(args.seed)
    x = rng.random((args.batch_size, 96, 96, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    steppers = build(techniques, args.blocks)
    for step in steppers.values():  # trace and warm up
        for _ in range(3):
            step(x, y)
    load = os.getloadavg()
    times = paired_times(steppers, x, y, args.rounds, args.seed)

    print(f"{mobilenet_blocks.label(args.blocks)}, 96x96, batch {args.batch_size}, "
          f"{keras.backend.backend()} backend, {os.cpu_count()} CPUs; {args.rounds} rounds of "
          f"one step per model; load average {load[0]:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end")
    print(f"{'model':14s} {'ms/step median [min-max]':>28s}   ratio to plain fused, median [90% CI]")
    base = np.asarray(times["plain fused"])
    boot = np.random.default_rng(args.seed)
    for name, values in times.items():
        values = np.asarray(values)
        line = f"{name:14s} {np.median(values):8.1f} [{values.min():6.1f} - {values.max():6.1f}]"
        if name != "plain fused":
            ratio = values / base
            low, high = bootstrap_median(ratio, boot)
            line += f"   {np.median(ratio):.3f} [{low:.3f}, {high:.3f}]"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
