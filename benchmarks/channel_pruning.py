"""Channel pruning + shrink: size, MACs and LiteRT latency before and after.

For MobileNetV2 (alpha 0.35 and 1.0, 96x96, weights=None) and the digits CNN
(`tfmot_lite.example_models.build_cnn`): prune 50% of the channels of every prunable
group with `prune_channels` (L2 importance with BatchNorm gamma folded in;
masks set once by `UpdatePruningStep`, no training: latency does not depend
on the weights' values), `shrink`, and export dense and shrunk models to
float and int8 (post-training, representative data drawn at random) .tflite.

Latency: LiteRT's interpreter (XNNPACK, 1 thread), one example. Rounds
interleave the four flatbuffers of a model in a shuffled order; each round
records the median of `--runs` invocations; the table shows the median over
rounds and the shrunk/dense ratio. Also printed: `os.getloadavg()` at start
and end (this machine is shared).

    python benchmarks/channel_pruning.py
    python benchmarks/channel_pruning.py --models digits_cnn --rounds 3
"""

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite import export  # noqa: E402
from tfmot_lite.example_models import build_cnn, mobilenet_v2  # noqa: E402
from tfmot_lite.sparsity import keras as sparsity  # noqa: E402


MODELS = {
    "mobilenet_v2_0.35": (lambda: mobilenet_v2(0.35), (96, 96, 3)),
    "mobilenet_v2_1.0": (lambda: mobilenet_v2(1.0), (96, 96, 3)),
    "digits_cnn": (build_cnn, (32, 32, 3)),
}


def prune_and_shrink(model, target):
    pruned = sparsity.prune_channels(model, sparsity.ConstantSparsity(target, 0, frequency=1))
    callback = sparsity.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    callback.on_train_batch_begin(0)
    return sparsity.shrink(pruned, return_summary=True)


def to_int8(model, samples):
    import tensorflow as tf

    return export.to_tflite(
        model, optimizations=[tf.lite.Optimize.DEFAULT], representative_data=samples,
        inference_input_type=tf.int8, inference_output_type=tf.int8,
    )


def interleaved_latency(flatbuffers, sample, rounds, runs, seed=0):
    """`{name: [round medians in us]}`, rounds in shuffled order."""
    order = list(flatbuffers)
    rng = random.Random(seed)
    times = {name: [] for name in order}
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            times[name].append(
                export.measure_latency(flatbuffers[name], sample, runs=runs, warmup=10)
            )
    return times


def benchmark(name, rounds, runs, target):
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    dense = build()
    start = time.perf_counter()
    shrunk, summary = prune_and_shrink(dense, target)
    prune_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    samples = rng.uniform(size=(16, *shape)).astype("float32")
    flatbuffers = {
        "dense float": export.to_tflite(dense),
        "shrunk float": export.to_tflite(shrunk),
        "dense int8": to_int8(dense, samples),
        "shrunk int8": to_int8(shrunk, samples),
    }
    times = interleaved_latency(flatbuffers, samples[0], rounds, runs)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "summary": summary,
        "prune_and_shrink_s": prune_s,
        "bytes": {k: len(v) for k, v in flatbuffers.items()},
        "latency_us": medians,
        "rounds_us": times,
    }


def format_row(r):
    s, b, t = r["summary"], r["bytes"], r["latency_us"]
    cells = [r["model"]]
    cells.append(f"{s.params_before:,} -> {s.params_after:,} ({s.params_ratio:.2f}x)")
    cells.append(f"{s.macs_before / 1e6:.1f}M -> {s.macs_after / 1e6:.1f}M ({s.macs_ratio:.2f}x)")
    for kind in ("float", "int8"):
        dense, shrunk = b[f"dense {kind}"], b[f"shrunk {kind}"]
        cells.append(f"{dense / 1024:.0f}K -> {shrunk / 1024:.0f}K ({shrunk / dense:.2f}x)")
    for kind in ("float", "int8"):
        dense, shrunk = t[f"dense {kind}"], t[f"shrunk {kind}"]
        cells.append(f"{dense:.0f} -> {shrunk:.0f} us ({shrunk / dense:.2f}x)")
    return cells


def format_table(results):
    header = [
        "model", "params", "MACs", ".tflite float", ".tflite int8",
        "latency float", "latency int8",
    ]
    rows = [header] + [format_row(r) for r in results]
    lines = export.text_table(rows).split("\n")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of channels")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50, help="invocations per round")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    results = []
    for name in args.models:
        result = benchmark(name, args.rounds, args.runs, args.sparsity)
        results.append(result)
        rounds = {k: [round(v) for v in vs] for k, vs in result["rounds_us"].items()}
        print(f"{name}: per-round medians (us): {rounds}", flush=True)
    load_end = os.getloadavg()
    print()
    print(
        f"{int(args.sparsity * 100)}% of channels pruned per group, LiteRT 1 thread, "
        f"{args.rounds} interleaved rounds x {args.runs} runs, median of round "
        f"medians; load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end, "
        f"{os.cpu_count()} CPUs"
    )
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
