"""Where a technique's training step spends its time, op by op.

Builds MobileNetV2 (alpha 0.5, 96x96, weights=None) plain (on the
techniques' fast path: BatchNormalization fused, as `training_overhead.py`'s
"plain fused") and prepared by one technique, trains each under the backend's profiler, reads the trace (an
XSpace protobuf on both backends) and sums the time of every op type on the
compute threads:

* TensorFlow: `model.train_step` in a `tf.function` under
  `tf.profiler.experimental`; op types are TensorFlow ops (`Conv2D`,
  `FusedBatchNormV3`, `FakeQuantWithMinMaxVars`, ...); also counts the ops
  of each traced training graph.
* JAX (`KERAS_BACKEND=jax`): `model.fit` (the jitted step, callbacks
  included) under `jax.profiler.trace`; op types are the XLA CPU thunks of
  the compiled step with their numeric suffix removed (`ynn_fusion`,
  `convolution-base-dilated`, `broadcast_multiply_fusion`, ...).

The two models alternate `--repeats` times and each op type keeps its
smallest time, which filters out most of what other processes steal on a
shared machine. Printed: the total op time per step of both models and the
op types whose time or count differs most, i.e. what the technique adds.
Compare the two columns of one run, not figures across runs; use
`benchmarks/training_overhead.py` for wall-clock step times.

    python benchmarks/profile_training.py --technique qat
    python benchmarks/profile_training.py --technique cluster --steps 10 --top 20
    python benchmarks/profile_training.py --technique qat --inter-op-threads 1
    KERAS_BACKEND=jax python benchmarks/profile_training.py --technique prune
    python benchmarks/profile_training.py --steps 1 --repeats 1 --blocks 3    # a smoke run
"""

import argparse
import collections
import glob
import os
import re
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mobilenet_blocks  # noqa: E402
from tfmot_lite.example_models import mobilenet_v2  # noqa: E402


def prepare(technique, blocks=None):
    model = mobilenet_v2(0.5, blocks=blocks)
    if technique == "plain":
        # The honest baseline: the plain model on the techniques' fast path
        # (each BatchNormalization fused, as every technique's rewrite does).
        from tfmot_lite.core import graph

        return graph.rewrite(model, graph.training_layer)
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


def _read_trace(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def _tf_op_type(line_name, event_name):
    # Kernels run on the executor's threads; 'python' holds the enclosing
    # function call and the Eigen pool its shards.
    if not line_name.startswith("tf_Compute"):
        return None
    op_type = event_name.rsplit(":", 1)[-1]
    return None if op_type == "Process" else op_type  # the per-batch wrapper


def _xla_op_type(line_name, event_name):
    # XLA:CPU runs the compiled step's thunks on its Eigen pool threads.
    if (not line_name.startswith("tf_XLAEigen") or event_name.startswith("ThunkExecutor")
            or event_name.endswith("::Await")):  # waiting, not computing
        return None
    return re.sub(r"\.\d+$", "", event_name)


def op_times(run, steps):
    """`{op type: (ms per step, ops per step)}` from a profiler trace of
    `run()`, which trains `steps` steps."""
    logdir = tempfile.mkdtemp(prefix="tfmot_lite_profile_")
    if keras.backend.backend() == "jax":
        import jax

        with jax.profiler.trace(logdir):
            run()
        op_type = _xla_op_type
    else:
        import tensorflow as tf

        tf.profiler.experimental.start(logdir)
        run()
        tf.profiler.experimental.stop()
        op_type = _tf_op_type
    total, count = collections.Counter(), collections.Counter()
    for plane in _read_trace(logdir).planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                kind = op_type(line.name, plane.event_metadata[event.metadata_id].name)
                if kind is not None:
                    total[kind] += event.duration_ps
                    count[kind] += 1
    return {k: (total[k] / 1e9 / steps, count[k] / steps) for k in total}


def _fastest(profiles):
    """Per op type, the smallest time over repeated profiles."""
    kinds = set().union(*profiles)
    return {
        k: min((p[k] for p in profiles if k in p), key=lambda v: v[0]) for k in kinds
    }


def trainer(name, batch, steps, blocks=None):
    """`(run, graph op counts or None)` for the model `name`: `run()` trains
    it for `steps` steps (warmed up)."""
    model = prepare(name, blocks)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        step = tf.function(model.train_step)
        graph = graph_ops(step, batch)

        def run():
            for _ in range(steps):
                step(batch)
    else:
        graph = None
        x = np.concatenate([batch[0]] * steps)
        y = np.concatenate([batch[1]] * steps)
        callbacks = []
        if name == "prune":
            from tfmot_lite.sparsity import keras as sparsity

            callbacks = [sparsity.UpdatePruningStep()]

        def run():
            model.fit(x, y, batch_size=len(batch[1]), epochs=1, shuffle=False,
                      verbose=0, callbacks=callbacks)
    for _ in range(2):  # warm-up: trace or compile, then settle
        run()
    return run, graph


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
    parser.add_argument("--repeats", type=int, default=2,
                        help="profiles per model, alternating; each op type keeps its fastest")
    mobilenet_blocks.add_argument(parser)
    parser.add_argument("--inter-op-threads", type=int, default=None,
                        help="TensorFlow: ops run at once (1: one at a time, so no op slows "
                             "another and the op times add up to the step; default: "
                             "TensorFlow's)")
    args = parser.parse_args(argv)
    if keras.backend.backend() not in ("tensorflow", "jax"):
        parser.error("profiles are read from TensorFlow's or JAX's trace: "
                     "run with KERAS_BACKEND=tensorflow or jax")
    if args.inter_op_threads is not None:
        if keras.backend.backend() != "tensorflow":
            parser.error("--inter-op-threads is TensorFlow's executor setting")
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch = (
        rng.uniform(size=(args.batch_size, 96, 96, 3)).astype("float32"),
        rng.integers(0, 10, size=args.batch_size),
    )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        batch = tuple(tf.constant(b) for b in batch)
    names = ("plain", args.technique)
    runs, graphs = {}, {}
    for name in names:
        runs[name], graphs[name] = trainer(name, batch, args.steps, args.blocks)
    traces = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            traces[name].append(op_times(runs[name], args.steps))
    profiles = {name: _fastest(traces[name]) for name in names}

    plain, tech = profiles["plain"], profiles[args.technique]
    threads = ("" if args.inter_op_threads is None
               else f", {args.inter_op_threads} inter-op thread(s)")
    print(f"{mobilenet_blocks.label(args.blocks)} 96x96 batch {args.batch_size}, "
          f"{keras.backend.backend()} "
          f"backend{threads}; {args.repeats} x {args.steps} profiled steps per model; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if graphs["plain"] is not None:
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
