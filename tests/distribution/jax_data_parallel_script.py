"""Pruning, QAT and clustering under `keras.distribution.DataParallel` on the
JAX backend over two host devices vs. one device on the same global
batches; prints one JSON line.

Run in its own process with KERAS_BACKEND=jax and
XLA_FLAGS=--xla_force_host_platform_device_count=2 (set before JAX starts).
"""

import json
import sys

import jax
import keras
import numpy as np

import techniques

assert keras.backend.backend() == "jax"
devices = jax.devices()
distribution = keras.distribution.DataParallel(devices=devices)
result = {"replicas": len(devices)}
for name in sys.argv[1:] or list(techniques.TECHNIQUES):
    with distribution.scope():
        distributed, callbacks = techniques.build(name)
        techniques.fit(distributed, callbacks)
    # Each device's copy of every variable (replicated under DataParallel).
    replica_values = [
        [np.asarray(shard.data) for shard in var.value.addressable_shards]
        for var in distributed.variables
    ]
    single, callbacks = techniques.build(name)
    techniques.fit(single, callbacks)
    result[name] = techniques.compare(distributed, single, replica_values)
    result[name]["devices_per_variable"] = min(len(v) for v in replica_values)
    result[name]["facts"] = techniques.facts(distributed)
    result[name]["single_facts"] = techniques.facts(single)
print(json.dumps(result))
