"""tfmot guide `pruning/comprehensive_guide`, with `import tfmot_lite as tfmot`.

Every cell pattern of the guide: prune a whole model, some layers
(`clone_model`, Functional, Sequential with `input_shape=` on the wrapped
first layer), a custom `PrunableLayer`; train with the callbacks by `fit` and
by a GradientTape loop that drives them by hand; checkpoint to HDF5 and load
under `prune_scope`; strip and compare gzipped sizes; block sparsity.
Changed: where the test asserts a sparsity it uses `frequency=1` (the
guide's one-sample, one-step fits never reach a 100-step update).
"""

import keras
import numpy as np
import pytest
from guide_helpers import gzipped_keras_size, summary_text, total_params, zero_fraction

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow

input_shape = [20]
rng = np.random.default_rng(0)
x_train = rng.normal(size=(1, 20)).astype("float32")
y_train = keras.utils.to_categorical(rng.integers(0, 20, size=1), num_classes=20)
every_step = {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)}


def setup_model():
    return keras.Sequential([
        keras.layers.Dense(20, input_shape=input_shape),
        keras.layers.Flatten(),
    ])


@pytest.fixture(scope="module")
def pretrained_weights(tmp_path_factory):
    model = setup_model()
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, verbose=0)
    path = str(tmp_path_factory.mktemp("pretrained") / "pretrained.weights.h5")  # Keras 3 names weight files so
    model.save_weights(path)
    return path


def compile_and_fit(model, **fit):
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=0, **fit)
    return model


def test_prune_whole_model(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    assert "0 (unbuilt)" not in summary_text(model_for_pruning)
    assert total_params(model_for_pruning) == 2 * 400 + 20 + 2


def test_prune_some_layers_clone_functional_and_sequential(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)

    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **every_step)
        return layer

    cloned = keras.models.clone_model(base_model, clone_function=apply_pruning_to_dense)
    assert isinstance(cloned.layers[0], tfmot.sparsity.keras.PruneLowMagnitude)
    np.testing.assert_array_equal(np.asarray(cloned.layers[0].layer.kernel),
                                  np.asarray(base_model.layers[0].kernel))

    i = keras.Input(shape=(20,))
    x = tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(20), **every_step)(i)
    o = keras.layers.Flatten()(x)
    functional = keras.Model(inputs=i, outputs=o)

    # The first layer was given `input_shape=`: the Sequential is built.
    sequential = keras.Sequential([
        tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(20, input_shape=input_shape),
                                                 **every_step),
        keras.layers.Flatten(),
    ])
    assert sequential.built and total_params(sequential) == 2 * 400 + 20 + 2

    for model in (cloned, functional, sequential):
        compile_and_fit(model, epochs=2)
        kernel = model.layers[-2].layer.kernel if model is functional else model.layers[0].layer.kernel
        assert zero_fraction(kernel) == pytest.approx(0.5)


def test_prune_custom_layer_kernel_and_bias():
    class MyDenseLayer(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            # Prune bias also, though that usually harms model accuracy too much.
            return [self.kernel, self.bias]

    model_for_pruning = keras.Sequential([
        tfmot.sparsity.keras.prune_low_magnitude(MyDenseLayer(20, input_shape=input_shape), **every_step),
        keras.layers.Flatten(),
    ])
    assert model_for_pruning.built
    compile_and_fit(model_for_pruning, epochs=2)
    # Exact-count masks: half of the kernel and half of the bias, even though
    # the bias starts all zero (ties, ranked by position; tfmot's `|w| >= t`
    # keeps every tied weight).
    kernel_mask, bias_mask = (np.asarray(m) for m in model_for_pruning.layers[0].masks)
    assert 1 - kernel_mask.mean() == pytest.approx(0.5)
    assert 1 - bias_mask.mean() == pytest.approx(0.5)
    stripped = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert zero_fraction(stripped.layers[0].kernel) == pytest.approx(0.5)
    assert zero_fraction(stripped.layers[0].bias) >= 0.5


def test_train_with_fit_and_summaries_default_schedule_waits_100_steps(pretrained_weights, tmp_path):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    log_dir = str(tmp_path / "logs")
    callbacks = [
        tfmot.sparsity.keras.UpdatePruningStep(),
        tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir),
    ]
    model_for_pruning.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam",
                              metrics=["accuracy"])
    model_for_pruning.fit(x_train, y_train, callbacks=callbacks, epochs=2, verbose=0)
    layer = model_for_pruning.layers[0]
    # ConstantSparsity(0.5, 0) updates at step 100, 200, ...: after 2 steps,
    # as with tfmot, nothing is pruned yet.
    assert int(np.asarray(layer.pruning_step)) == 2
    assert float(np.asarray(layer.masks[0]).mean()) == 1.0
    assert (tmp_path / "logs" / "metrics").is_dir() and (tmp_path / "logs" / "train").is_dir()


def test_custom_training_loop_drives_the_callbacks_by_hand(tmp_path):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the guide's loop uses tf.GradientTape")
    base_model = setup_model()
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model, **every_step)

    # Boilerplate
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.Adam()
    log_dir = str(tmp_path)
    unused_arg = -1
    epochs = 2
    batches = 1  # example is hardcoded so that the number of batches cannot change.

    # Non-boilerplate.
    model_for_pruning.optimizer = optimizer
    step_callback = tfmot.sparsity.keras.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)
    log_callback.set_model(model_for_pruning)

    step_callback.on_train_begin()
    for _ in range(epochs):
        log_callback.on_epoch_begin(epoch=unused_arg)
        for _ in range(batches):
            step_callback.on_train_batch_begin(batch=unused_arg)
            with tf.GradientTape() as tape:
                logits = model_for_pruning(x_train, training=True)
                loss_value = loss(y_train, logits)
                grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)

    layer = model_for_pruning.layers[0]
    assert int(np.asarray(layer.pruning_step)) == 2
    assert zero_fraction(layer.layer.kernel) == pytest.approx(0.5)
    assert (tmp_path / "metrics").is_dir()


def test_checkpoint_to_hdf5_load_in_prune_scope_and_strip(pretrained_weights, tmp_path):
    model = setup_model()
    model.load_weights(pretrained_weights)
    model_for_pruning = compile_and_fit(tfmot.sparsity.keras.prune_low_magnitude(model, **every_step))
    keras_model_file = str(tmp_path / "pruned.h5")
    model_for_pruning.save(keras_model_file, include_optimizer=True)
    with tfmot.sparsity.keras.prune_scope():
        loaded_model = keras.models.load_model(keras_model_file)
    assert total_params(loaded_model) > 0
    np.testing.assert_allclose(loaded_model.predict(x_train, verbose=0),
                               model_for_pruning.predict(x_train, verbose=0), atol=1e-6)
    assert int(np.asarray(loaded_model.layers[0].pruning_step)) == 1

    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert not any(isinstance(l, tfmot.sparsity.keras.PruneLowMagnitude) for l in model_for_export.layers)
    assert total_params(model_for_export) > 0 and model_for_export.count_params() == 420
    unstripped = gzipped_keras_size(model_for_pruning, tmp_path, "unstripped")
    stripped = gzipped_keras_size(model_for_export, tmp_path, "stripped")
    assert stripped < unstripped


def test_block_sparsity_for_hardware():
    pruning_params = {"block_size": [1, 16], **every_step}
    model_for_pruning = keras.Sequential([
        tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(20, input_shape=input_shape),
                                                 **pruning_params),
        keras.layers.Flatten(),
    ])
    assert model_for_pruning.built
    compile_and_fit(model_for_pruning)
    kernel = np.asarray(model_for_pruning.layers[0].layer.kernel)  # 20 x 20, blocks of 1 x 16
    blocks = [kernel[:, :16], kernel[:, 16:]]
    zero_blocks = sum(int((b[r] == 0).all()) for b in blocks for r in range(20))
    assert zero_blocks == 20  # half of the 40 (padded) 1x16 blocks


def test_re_pruning_with_other_settings_says_to_strip_first(pretrained_weights):
    model = setup_model()
    model.load_weights(pretrained_weights)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    with pytest.raises(ValueError, match=r"strip_pruning\(model\)"):
        tfmot.sparsity.keras.prune_low_magnitude(
            pruned, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.9, 0))
    with pytest.raises(ValueError, match=r"already pruned.*strip_pruning\(layer\)"):
        tfmot.sparsity.keras.prune_low_magnitude(pruned.layers[0])
    # The same settings again keep the existing wrappers, as tfmot does.
    again = tfmot.sparsity.keras.prune_low_magnitude(pruned)
    assert isinstance(again.layers[0], tfmot.sparsity.keras.PruneLowMagnitude)
    assert not isinstance(again.layers[0].layer, tfmot.sparsity.keras.PruneLowMagnitude)
