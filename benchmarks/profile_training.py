"""Where a technique's training step spends its time, op by op (TF backend).

Builds MobileNetV2 (alpha 0.5, 96x96, weights=None) plain and prepared by one
technique, runs `model.train_step` in a `tf.function` under the TensorFlow
profiler (`tf.profiler.experimental`), reads the trace (XSpace protobuf) and
sums the time of every TensorFlow op type executed on the compute threads.
Printed: the total op time per step of both models and the op types whose
time or count differs most, i.e. what the technique adds; plus how many ops
each traced training graph holds.

Op times are summed over threads (two cores run ops concurrently) and
include time lost to other processes on a shared machine: compare the two
columns of one run, not figures across runs. Use
`benchmarks/training_overhead.py` for wall-clock step times.

    python benchmarks/profile_training.py --technique qat
    python benchmarks/profile_training.py --technique cluster --steps 10 --top 20
"""

import argparse
import collections
import glob
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def mobilenet_v2():
    return keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.5, weights=None, classes=10,
        classifier_activation=None,
    )


def prepare(technique):
    model = mobilenet_v2()
    if technique == "plain":
        return model
    if technique == "qat":
        from tfmot_lite.quantization import keras as quantization

        return quantization.quantize_model(model)
    if technique == "prune":
        from tfmot_lite.sparsity import keras as sparsity

        pruned = sparsity.prune_low_magnitude(
            model, pruning_schedule=sparsity.PolynomialDecay(0.25, 0.75, 0, 1000, frequency=100)
        )
        # What `model.fit(callbacks=[UpdatePruningStep()])` does before training.
        callback = sparsity.UpdatePruningStep()
        callback.set_model(pruned)
        callback.on_train_begin()
        return pruned
    from tfmot_lite.clustering import keras as clustering

    return clustering.cluster_weights(model, number_of_clusters=16)


def op_times(step, batch, steps):
    """`{op type: (ms per step, ops per step)}` from a profiler trace."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="tfmot_lite_profile_")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        step(batch)
    tf.profiler.experimental.stop()
    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    total, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            # Kernels run on the executor's threads; 'python' holds the
            # enclosing function call and the Eigen pool its shards.
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1]
                if op_type == "Process":  # the executor's per-batch wrapper
                    continue
                total[op_type] += event.duration_ps
                count[op_type] += 1
    return {k: (total[k] / 1e9 / steps, count[k] / steps) for k in total}


def graph_ops(step, batch):
    """Op types in the traced training graph (before Grappler)."""
    graph = step.get_concrete_function(batch).graph
    return collections.Counter(op.type for op in graph.get_operations())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--technique", choices=["qat", "prune", "cluster"], default="qat")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps per model")
    parser.add_argument("--top", type=int, default=15, help="op types to list")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("the op-level profile reads TensorFlow's trace: run with KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch = (
        tf.constant(rng.uniform(size=(args.batch_size, 96, 96, 3)).astype("float32")),
        tf.constant(rng.integers(0, 10, size=args.batch_size)),
    )
    profiles, graphs = {}, {}
    for name in ("plain", args.technique):
        model = prepare(name)
        model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        step = tf.function(model.train_step)
        graphs[name] = graph_ops(step, batch)
        for _ in range(3):  # warm-up
            step(batch)
        profiles[name] = op_times(step, batch, args.steps)

    plain, tech = profiles["plain"], profiles[args.technique]
    print(f"MobileNetV2 alpha=0.5 96x96 batch {args.batch_size}; {args.steps} profiled steps; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"ops in the traced training graph: plain {sum(graphs['plain'].values())}, "
          f"{args.technique} {sum(graphs[args.technique].values())}")
    t_plain = sum(v[0] for v in plain.values())
    t_tech = sum(v[0] for v in tech.values())
    print(f"op time per step (summed over threads): plain {t_plain:.1f} ms, "
          f"{args.technique} {t_tech:.1f} ms ({t_tech / t_plain:.2f}x)\n")
    rows = []
    for op in set(plain) | set(tech):
        a, b = plain.get(op, (0.0, 0.0)), tech.get(op, (0.0, 0.0))
        rows.append((b[0] - a[0], op, a, b))
    rows.sort(key=lambda r: -abs(r[0]))
    print(f"{'op type':<48} {'plain ms (n)':>16} {args.technique + ' ms (n)':>18} {'diff ms':>8}")
    for diff, op, a, b in rows[: args.top]:
        print(f"{op:<48} {a[0]:8.1f} ({a[1]:4.0f}) {b[0]:10.1f} ({b[1]:4.0f}) {diff:8.1f}")


if __name__ == "__main__":
    main()
