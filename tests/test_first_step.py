"""The first `fit` on TensorFlow traces its training step once when the
optimizer is built first (`tfmot_lite.fast.first_step`): by
`BuildOptimizerFirst`, and by `UpdatePruningStep` for pruned models. The
training computes the same either way."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite.fast import BuildOptimizerFirst
from tfmot_lite.fast.first_step import build_optimizer

sparsity = tfmot.sparsity.keras


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(
        keras.layers.Conv2D(4, 3, use_bias=False)(inputs)))
    x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, x)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 32)


def _fit(model, callbacks):
    """(training steps traced, loss per epoch, weights after) of a
    2-epoch fit of `model`."""
    traced = []
    step = model.train_step
    model.train_step = lambda data: traced.append(1) or step(data)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    return len(traced), history.history["loss"], [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("technique", ["plain", "qat", "prune"])
def test_the_first_fit_traces_its_step_once_and_trains_the_same(technique):
    def build():
        model = _model()
        if technique == "qat":
            return tfmot.quantization.keras.quantize_model(model)
        if technique == "prune":
            return sparsity.prune_low_magnitude(
                model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=2))
        return model

    # A pruned model's UpdatePruningStep builds the optimizer itself.
    pruning = [sparsity.UpdatePruningStep()] if technique == "prune" else []
    traced_first, losses_first, weights_first = _fit(
        build(), pruning or [BuildOptimizerFirst()])
    with pytest.MonkeyPatch.context() as patch:  # Keras' own order: built in the trace
        patch.setattr("tfmot_lite.sparsity.callbacks.build_optimizer", lambda model: False)
        traced, losses, weights = _fit(build(), pruning and [sparsity.UpdatePruningStep()])
    assert (traced_first, traced) == (1, 2)
    np.testing.assert_array_equal(losses_first, losses)
    for a, b in zip(weights_first, weights):
        np.testing.assert_array_equal(a, b)


def test_left_alone_outside_fit_and_once_built():
    model = _model()
    model.compile(keras.optimizers.Adam(), "mse")
    # A custom training loop (no `fit` under way) may apply the optimizer
    # to other variables: not built for it.
    assert not build_optimizer(model)
    assert not model.optimizer.built
    model.make_train_function()
    assert build_optimizer(model)
    assert model.optimizer.built
    assert not build_optimizer(model)  # once only
    assert not build_optimizer(_model())  # not compiled: no optimizer


def test_left_alone_while_a_layer_builds_in_the_first_step():
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])  # no input shape
    model.compile(keras.optimizers.Adam(), "mse")
    model.make_train_function()
    assert not build_optimizer(model)
    model.fit(np.ones((8, 3), "float32"), np.ones((8, 2), "float32"), verbose=0,
              callbacks=[BuildOptimizerFirst()])
    assert model.optimizer.built
