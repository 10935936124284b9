"""One worker of a two-worker `tf.distribute.MultiWorkerMirroredStrategy`
run: pruning, QAT and clustering trained on `techniques.data()` in global
batches of `techniques.GLOBAL_BATCH` (each worker gets its half of every
global batch), with a custom training loop (see `train`).

Started by `test_multi_worker.py` once per worker, with TF_CONFIG naming
both workers on loopback ports and this one's index. Every worker saves the
final value of every variable of each technique to
`OUT/worker<index>_<technique>.npz`; worker 0 (the chief) also trains each
technique on one device and saves `OUT/single_<technique>.npz`.

    python tf_multi_worker_script.py OUT [technique ...]
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG

import keras  # noqa: E402

import techniques  # noqa: E402

out = sys.argv[1]
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]


def global_batches():
    """`techniques.data()` in global batches; each worker gets its half of
    every batch (`experimental_distribute_dataset` rebatches and shards)."""
    x, y = techniques.data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(techniques.GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def train(model, callbacks, strategy):
    """One epoch of `techniques.data()` with a custom training loop, as
    tfmot's guide writes one (callbacks driven by hand). Keras 3's `fit`
    does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585:
    it reduces a distributed batch eagerly); the single-device run goes
    through the same loop, under the default strategy."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    optimizer = model.optimizer

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            per_example = loss(y, model(x, training=True))
            # The mean over the global batch: each replica's share, summed
            # by the optimizer's all-reduce of the gradients.
            value = tf.nn.compute_average_loss(per_example,
                                               global_batch_size=techniques.GLOBAL_BATCH)
        optimizer.apply(tape.gradient(value, model.trainable_variables),
                        model.trainable_variables)

    @tf.function
    def step(x, y):
        strategy.run(replica_step, args=(x, y))

    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    for batch, (x, y) in enumerate(strategy.experimental_distribute_dataset(global_batches())):
        for callback in callbacks:
            callback.on_train_batch_begin(batch=batch)
        step(x, y)
        for callback in callbacks:
            callback.on_train_batch_end(batch=batch)
    for callback in callbacks:
        callback.on_epoch_end(0)
        callback.on_train_end()


def save(model, name):
    """Every variable, in `model.variables` order (keys `<index>|<path>`:
    auto-generated layer names differ between two builds in one process)."""
    np.savez(os.path.join(out, name), **{
        f"{i:03d}|{v.path}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)})


for name in sys.argv[2:] or list(techniques.TECHNIQUES):
    with strategy.scope():
        distributed, callbacks = techniques.build(name)
        distributed.optimizer.build(distributed.trainable_variables)
    train(distributed, callbacks, strategy)
    save(distributed, f"worker{index}_{name}.npz")
    if index == 0:
        single, callbacks = techniques.build(name)
        single.optimizer.build(single.trainable_variables)
        train(single, callbacks, tf.distribute.get_strategy())
        save(single, f"single_{name}.npz")
print(json.dumps({"worker": index, "replicas": strategy.num_replicas_in_sync}))
