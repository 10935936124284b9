"""One process of a two-process JAX job: Keras' `DataParallel` over one CPU
device per process (`keras.distribution.initialize` -> JAX's distributed
runtime, gloo collectives on CPU), pruning, QAT and clustering trained with
`fit` on `techniques.data()` in global batches of `techniques.GLOBAL_BATCH`.

Each process feeds its own half of every global batch (Keras assembles the
global batch from the processes' shares, in process order). Every process
saves its copy of every variable of each technique to
`OUT/worker<id>_<technique>.npz`; process 0 also trains each technique on
its own device without the distribution and saves `OUT/single_<technique>.npz`.

    KERAS_BACKEND=jax python jax_multi_process_script.py OUT ID PORT [technique ...]
"""

import json
import os
import sys

import jax

out, process_id, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.distribution.initialize(
    job_addresses=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)

import techniques  # noqa: E402

assert keras.backend.backend() == "jax"
# Each process feeds its own share (below), already split: no auto-sharding.
distribution = keras.distribution.DataParallel(
    devices=keras.distribution.list_devices(), auto_shard_dataset=False)


def local_share():
    """This process's rows of every global batch."""
    x, y = techniques.data()
    half = techniques.GLOBAL_BATCH // 2
    rows = np.concatenate([
        np.arange(start + process_id * half, start + (process_id + 1) * half)
        for start in range(0, len(x), techniques.GLOBAL_BATCH)
    ])
    return x[rows], y[rows]


def save(values, name):
    """`values` in `model.variables` order (keys `<index>|<path>`)."""
    np.savez(os.path.join(out, name), **{
        f"{i:03d}|{path}": value for i, (path, value) in enumerate(values)})


for name in sys.argv[4:] or list(techniques.TECHNIQUES):
    with distribution.scope():
        distributed, callbacks = techniques.build(name)
        x, y = local_share()
        distributed.fit(x, y, batch_size=techniques.GLOBAL_BATCH // 2, epochs=1,
                        shuffle=False, verbose=0, callbacks=callbacks)
    # This process's copy of each (replicated) variable.
    save([(v.path, np.asarray(v.value.addressable_shards[0].data))
          for v in distributed.variables], f"worker{process_id}_{name}.npz")
    if process_id == 0:
        single, callbacks = techniques.build(name)
        techniques.fit(single, callbacks)
        save([(v.path, np.asarray(keras.ops.convert_to_numpy(v))) for v in single.variables],
             f"single_{name}.npz")
print(json.dumps({"process": process_id, "devices": len(distribution.device_mesh.devices.flat)}))
