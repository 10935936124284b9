"""The one entry path (tfmot_lite/core/entry.py) and the technique table
(tfmot_lite/core/techniques.py): every technique dispatches, checks and
refuses alike."""

import warnings

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite.core import graph, techniques
from tfmot_lite.export.strip import strip_for_export
from tfmot_lite.export.strip import techniques as technique_names

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
quantization = tfmot.quantization.keras

ENTRIES = {
    "prune_low_magnitude": (lambda m, **kw: sparsity.prune_low_magnitude(m, **kw), "to_prune"),
    "cluster_weights": (lambda m, **kw: clustering.cluster_weights(m, 4, **kw), "to_cluster"),
    "prune_channels": (lambda m, **kw: sparsity.prune_channels(m, **kw), "to_prune"),
}


def _mlp(name="mlp"):
    inputs = keras.Input((6,), name=f"{name}_in")
    x = keras.layers.Dense(8, activation="relu", name=f"{name}_d1")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name=f"{name}_d2")(x), name=name)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="my_net")
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_a_value_that_is_no_layer_names_the_argument(entry):
    fn, argument = ENTRIES[entry]
    for bad in (np.zeros(3), [keras.layers.Dense(2), "dense"]):
        with pytest.raises(ValueError, match=f"`{argument}` of `{entry}` must be a Keras layer"):
            fn(bad)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_a_subclassed_model_is_refused_with_the_way_out(entry):
    fn, _ = ENTRIES[entry]
    model = _Subclassed()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=f"`{entry}` cannot rewrite 'my_net'.*Functional API"):
        fn(model)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_wrapper_arguments_go_with_single_layers_only(entry):
    fn, _ = ENTRIES[entry]
    if entry == "prune_channels":
        pytest.skip("prune_channels takes no wrapper arguments")
    with pytest.raises(ValueError, match=r"Unexpected arguments for a model: \['name'\]"):
        fn(_mlp(), name="x")


@pytest.mark.parametrize(
    "wrap, row",
    [
        (lambda m: sparsity.prune_low_magnitude(m), techniques.PRUNING),
        (lambda m: clustering.cluster_weights(m, 4), techniques.CLUSTERING),
        (lambda m: quantization.quantize_model(m), techniques.QAT),
    ],
    ids=["pruned", "clustered", "quantized"],
)
def test_other_techniques_layers_must_be_stripped_first(wrap, row):
    """Each entry point names the strip function of what it finds, nested
    models included, and leaves the model as it was."""
    wrapped = keras.Sequential([keras.Input((6,)), wrap(_mlp("inner"))], name="outer")
    before = [w.numpy().copy() for w in wrapped.weights]
    others = {
        "prune_low_magnitude": lambda m: sparsity.prune_low_magnitude(m),
        "cluster_weights": lambda m: clustering.cluster_weights(m, 4),
        "prune_channels": lambda m: sparsity.prune_channels(m),
        "quantize_model": lambda m: quantization.quantize_model(m),
    }
    for entry, fn in others.items():
        if entry == row.entry:
            continue
        with pytest.raises(ValueError) as raised:
            fn(wrapped)
        message = str(raised.value)
        assert f"are {row.done}" in message and "'inner/" in message, message
        assert f"`{row.strip}(model)`" in message, message
    for weight, value in zip(wrapped.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_a_single_layer_of_another_technique_is_refused():
    pruned = sparsity.prune_low_magnitude(keras.layers.Dense(4))
    with pytest.raises(ValueError, match=r"is pruned.*strip_pruning\(layer\)"):
        clustering.cluster_weights(pruned, 4)
    with pytest.raises(ValueError, match=r"already pruned.*strip_pruning\(layer\)"):
        sparsity.prune_low_magnitude(pruned)


def test_the_table_knows_every_layer_a_technique_puts_in():
    model = _mlp()
    pruned = sparsity.prune_low_magnitude(model)
    clustered = clustering.cluster_weights(model, 4)
    qat = quantization.quantize_model(model)
    annotated = quantization.quantize_annotate_model(model)
    assert techniques.in_model(pruned) == {techniques.PRUNING}
    assert techniques.in_model(clustered) == {techniques.CLUSTERING}
    assert techniques.in_model(qat) == {techniques.QAT}
    assert techniques.in_model(annotated) == {techniques.QAT_ANNOTATION}
    assert techniques.in_model(model) == set()
    assert technique_names(pruned) == {"pruning"}
    assert technique_names(qat) == {"qat"}
    # Every layer of a QAT model that is not the user's own is the table's.
    assert {
        type(layer).__name__ for _, layer in graph.iter_layers(qat, operations=True)
        if techniques.technique_of(layer) is None
    } <= {"InputLayer"}


def test_strip_for_export_removes_what_the_converter_must_not_see():
    model = _mlp()
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    for wrapped in (
        sparsity.prune_low_magnitude(model),
        clustering.cluster_weights(model, 4),
        quantization.quantize_annotate_model(model),
    ):
        plain = strip_for_export(wrapped)
        assert techniques.in_model(plain) == set()
        np.testing.assert_allclose(plain.predict(x, verbose=0), wrapped.predict(x, verbose=0),
                                   atol=1e-6)
    qat = quantization.quantize_model(model)
    assert strip_for_export(qat) is qat


def test_strip_through_the_table_equals_each_strip_function():
    model = _mlp()
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    pruned = sparsity.prune_low_magnitude(model)
    np.testing.assert_array_equal(
        techniques.strip(pruned, techniques.PRUNING).predict(x, verbose=0),
        sparsity.strip_pruning(pruned).predict(x, verbose=0),
    )
    # Stripping one technique leaves another's layers alone.
    assert techniques.in_model(techniques.strip(pruned, techniques.CLUSTERING)) == {
        techniques.PRUNING
    }


def test_quantize_model_twice_gives_the_same_names():
    """The same model quantized twice gives the same layer and weight names
    (checkpoints keyed by name line up; two runs of a script agree)."""
    inner = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="inner_dense")],
        name="inner",
    )
    inputs = keras.Input((8,), name="x")
    h = inner(keras.layers.Dense(8, name="d1")(inputs))
    model = keras.Model(inputs, keras.layers.Add(name="add")([h, inputs * 2.0]), name="m")
    sequential = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="d")])

    def names(qat):
        return [p for p, _ in graph.iter_layers(qat, operations=True)] + [
            w.path for w in qat.weights
        ]

    for m in (model, sequential):
        first, second = (quantization.quantize_model(m) for _ in range(2))
        assert names(first) == names(second)
        assert "quantize_layer" in names(first)


def test_quantize_layer_names_avoid_the_models_own():
    inputs = keras.Input((4,))
    out = keras.layers.Dense(2, name="quantize_layer")(inputs)
    qat = quantization.quantize_model(keras.Model(inputs, out))
    names = [layer.name for _, layer in graph.iter_layers(qat)]
    assert len(names) == len(set(names)), names


def test_training_that_ends_before_the_first_mask_update_warns():
    """The default schedule updates every 100 steps: 16 steps leave the
    model unpruned, which is said, with the step of the first update."""
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = np.random.default_rng(1).normal(size=(64, 4)).astype("float32")
    for model in (
        keras.Sequential([keras.layers.Dense(16), keras.layers.Dense(4)]),  # no Input
        keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(4)]),
    ):
        pruned = sparsity.prune_low_magnitude(model)
        pruned.compile("sgd", "mse")
        with pytest.warns(UserWarning, match=r"after 16 steps.*first mask update is due at step 100"):
            pruned.fit(x, y, epochs=2, batch_size=8, verbose=0,
                       callbacks=[sparsity.UpdatePruningStep()])
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=4)
    )
    pruned.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned.fit(x, y, epochs=1, batch_size=8, verbose=0,
                   callbacks=[sparsity.UpdatePruningStep()])
    assert not [w for w in caught if "not pruned at all" in str(w.message)]
    kernel = sparsity.strip_pruning(pruned).layers[0].kernel.numpy()
    assert np.mean(kernel == 0) == 0.5


def test_a_schedule_that_has_ended_warns_without_searching_a_million_steps(monkeypatch):
    """A schedule whose last update is behind the steps run (its `end_step`
    passed) asks for no mask update: the warning says so from the steps up
    to `end_step`. The search had called the schedule a million times for
    each pruned layer (4 us a call: 100 of the 110 s a 2-step fit of
    MobileNetV2's first 6 blocks took)."""
    calls = []
    schedule_call = sparsity.PolynomialDecay.__call__
    monkeypatch.setattr(sparsity.PolynomialDecay, "__call__",
                        lambda self, step: calls.append(step) or schedule_call(self, step))
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=4))
    pruned.compile("sgd", "mse")
    with pytest.warns(UserWarning, match=r"after 2 steps.*it asks for no mask update"):
        pruned.fit(x, y, epochs=1, batch_size=8, verbose=0,
                   callbacks=[sparsity.UpdatePruningStep()])
    assert len(calls) < 100, len(calls)
