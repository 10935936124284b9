"""Pruning, QAT and clustering under tf.distribute.MirroredStrategy over two
logical CPUs vs. one device on the same global batches; prints one JSON line.

Run in its own process: logical devices must be set before TF initializes.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import techniques  # noqa: E402

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = {"replicas": strategy.num_replicas_in_sync}
for name in sys.argv[1:] or list(techniques.TECHNIQUES):
    with strategy.scope():
        distributed, callbacks = techniques.build(name)
    techniques.fit(distributed, callbacks)
    replica_values = [
        [v.numpy() for v in strategy.experimental_local_results(var.value)]
        for var in distributed.variables
    ]
    single, callbacks = techniques.build(name)
    techniques.fit(single, callbacks)
    result[name] = techniques.compare(distributed, single, replica_values)
    result[name]["facts"] = techniques.facts(distributed)
    result[name]["single_facts"] = techniques.facts(single)
print(json.dumps(result))
