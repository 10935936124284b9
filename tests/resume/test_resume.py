"""Interrupted and resumed training ends where an uninterrupted run ends.

A run of 3 epochs x 4 steps is killed during epoch 2 (a callback raises)
and resumed:

* with `keras.callbacks.BackupAndRestore`, listed before or after the
  technique's callbacks, into a fresh model built the same way or into the
  same in-memory model;
* from a `.keras` file saved after epoch 1 (`load_model`, then `fit` again).

The resumed run must end with the same step, masks, quantizer ranges,
centroids, weights and optimizer state as the uninterrupted run with the same
seed, for pruning, QAT and clustering.
"""

import itertools
import re

import keras
import numpy as np
import pytest
from model_builders import dense_model

from tfmot_lite.clustering import keras as clustering
from tfmot_lite.quantization import keras as quantization
from tfmot_lite.sparsity import keras as sparsity

EPOCHS, BATCH, STEPS = 3, 8, 4


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 6)).astype("float32")
    return x, rng.integers(0, 3, size=BATCH * STEPS).astype("int32")


def base_model():
    keras.utils.set_random_seed(3)
    return dense_model()


def build(technique):
    """A compiled model and the technique's own callbacks (fresh objects)."""
    model = base_model()
    callbacks = []
    if technique == "prune":
        schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=10, frequency=2)
        model = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
        callbacks = [sparsity.UpdatePruningStep()]
    elif technique == "qat":
        model = quantization.quantize_model(model)
    else:
        keras.utils.set_random_seed(4)
        model = clustering.cluster_weights(model, number_of_clusters=4)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, callbacks


class Interrupt(keras.callbacks.Callback):
    """Simulates preemption: raises during epoch `epoch`, batch `batch`."""

    def __init__(self, epoch=1, batch=2):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise InterruptedError("preempted")


def fit(model, callbacks, epochs=EPOCHS):
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=callbacks)


def name(variable):
    """The variable's path without Keras' automatic `_N` layer-name suffix
    (a second build in one process names its `quantize_layer` `..._1`)."""
    layer, _, rest = variable.path.partition("/")
    return re.sub(r"_\d+$", "", layer) + "/" + rest


def final_state(model):
    """Every model variable in order (names differ between builds only by
    Keras' automatic suffixes) and the optimizer's step and slots."""
    values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.variables]
    names = [name(v) for v in model.variables]
    optimizer = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
    return names, values, optimizer


def facts(model):
    """The technique's own state, for readable failures."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, sparsity.PruneLowMagnitude):
            out[f"{layer.name}.step"] = int(keras.ops.convert_to_numpy(layer.pruning_step))
            mask = keras.ops.convert_to_numpy(layer.masks[0])
            out[f"{layer.name}.sparsity"] = round(float(1 - mask.mean()), 4)
    for v in model.non_trainable_variables:
        if v.path.endswith(("_min", "_max")):
            out[name(v)] = np.round(keras.ops.convert_to_numpy(v), 5).tolist()
    for v in model.trainable_variables:
        if "centroids" in v.path:
            out[name(v)] = np.round(keras.ops.convert_to_numpy(v), 5).tolist()
    return out


_REFERENCE = {}


def reference(technique):
    if technique not in _REFERENCE:
        model, callbacks = build(technique)
        fit(model, callbacks)
        _REFERENCE[technique] = final_state(model), facts(model)
    return _REFERENCE[technique]


def assert_same_end(model, technique):
    (names, values, optimizer), expected_facts = reference(technique)
    got_names, got_values, got_optimizer = final_state(model)
    assert facts(model) == expected_facts
    assert got_names == names
    for path, a, b in zip(names, got_values, values):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=path)
    assert len(got_optimizer) == len(optimizer)
    for a, b in zip(got_optimizer, optimizer):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


TECHNIQUES = ["prune", "qat", "cluster"]


@pytest.mark.slow
def test_reference_run_did_its_job():
    (_, _, optimizer), prune_facts = reference("prune")
    steps = [v for k, v in prune_facts.items() if k.endswith(".step")]
    assert steps == [EPOCHS * STEPS] * 2  # tfmot's clock: N steps run, step N
    # 0.8 of the 48 hidden and 24 head weights: round(38.4) and round(19.2) zeros.
    assert [v for k, v in prune_facts.items() if k.endswith(".sparsity")] == [
        round(38 / 48, 4), round(19 / 24, 4)
    ]
    assert int(optimizer[0]) == EPOCHS * STEPS  # optimizer iterations
    _, qat_facts = reference("qat")
    assert any(k.endswith("output_max") for k in qat_facts)
    _, cluster_facts = reference("cluster")
    assert sum("centroids" in k for k in cluster_facts) == 2


# The fast tier runs one case each for QAT and clustering (the pruning clock
# tests resume pruning); the slow tier runs them all.
FAST = {("same_model", "backup_first", "qat"), ("same_model", "backup_first", "cluster")}


@pytest.mark.parametrize("resume_into, order, technique", [
    pytest.param(*case, id="-".join(case),
                 marks=() if case in FAST else pytest.mark.slow)
    for case in itertools.product(["fresh_model", "same_model"],
                                  ["backup_first", "backup_last"], TECHNIQUES)
])
def test_backup_and_restore_resumes_exactly(technique, order, resume_into, tmp_path):
    def callbacks(own):
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        return [backup] + own if order == "backup_first" else own + [backup]

    model, own = build(technique)
    with pytest.raises(InterruptedError):
        fit(model, callbacks(own) + [Interrupt(epoch=1, batch=2)])
    if resume_into == "fresh_model":
        model, own = build(technique)
    else:
        _, own = build(technique)  # new callback objects, as a restarted script has
    fit(model, callbacks(own))
    assert_same_end(model, technique)


@pytest.mark.slow
@pytest.mark.parametrize("technique", TECHNIQUES)
def test_reload_from_keras_file_resumes_exactly(technique, tmp_path):
    model, own = build(technique)
    fit(model, own, epochs=1)
    model.save(tmp_path / "after_epoch_1.keras")
    del model
    loaded = keras.models.load_model(tmp_path / "after_epoch_1.keras")
    _, own = build(technique)
    fit(loaded, own, epochs=EPOCHS - 1)
    assert_same_end(loaded, technique)
