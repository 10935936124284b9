"""Trains, prunes and strips a small model (Dense + LSTM) on the Keras
backend named by KERAS_BACKEND; prints one JSON line of results."""

import json

import keras
import numpy as np

from tfmot_lite.sparsity import keras as sparsity

inputs = keras.Input((12,))
x = keras.layers.Dense(32, activation="relu")(inputs)
x = keras.layers.LSTM(8)(keras.layers.Reshape((4, 8))(x))
model = keras.Model(inputs, keras.layers.Dense(3)(x))
schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=12, frequency=4)
pruned = sparsity.prune_low_magnitude(model, schedule)
pruned.compile(
    keras.optimizers.Adam(1e-2),
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
rng = np.random.default_rng(0)
xs = rng.normal(size=(64, 12)).astype("float32")
ys = rng.integers(0, 3, 64)
pruned.fit(xs, ys, batch_size=8, epochs=2, verbose=0,
           callbacks=[sparsity.UpdatePruningStep()])
stripped = sparsity.strip_pruning(pruned)
lstm = stripped.layers[3]
kernels = [stripped.layers[1].kernel, lstm.cell.kernel,
           lstm.cell.recurrent_kernel, stripped.layers[4].kernel]
print(json.dumps({
    "backend": keras.backend.backend(),
    "max_diff": float(np.abs(stripped.predict(xs, verbose=0)
                             - pruned.predict(xs, verbose=0)).max()),
    "sparsity": [float((keras.ops.convert_to_numpy(k) == 0).mean()) for k in kernels],
    "original_zeros": sum(int((keras.ops.convert_to_numpy(w) == 0).sum())
                          for w in model.get_weights()[:1]),
}))
