"""tfmot's pruning clock: when masks change, by `fit`, by hand, and on resume.

Expected values are computed here from tfmot's documented rules, not from
tfmot-lite's schedules: the k-th training step is step k (1, 2, ...); masks
are updated before step k trains when `begin_step <= k`, `k <= end_step`
(or `end_step == -1`) and `(k - begin_step) % frequency == 0`; PolynomialDecay
gives `final + (initial - final) * (1 - p) ** power` with
`p = clip((k - begin_step) / (end_step - begin_step), 0, 1)`.
"""

import keras
import numpy as np
import pytest
from model_builders import mlp

from tfmot_lite.core import graph
from tfmot_lite.sparsity import keras as sparsity


def wrappers(model):
    return [l for _, l in graph.iter_layers(model) if isinstance(l, sparsity.PruneLowMagnitude)]


def compiled(model):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def tfmot_sparsity_after_each_step(kind, steps, begin_step, end_step, frequency, **values):
    """The sparsity the masks hold while step k = 1..steps trains (tfmot)."""
    current, out = 0.0, []
    for k in range(1, steps + 1):
        in_range = k >= begin_step and (end_step == -1 or k <= end_step)
        if in_range and (k - begin_step) % frequency == 0:
            if kind == "constant":
                current = values["target"]
            else:
                p = min(max((k - begin_step) / (end_step - begin_step), 0.0), 1.0)
                current = values["final"] + (values["initial"] - values["final"]) * (
                    1 - p) ** values.get("power", 3)
        out.append(current)
    return out


def exact(sparsity_value, size):
    """The exact-count mask's sparsity for `size` weights."""
    return round(sparsity_value * size) / size


class RecordMasks(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        mask = np.asarray(wrappers(self.model)[0].masks[0])
        self.seen.append(float(1 - mask.mean()))


CASES = [
    # A run shorter than the frequency does not prune; frequency=10 -> step 10.
    (sparsity.ConstantSparsity(0.5, begin_step=0, frequency=10),
     ("constant", dict(begin_step=0, end_step=-1, frequency=10, target=0.5))),
    (sparsity.ConstantSparsity(0.7, begin_step=3, end_step=9, frequency=3),
     ("constant", dict(begin_step=3, end_step=9, frequency=3, target=0.7))),
    (sparsity.PolynomialDecay(0.2, 0.8, begin_step=2, end_step=11, frequency=3),
     ("poly", dict(begin_step=2, end_step=11, frequency=3, initial=0.2, final=0.8))),
    (sparsity.PolynomialDecay(0.1, 0.9, begin_step=0, end_step=16, power=2, frequency=1),
     ("poly", dict(begin_step=0, end_step=16, frequency=1, initial=0.1, final=0.9, power=2))),
]


@pytest.mark.parametrize("schedule, rule", CASES, ids=["const-f10", "const-3-9-f3", "poly-2-11-f3", "poly-f1"])
def test_fit_updates_masks_on_tfmots_steps(tiny_data, schedule, rule):
    x, y = tiny_data  # batch 8: 8 steps per epoch, 16 in all
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), schedule))
    record = RecordMasks()
    pruned.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
               callbacks=[sparsity.UpdatePruningStep(), record])
    kind, params = rule
    size = 12 * 32
    expected = [exact(s, size) for s in tfmot_sparsity_after_each_step(kind, 16, **params)]
    np.testing.assert_allclose(record.seen, expected, atol=1e-6)
    assert [int(np.asarray(w.pruning_step)) for w in wrappers(pruned)] == [16, 16]


def test_frequency_10_first_prunes_for_the_tenth_step(tiny_data):
    x, y = tiny_data
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), sparsity.ConstantSparsity(0.5, 0, frequency=10)))
    pruned.fit(x[:72], y[:72], batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert int(np.asarray(wrappers(pruned)[0].pruning_step)) == 8
    assert float(np.asarray(wrappers(pruned)[0].masks[0]).mean()) == 1.0  # 8 < 10 steps: dense
    pruned.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert float(np.asarray(wrappers(pruned)[0].masks[0]).mean()) == pytest.approx(0.5)


def test_n_by_m_masks_are_set_at_step_one_and_kept(tiny_data):
    x, y = tiny_data
    pruned = compiled(sparsity.prune_low_magnitude(mlp(), sparsity_m_by_n=(2, 4)))
    record = RecordMasks()
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep(), record])
    assert record.seen == [0.5] * 8
    assert sparsity.is_pruned_m_by_n(sparsity.strip_pruning(pruned).layers[0].kernel, (2, 4))


def test_gradient_tape_loop_driven_by_hand_matches_fit(tiny_data, tmp_path):
    """The pruning comprehensive guide's custom training loop, as written."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("GradientTape loop: TensorFlow backend")
    x, y = tiny_data
    schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=6, frequency=2)

    keras.utils.set_random_seed(3)
    by_fit = compiled(sparsity.prune_low_magnitude(mlp(), schedule))
    by_fit.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    by_fit.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])

    keras.utils.set_random_seed(3)
    model_for_pruning = sparsity.prune_low_magnitude(mlp(), schedule)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD(0.1)
    unused_arg = -1
    model_for_pruning.optimizer = optimizer
    step_callback = sparsity.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = sparsity.PruningSummaries(log_dir=str(tmp_path))
    log_callback.set_model(model_for_pruning)

    step_callback.on_train_begin()
    for _ in range(2):
        log_callback.on_epoch_begin(epoch=unused_arg)
        for i in range(4):
            step_callback.on_train_batch_begin(batch=unused_arg)
            xb, yb = x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]
            with tf.GradientTape() as tape:
                logits = model_for_pruning(xb, training=True)
                loss_value = loss(yb, logits)
                grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)

    for a, b in zip(wrappers(by_fit), wrappers(model_for_pruning)):
        assert int(np.asarray(b.pruning_step)) == int(np.asarray(a.pruning_step)) == 8
        np.testing.assert_array_equal(np.asarray(a.masks[0]), np.asarray(b.masks[0]))
        # on_epoch_end set the pruned weights to zero, as tfmot's does.
        kernel = np.asarray(b.layer.kernel)
        assert (kernel == 0).mean() == pytest.approx(0.8, abs=1 / kernel.size)
    assert (tmp_path / "metrics").is_dir()


class KillAt(keras.callbacks.Callback):
    """Raises before global training step `step` (1-based) runs."""

    def __init__(self, step):
        super().__init__()
        self.step, self.count = step, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.count += 1
        if self.count == self.step:
            raise RuntimeError("preempted")


def fresh(seed=0):
    keras.utils.set_random_seed(seed)
    schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=8, frequency=1)
    return compiled(sparsity.prune_low_magnitude(mlp(), schedule))


def state(model):
    w = wrappers(model)
    return (
        [int(np.asarray(x.pruning_step)) for x in w],
        [np.asarray(x.masks[0]) for x in w],
        [np.asarray(v) for v in model.trainable_variables],
    )


RESUME_FIT = dict(batch_size=8, epochs=3, shuffle=False, verbose=0)  # 4 steps per epoch


def resume_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 12)).astype("float32"), rng.integers(0, 3, size=32).astype("int32")


@pytest.fixture(scope="module")
def uninterrupted():
    model = fresh()
    model.fit(*resume_data(), callbacks=[sparsity.UpdatePruningStep()], **RESUME_FIT)
    steps, masks, weights = state(model)
    assert steps == [12, 12]
    assert 1 - masks[0].mean() == pytest.approx(0.8, abs=1 / masks[0].size)
    return steps, masks, weights


@pytest.mark.parametrize("order", ["pruning_first", "backup_first"])
@pytest.mark.parametrize("restart", ["fresh_model", "same_model"])
def test_backup_and_restore_resumes_pruning_exactly(uninterrupted, tmp_path, order, restart):
    x, y = resume_data()
    fit = RESUME_FIT

    def callbacks(*extra):
        pair = [sparsity.UpdatePruningStep(), keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))]
        if order == "backup_first":
            pair.reverse()
        return pair + list(extra)

    steps, masks, weights = uninterrupted

    model = fresh()
    with pytest.raises(RuntimeError, match="preempted"):
        model.fit(x, y, callbacks=callbacks(KillAt(7)), **fit)  # mid epoch 2
    assert state(model)[0] == [6, 6]
    if restart == "fresh_model":
        model = fresh(seed=1)  # other initial weights: all must come from the backup
    model.fit(x, y, callbacks=callbacks(), **fit)
    got_steps, got_masks, got_weights = state(model)
    assert got_steps == steps
    for a, b in zip(got_masks, masks):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got_weights, weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_sequential_without_input_is_built_by_fit_and_pruned(tiny_data):
    x, y = tiny_data
    for model in (
        sparsity.prune_low_magnitude(keras.Sequential([keras.layers.Dense(32), keras.layers.Dense(3)]),
                                     sparsity.ConstantSparsity(0.5, 0, frequency=2)),
        keras.Sequential([sparsity.prune_low_magnitude(keras.layers.Dense(32),
                                                       sparsity.ConstantSparsity(0.5, 0, frequency=2)),
                          keras.layers.Dense(3)]),
    ):
        assert not model.built
        compiled(model).fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
        first = wrappers(model)[0]
        assert int(np.asarray(first.pruning_step)) == 8
        assert 1 - float(np.asarray(first.masks[0]).mean()) == pytest.approx(0.5)
        assert model.count_params() > 0


@pytest.mark.slow  # a JAX process: Keras alone takes seconds to import
def test_jax_stateless_loop_driven_by_hand_follows_tfmots_clock():
    """A JAX loop (stateless_call + jax.grad), in its own process."""
    import importlib.util
    import json
    import os
    import pathlib
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    script = pathlib.Path(__file__).parent / "jax_loop_script.py"
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["pruning_step"] == [8, 8]
    expected = tfmot_sparsity_after_each_step(
        "poly", 8, begin_step=0, end_step=8, frequency=2, initial=0.2, final=0.8)
    np.testing.assert_allclose(result["mask_sparsity_per_step"],
                               [exact(s, 12 * 32) for s in expected], atol=1e-6)
    assert result["kernel_zeros"] == pytest.approx(exact(0.8, 12 * 32))
