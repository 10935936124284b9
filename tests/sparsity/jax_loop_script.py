"""A JAX custom training loop (stateless_call + jax.grad) that drives
UpdatePruningStep by hand, as tfmot's guide drives it around a GradientTape
step; prints one JSON line. Run with KERAS_BACKEND=jax."""

import json

import jax
import keras
import numpy as np

from tfmot_lite.sparsity import keras as sparsity

keras.utils.set_random_seed(0)
model = sparsity.prune_low_magnitude(
    keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)]),
    sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=8, frequency=2),
)
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
optimizer = keras.optimizers.Adam(1e-2)
optimizer.build(model.trainable_variables)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 12)).astype("float32")
y = rng.integers(0, 3, 64)


def compute_loss(trainable, non_trainable, xb, yb):
    logits, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
    return loss(yb, logits), non_trainable


grad_fn = jax.jit(jax.value_and_grad(compute_loss, has_aux=True))

step_callback = sparsity.UpdatePruningStep()
step_callback.set_model(model)
step_callback.on_train_begin()
seen = []
for epoch in range(2):
    for i in range(4):
        step_callback.on_train_batch_begin(batch=-1)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        xb, yb = x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]
        (_, non_trainable), grads = grad_fn(trainable, non_trainable, xb, yb)
        trainable, optimizer_vars = optimizer.stateless_apply(
            [v.value for v in optimizer.variables], grads, trainable)
        for variable, value in zip(model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, optimizer_vars):
            variable.assign(value)
        seen.append(float(1 - np.asarray(model.layers[0].masks[0]).mean()))
    step_callback.on_epoch_end(batch=-1)

print(json.dumps({
    "backend": keras.backend.backend(),
    "pruning_step": [int(np.asarray(l.pruning_step)) for l in model.layers],
    "mask_sparsity_per_step": seen,
    "kernel_zeros": float((np.asarray(model.layers[0].layer.kernel) == 0).mean()),
}))
