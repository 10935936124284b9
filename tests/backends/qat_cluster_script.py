"""QAT and clustering of a small Conv-BN-ReLU CNN on the Keras backend named
by KERAS_BACKEND: train each, check the result, print one JSON line."""

import json

import keras
import numpy as np

from tfmot_lite.clustering import keras as clustering
from tfmot_lite.quantization import keras as quantization


def cnn():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def train(model):
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(xs, ys, batch_size=16, epochs=3, verbose=0)
    return history.history["loss"]


keras.utils.set_random_seed(0)  # the weights too: a loss that must fall
rng = np.random.default_rng(0)
xs = rng.normal(size=(64, 8, 8, 3)).astype("float32")
ys = rng.integers(0, 3, 64)
model = cnn()
before = [w.copy() for w in model.get_weights()]

qat = quantization.quantize_model(model)
qat_loss = train(qat)
qat_out = qat.predict(xs, verbose=0)

clustered = clustering.cluster_weights(model, number_of_clusters=4)
cluster_loss = train(clustered)
stripped = clustering.strip_clustering(clustered)
kernels = [l.kernel for l in stripped.layers if hasattr(l, "kernel")]

print(json.dumps({
    "backend": keras.backend.backend(),
    "qat_loss": [float(v) for v in qat_loss],
    "qat_finite": bool(np.isfinite(qat_out).all()),
    "cluster_loss": [float(v) for v in cluster_loss],
    "unique_values": [len(np.unique(keras.ops.convert_to_numpy(k))) for k in kernels],
    "strip_diff": float(np.abs(stripped.predict(xs, verbose=0)
                               - clustered.predict(xs, verbose=0)).max()),
    "input_untouched": all(np.array_equal(a, b)
                           for a, b in zip(before, model.get_weights())),
}))
