"""Prunes, clusters and quantizes (QAT) a model whose layers sit inside a
subclassed block, and a KerasHub ViT when keras-hub is installed, on the
Keras backend named by KERAS_BACKEND: trains, saves, reloads, strips.
Prints one JSON line of results."""

import importlib.util
import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite.core import graph, techniques  # noqa: E402
from sublayer_models import user_block, vit_classifier  # noqa: E402

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
quantization = tfmot.quantization.keras

TECHNIQUES = {
    "prune": (lambda m: sparsity.prune_low_magnitude(
        m, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1)),
        sparsity.strip_pruning),
    "cluster": (lambda m: clustering.cluster_weights(m, number_of_clusters=4),
                clustering.strip_clustering),
    "qat": (quantization.quantize_model, quantization.strip_quantization),
}


def run(builder, technique_names):
    keras.utils.set_random_seed(0)
    model, x = builder()
    y = np.arange(len(x)) % 3
    results = {}
    for name in technique_names:
        apply, strip = TECHNIQUES[name]
        wrapped = apply(model)
        wrapped.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        callbacks = [sparsity.UpdatePruningStep()] if name == "prune" else []
        history = wrapped.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
        out = keras.ops.convert_to_numpy(wrapped(x))
        path = os.path.join(tempfile.mkdtemp(), "m.keras")
        wrapped.save(path)
        loaded = keras.models.load_model(path)
        stripped = strip(wrapped)
        results[name] = {
            "inner_wrapped": sum(
                1 for path, layer in graph.iter_layers(wrapped)
                if techniques.technique_of(layer) is not None and "/" in path),
            "finite": bool(np.isfinite(history.history["loss"]).all()),
            "reload_diff": float(np.abs(keras.ops.convert_to_numpy(loaded(x)) - out).max()),
            "strip_diff": float(np.abs(keras.ops.convert_to_numpy(stripped(x)) - out).max()),
            "output_range": float(out.max() - out.min()),
        }
    return results


report = {"backend": keras.backend.backend(),
          "user_block": run(user_block, ["prune", "cluster", "qat"])}
if importlib.util.find_spec("keras_hub") is not None:
    report["vit"] = run(vit_classifier, ["prune", "cluster"])
print(json.dumps(report))
