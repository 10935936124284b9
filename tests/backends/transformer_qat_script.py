"""Quantization-aware training of transformer layers (Embedding,
LayerNormalization, MultiHeadAttention, GELU, EinsumDense, residual Adds)
in int8 (image patches) and 16x8 (tokens), and of an LSTM, on the Keras backend named by
KERAS_BACKEND: trains, saves, reloads, strips. Prints one JSON line."""

import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite.quantization.quantizers import float_activations  # noqa: E402
from quantization.test_transformer_qat import (  # noqa: E402
    SEQ, _labels, _patches, _tokens, patch_model, token_model)

quantization = tfmot.quantization.keras
SCHEMES = {"int8": quantization.Default8BitQuantizeScheme,
           "int16x8": quantization.Default16x8QuantizeScheme}


def run(builder, x, scheme):
    keras.utils.set_random_seed(0)
    qat = quantization.quantize_model(builder(), SCHEMES[scheme]())
    qat.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = qat.fit(x, _labels(x), batch_size=16, epochs=2, verbose=0)
    out = keras.ops.convert_to_numpy(qat(x))
    path = os.path.join(tempfile.mkdtemp(), "m.keras")
    qat.save(path)
    loaded = keras.models.load_model(path)
    stripped = quantization.strip_quantization(qat)
    with float_activations():
        simulated = keras.ops.convert_to_numpy(qat(x))
    loss = history.history["loss"]
    return {
        "finite": bool(np.isfinite(loss).all()),
        "loss_fell": bool(loss[-1] < loss[0]),
        "reload_diff": float(np.abs(keras.ops.convert_to_numpy(loaded(x)) - out).max()),
        "strip_diff": float(np.abs(keras.ops.convert_to_numpy(stripped(x)) - simulated).max()),
        "output_range": float(out.max() - out.min()),
    }


# Each scheme once, each input kind once: three models, not four, for CI's time.
report = {"backend": keras.backend.backend()}
report["patches_int8"] = run(patch_model, _patches(n=32), "int8")
report["tokens_int16x8"] = run(lambda: token_model(mask_zero=False), _tokens(n=32), "int16x8")


def lstm_model():
    inputs = keras.Input((SEQ, 12))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.LSTM(8)(inputs)))


report["lstm_int8"] = run(lstm_model, _patches(n=32), "int8")
print(json.dumps(report))
