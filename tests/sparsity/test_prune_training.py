import glob

import keras
import numpy as np
import pytest
from tfmot_lite.example_models import build_cnn as small_cnn

from tfmot_lite.core import graph
from tfmot_lite.sparsity import keras as sparsity


def wrappers(model):
    return [l for _, l in graph.iter_layers(model) if isinstance(l, sparsity.PruneLowMagnitude)]


def mask_sparsity(wrapper):
    return float(1 - np.asarray(wrapper.masks[0]).mean())


def mlp():
    inputs = keras.Input((12,))
    inner = keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, activation="relu")], name="inner")
    x = inner(inputs)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def compiled(model):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_masks_follow_the_schedule(tiny_data):
    x, y = tiny_data  # 64 samples, batch 8: 8 steps per epoch
    schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=12, frequency=4)
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), schedule))
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(mask_sparsity(wrappers(pruned)[1]))

    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0,
               callbacks=[sparsity.UpdatePruningStep(), Record()])
    expected = []
    current = 0.0
    for step in range(1, 17):  # tfmot's clock: the first training step is step 1
        should, value = schedule(step)
        if bool(np.asarray(should)):
            current = float(np.asarray(value))
        expected.append(current)
    # Masks meet the schedule's sparsity up to one weight of rounding.
    np.testing.assert_allclose(seen, expected, atol=1 / (32 * 32))
    assert int(np.asarray(wrappers(pruned)[0].pruning_step)) == 16  # steps run


def test_training_without_the_callback_is_an_error(tiny_data):
    x, y = tiny_data
    pruned = compiled(sparsity.prune_low_magnitude(mlp()))
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        pruned.fit(x, y, epochs=1, verbose=0)


def test_strip_removes_every_wrapper_and_predicts_identically(tiny_data):
    x, y = tiny_data
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), sparsity.ConstantSparsity(0.7, 0, frequency=3)))
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    assert not wrappers(stripped)
    assert all(type(l).__module__.startswith("keras") for _, l in graph.iter_layers(stripped))
    assert np.abs(stripped.predict(x, verbose=0) - pruned.predict(x, verbose=0)).max() <= 1e-6
    for _, layer in graph.iter_layers(stripped):
        if isinstance(layer, keras.layers.Dense):
            assert (np.asarray(layer.kernel) == 0).mean() == pytest.approx(0.7, abs=0.02)
    assert wrappers(pruned)  # strip did not touch its input


def test_save_and_load_keep_masks_and_step_and_resume_the_schedule(tiny_data, tmp_path):
    x, y = tiny_data
    schedule = sparsity.PolynomialDecay(0.1, 0.9, begin_step=0, end_step=24, frequency=2)
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), schedule))
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    for a, b in zip(wrappers(pruned), wrappers(loaded)):
        np.testing.assert_array_equal(np.asarray(a.masks[0]), np.asarray(b.masks[0]))
        assert int(np.asarray(b.pruning_step)) == 8
        assert b.pruning_schedule == schedule
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    # A fresh optimizer (iterations = 0) still resumes at step 9, not 1.
    compiled(loaded).fit(x, y, batch_size=8, epochs=3, verbose=0,
                         callbacks=[sparsity.UpdatePruningStep()])
    assert int(np.asarray(wrappers(loaded)[0].pruning_step)) == 32
    assert mask_sparsity(wrappers(loaded)[1]) == pytest.approx(0.9, abs=1 / 1024)


def test_block_and_m_by_n_patterns_survive_training(tiny_data):
    x, y = tiny_data
    block = compiled(sparsity.prune_low_magnitude(
        mlp(), sparsity.ConstantSparsity(0.5, 0, frequency=2), block_size=(4, 4)))
    block.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    kernel = np.asarray(sparsity.strip_pruning(block).layers[-2].kernel)  # 32x32
    tiles = (kernel.reshape(8, 4, 8, 4) != 0).sum(axis=(1, 3))
    assert (tiles == 0).sum() == 32  # half of the 64 tiles are entirely zero

    nm = compiled(sparsity.prune_low_magnitude(mlp(), sparsity_m_by_n=(2, 4)))
    nm.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    for _, layer in graph.iter_layers(sparsity.strip_pruning(nm)):
        if isinstance(layer, keras.layers.Dense) and layer.kernel.shape[0] % 4 == 0:
            assert sparsity.is_pruned_m_by_n(layer.kernel, (2, 4)), layer.name


def read_scalars(log_dir, run="train"):
    import tensorflow as tf

    scalars = {}
    for path in glob.glob(f"{log_dir}/{run}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def test_pruning_summaries_write_tfmot_tags_on_the_iteration_axis(tiny_data, tmp_path):
    x, y = tiny_data  # batch 16: 4 steps per epoch
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), sparsity.ConstantSparsity(0.6, 0, frequency=1)))
    log_dir = str(tmp_path / "logs")
    pruned.fit(x, y, batch_size=16, epochs=2, verbose=0,
               callbacks=[sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir)])
    # tfmot's tags: `<mask variable>/sparsity`, `<threshold variable>/threshold`
    # in <log_dir>/metrics, at optimizer.iterations, from the start of each epoch.
    metrics = read_scalars(log_dir, "metrics")
    masks = sorted(t for t in metrics if t.endswith("_mask/sparsity"))
    assert len(masks) == 3 and len([t for t in metrics if t.endswith("_threshold/threshold")]) == 3
    assert "prune_low_magnitude_dense_1/kernel_mask/sparsity" in masks, masks
    steps, values = zip(*metrics[masks[0]])
    assert steps == (0, 4, 8)
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.6, abs=0.01)
    # The same values grouped under pruning/, beside the usual TensorBoard logs.
    train = read_scalars(log_dir)
    grouped = [t for t in train if t.startswith("pruning/")]
    assert len(grouped) == 6
    assert [s for s, _ in train[next(t for t in grouped if t.endswith("/sparsity"))]] == [0, 4, 8]
    assert "epoch_loss" in train


def test_pruning_summaries_with_integer_update_freq_use_one_step_axis(tiny_data, tmp_path):
    x, y = tiny_data
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), sparsity.ConstantSparsity(0.6, 0, frequency=1)))
    log_dir = str(tmp_path / "logs")
    pruned.fit(x, y, batch_size=16, epochs=2, verbose=0,
               callbacks=[sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir, update_freq=3)])
    for run in ("metrics", "train"):
        scalars = read_scalars(log_dir, run)
        tag = next(t for t in scalars if t.endswith("/sparsity"))
        steps = [s for s, _ in scalars[tag]]
        # Epoch starts (0, 4), every 3rd batch (3, 6) and the end (8); each
        # step once, all in optimizer iterations (no epoch numbers mixed in).
        assert steps == sorted(set(steps)) == [0, 3, 4, 6, 8], (run, steps)


def test_pruning_summaries_name_the_extra_when_tensorboard_is_missing(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"tfmot-lite\[tensorboard\]"):
        sparsity.PruningSummaries(str(tmp_path))


@pytest.mark.slow
def test_digits_cnn_pruned_to_75_percent_keeps_accuracy(digits32):
    (x, y), (xt, yt) = digits32
    keras.utils.set_random_seed(1)
    dense = small_cnn()
    dense.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    dense.fit(x, y, batch_size=32, epochs=8, verbose=0)
    dense_acc = dense.evaluate(xt, yt, verbose=0)[1]

    steps = int(np.ceil(len(x) / 32))
    pruned = sparsity.prune_low_magnitude(
        dense, sparsity.PolynomialDecay(0.25, 0.75, begin_step=0, end_step=3 * steps, frequency=steps // 3))
    pruned.compile(keras.optimizers.Adam(1e-3),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    stripped.compile(metrics=["accuracy"], loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned_acc = stripped.evaluate(xt, yt, verbose=0)[1]

    for layer in stripped.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            assert (np.asarray(layer.kernel) == 0).mean() == pytest.approx(0.75, abs=0.005)
    assert dense_acc > 0.85
    assert pruned_acc >= dense_acc - 0.02, (dense_acc, pruned_acc)
    assert np.abs(stripped.predict(xt, verbose=0) - pruned.predict(xt, verbose=0)).max() <= 1e-6
