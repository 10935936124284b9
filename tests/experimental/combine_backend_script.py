"""PQAT and PCQAT train on the backend named by KERAS_BACKEND (run as a
script by test_combine_backends.py); prints one JSON line."""

import json

import keras
import numpy as np

import tfmot_lite as tfmot
from tfmot_lite.core import graph

L = keras.layers
qk = tfmot.quantization.keras
combine = tfmot.experimental.combine


def model_with_structure(rng):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(4)(x))
    centroids = np.array([-0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 0.9], "float32")
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            shape = tuple(layer.kernel.shape)
            w = centroids[rng.integers(0, len(centroids), size=shape)].reshape(-1)
            w[rng.permutation(w.size)[: w.size // 2]] = 0.0  # half zeros, 8 values
            w = w.reshape(shape)
            layer.kernel.assign(w)
    return model


def structure(model):
    """(min zero fraction, max distinct values per output channel) of the
    quantized inference kernels."""
    zeros, unique = [], []
    for _, layer in graph.iter_layers(model):
        if not hasattr(layer, "transformed_weights"):
            continue
        values = layer.transformed_weights(False)
        if not values:
            continue
        w = keras.ops.convert_to_numpy(values[0])
        zeros.append(float(np.mean(w == 0)))
        unique.append(max(len(np.unique(w[..., c])) for c in range(w.shape[-1])))
    return min(zeros), max(unique), len(zeros)


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 64).astype("int32")
    result = {"backend": keras.backend.backend()}
    for name, scheme in (("pqat", combine.Default8BitPrunePreserveQuantizeScheme()),
                         ("pcqat", combine.Default8BitClusterPreserveQuantizeScheme(True))):
        model = qk.quantize_apply(qk.quantize_annotate_model(model_with_structure(rng)),
                                  scheme)
        model.compile(keras.optimizers.Adam(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        zeros, unique, kernels = structure(model)
        result[name] = {"loss": history.history["loss"], "zeros": zeros, "unique": unique,
                        "kernels": kernels}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
