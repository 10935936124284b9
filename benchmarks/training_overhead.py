"""Training-step overhead of each technique against plain Keras.

Builds MobileNetV2 (alpha 0.5, 96x96, weights=None) twice in one process:
plain, and prepared by a technique (pruning, QAT or clustering). Rounds
alternate between the two models, each round timing `--steps` training steps
through `model.fit` (callbacks included, as users run it). Printed: per-round
step times, the medians, and their ratio.

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


def time_steps(model, dataset, steps, callbacks):
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    return (time.perf_counter() - start) / steps


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

    times = {name: [] for name in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            model, cbs = runs[name]
            times[name].append(time_steps(model, dataset, args.steps, cbs))
        ratio = times[args.technique][-1] / times["plain"][-1]
        print(
            f"round {r + 1}: plain {times['plain'][-1] * 1e3:.1f} ms/step, "
            f"{args.technique} {times[args.technique][-1] * 1e3:.1f} ms/step, "
            f"ratio {ratio:.3f}x",
            flush=True,
        )
    plain_ms = statistics.median(times["plain"]) * 1e3
    tech_ms = statistics.median(times[args.technique]) * 1e3
    ratios = [t / p for t, p in zip(times[args.technique], times["plain"])]
    print(
        f"\n{args.technique}: median {tech_ms:.1f} ms/step vs plain "
        f"{plain_ms:.1f} ms/step -> {tech_ms / plain_ms:.3f}x "
        f"(median of per-round ratios {statistics.median(ratios):.3f}x; "
        f"MobileNetV2 alpha=0.5, 96x96, batch {args.batch_size}, "
        f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
