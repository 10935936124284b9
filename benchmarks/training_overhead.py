"""Training-step overhead of each technique against plain Keras.

Builds MobileNetV2 (alpha 0.5, 96x96, weights=None) twice in one process:
plain, and prepared by a technique (pruning, QAT or clustering). Rounds
alternate between the two models, each round timing `--steps` training steps
through `model.fit` (callbacks included, as users run it). Printed: per-round
step times (wall clock and process CPU time), the medians, and their ratios; then the bytes the model's
variables hold (masks, indices and ranges are the memory a technique adds).

    python benchmarks/training_overhead.py --technique prune
    python benchmarks/training_overhead.py --technique qat --rounds 7
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def mobilenet_v2():
    return keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.5, weights=None, classes=10,
        classifier_activation=None,
    )


def prepare_prune(model):
    from tfmot_lite.sparsity import keras as sparsity

    pruned = sparsity.prune_low_magnitude(
        model,
        pruning_schedule=sparsity.PolynomialDecay(0.25, 0.75, 0, 1000, frequency=100),
    )
    return pruned, [sparsity.UpdatePruningStep()]


def prepare_qat(model):
    from tfmot_lite.quantization import keras as quantization

    return quantization.quantize_model(model), []


def prepare_cluster(model):
    from tfmot_lite.clustering import keras as clustering

    return clustering.cluster_weights(model, number_of_clusters=16), []


TECHNIQUES = {"prune": prepare_prune, "qat": prepare_qat, "cluster": prepare_cluster}


def state_bytes(model):
    """Bytes held in the model's variables (weights, masks, indices, ranges)."""
    return sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.variables
    )


def time_steps(model, dataset, steps, callbacks):
    """Wall-clock and process CPU seconds per step of `model.fit`.

    CPU time (all threads) is the steadier figure on a shared machine: a
    throttled or preempted process waits without accruing it.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--technique", choices=sorted(TECHNIQUES), default="prune")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch_size * 4, 96, 96, 3)).astype("float32")
    y = rng.integers(0, 10, size=len(x))

    import tensorflow as tf

    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size, drop_remainder=True)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )

    plain = mobilenet_v2()
    optimized, callbacks = TECHNIQUES[args.technique](mobilenet_v2())
    runs = {"plain": (plain, []), args.technique: (optimized, callbacks)}
    for model, _ in runs.values():
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    # Warm-up: trace and compile both training steps.
    for name, (model, cbs) in runs.items():
        time_steps(model, dataset, 3, cbs)

    times = {name: {"wall": [], "cpu": []} for name in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            model, cbs = runs[name]
            wall, cpu = time_steps(model, dataset, args.steps, cbs)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
        base, tech = times["plain"], times[args.technique]
        print(
            f"round {r + 1}: wall plain {base['wall'][-1] * 1e3:.1f} / "
            f"{args.technique} {tech['wall'][-1] * 1e3:.1f} ms/step "
            f"({tech['wall'][-1] / base['wall'][-1]:.3f}x); cpu plain "
            f"{base['cpu'][-1] * 1e3:.1f} / {args.technique} "
            f"{tech['cpu'][-1] * 1e3:.1f} ms/step "
            f"({tech['cpu'][-1] / base['cpu'][-1]:.3f}x)",
            flush=True,
        )
    print(
        f"\nMobileNetV2 alpha=0.5, 96x96, batch {args.batch_size}, backend "
        f"{keras.backend.backend()}, {os.cpu_count()} CPUs, {args.rounds} rounds "
        f"of {args.steps} steps"
    )
    for clock in ("wall", "cpu"):
        plain_t = times["plain"][clock]
        tech_t = times[args.technique][clock]
        ratios = [t / p for t, p in zip(tech_t, plain_t)]
        plain_ms = statistics.median(plain_t) * 1e3
        tech_ms = statistics.median(tech_t) * 1e3
        print(
            f"{args.technique} {clock}: median {tech_ms:.1f} vs plain "
            f"{plain_ms:.1f} ms/step -> {tech_ms / plain_ms:.3f}x "
            f"(median of per-round ratios {statistics.median(ratios):.3f}x)"
        )
    plain_mb, tech_mb = state_bytes(plain) / 2**20, state_bytes(optimized) / 2**20
    print(
        f"model state: plain {plain_mb:.2f} MiB, {args.technique} {tech_mb:.2f} MiB "
        f"-> {tech_mb / plain_mb:.2f}x (variables only, before the optimizer's slots)"
    )


if __name__ == "__main__":
    main()
