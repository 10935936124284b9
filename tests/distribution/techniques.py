"""The three techniques on tiny models, trained the same way wherever they
run: a distribution script builds each one inside its strategy's scope and
again on one device, then compares. Imported by the `*_script.py` files."""

import keras
import numpy as np

from tfmot_lite.clustering import keras as clustering
from tfmot_lite.quantization import keras as quantization
from tfmot_lite.sparsity import keras as sparsity

GLOBAL_BATCH = 8
STEPS = 6  # one epoch of 48 samples


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, size=GLOBAL_BATCH * STEPS).astype("int32")
    return x, y


def cnn(batch_norm=False):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, use_bias=not batch_norm, name="conv")(inputs)
    if batch_norm:
        # Batch statistics over the global batch, as on one device: under
        # tf.distribute that takes `synchronized`; a JAX step sees it whole.
        sync = keras.backend.backend() == "tensorflow"
        x = keras.layers.BatchNormalization(synchronized=sync, name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def prune():
    schedule = sparsity.PolynomialDecay(0.2, 0.75, begin_step=0, end_step=4, frequency=2)
    return sparsity.prune_low_magnitude(cnn(), pruning_schedule=schedule), [
        sparsity.UpdatePruningStep()
    ]


def qat():
    return quantization.quantize_model(cnn(batch_norm=True)), []


def cluster():
    keras.utils.set_random_seed(2)  # k-means++ draws
    return clustering.cluster_weights(cnn(), number_of_clusters=4), []


TECHNIQUES = {"prune": prune, "qat": qat, "cluster": cluster}


def build(name):
    model, callbacks = TECHNIQUES[name]()
    model.compile(
        keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, callbacks


def fit(model, callbacks):
    x, y = data()
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=callbacks)


def state(model):
    """`{variable path: numpy value}` for every variable of the model."""
    return {v.path: np.asarray(keras.ops.convert_to_numpy(v)) for v in model.variables}


def compare(distributed, single, replica_values):
    """Summary for the test: how far replicas and the single run differ."""
    a, b = state(distributed), state(single)
    keys_a = [k.split("/", 1)[-1] for k in a]
    keys_b = [k.split("/", 1)[-1] for k in b]
    replica_gap = 0.0
    for values in replica_values:
        for other in values[1:]:
            replica_gap = max(replica_gap, float(np.abs(other - values[0]).max(initial=0)))
    return {
        "variables": len(a),
        "same_layout": [v.shape for v in a.values()] == [v.shape for v in b.values()],
        "same_names": keys_a == keys_b,
        "replica_gap": replica_gap,
        "single_gap": max(
            float(np.abs(va - vb).max(initial=0)) for va, vb in zip(a.values(), b.values())
        ),
        "finite": all(np.isfinite(v).all() for v in a.values()),
    }


def facts(model):
    """Technique-specific values that show training did something."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, sparsity.PruneLowMagnitude):
            mask = keras.ops.convert_to_numpy(layer.masks[0])
            out[f"{layer.name}/sparsity"] = float(1.0 - mask.mean())
            out[f"{layer.name}/step"] = int(keras.ops.convert_to_numpy(layer.pruning_step))
        if isinstance(layer, clustering.ClusterWeights):
            out[f"{layer.name}/centroids"] = int(
                np.unique(keras.ops.convert_to_numpy(layer.cluster_centroids[0])).size
            )
    for v in model.non_trainable_variables:
        if v.path.endswith("output_max"):
            out[v.path] = float(np.max(keras.ops.convert_to_numpy(v)))
    return out
