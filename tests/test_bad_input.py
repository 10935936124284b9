"""A catalogue of bad input: every entry point refuses it cleanly.

Each case calls one public function (pruning, QAT, clustering, export) with
one bad argument or one bad model and checks that

* the exception has the documented type (ValueError, unless noted);
* the message names the argument or the layer at fault;
* the message says how to fix it;
* the input model is unchanged afterwards (every weight compared).

CLI cases (`tfmot_lite.cli.main`) check for one clean line on stderr, a
non-zero exit status, no traceback, and that the input file is unchanged.
"""

import dataclasses
import os
from typing import Callable

import keras
import numpy as np
import pytest
from model_builders import dense_model

from tfmot_lite import cli
from tfmot_lite import export
from tfmot_lite.clustering import keras as cluster
from tfmot_lite.quantization import keras as quant
from tfmot_lite.sparsity import keras as sparsity

# -- tiny models --------------------------------------------------------------


def conv_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="tiny_cnn")


def with_bad_value(value, layer="hidden", weight="kernel", index=(1, 2)):
    def build():
        model = dense_model()
        var = getattr(model.get_layer(layer), weight)
        values = keras.ops.convert_to_numpy(var).copy()
        values[index] = value
        var.assign(values)
        return model

    return build


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3, name="inner")

    def call(self, x):
        return self.dense(x)


def subclassed_model():
    model = Subclassed(name="custom_model")
    model(np.zeros((1, 6), "float32"))
    return model


class Scale(keras.layers.Layer):
    """A custom layer with a weight that no technique knows."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w


def custom_layer_model():
    inputs = keras.Input((6,))
    x = Scale(name="scale")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="custom")


def pruned_model():
    return sparsity.prune_low_magnitude(dense_model())


def clustered_model():
    return cluster.cluster_weights(dense_model(), number_of_clusters=3)


def quantized_model():
    return quant.quantize_model(dense_model())


def annotated_model():
    return quant.quantize_annotate_model(dense_model())


# -- the catalogue ------------------------------------------------------------


@dataclasses.dataclass
class Case:
    id: str
    model: Callable  # builds the input model
    call: Callable  # call(model) must raise
    names: tuple  # the argument or layer the message must name
    fix: tuple  # words of the fix the message must give
    error: type = ValueError

    def __repr__(self):
        return self.id


prune = sparsity.prune_low_magnitude
CS, PD = sparsity.ConstantSparsity, sparsity.PolynomialDecay
NAN_FIX = ("np.nan_to_num", "checkpoint")

CASES = [
    # -- pruning: arguments ---------------------------------------------------
    Case("prune-m_by_n-float", dense_model, lambda m: prune(m, sparsity_m_by_n=(2.5, 4)),
         ("sparsity_m_by_n",), ("(2, 4)",)),
    Case("prune-m_by_n-m-equals-n", dense_model, lambda m: prune(m, sparsity_m_by_n=(4, 4)),
         ("sparsity_m_by_n",), ("0 < m < n", "(2, 4)")),
    Case("prune-m_by_n-triple", dense_model, lambda m: prune(m, sparsity_m_by_n=(2, 4, 8)),
         ("sparsity_m_by_n",), ("(2, 4)",)),
    Case("prune-m_by_n-string", dense_model, lambda m: prune(m, sparsity_m_by_n="2:4"),
         ("sparsity_m_by_n",), ("(2, 4)",)),
    Case("prune-m_by_n-with-blocks", dense_model,
         lambda m: prune(m, sparsity_m_by_n=(2, 4), block_size=(1, 2)),
         ("sparsity_m_by_n", "block_size"), ("block_size=(1, 1)",)),
    Case("schedule-frequency-float", dense_model,
         lambda m: prune(m, pruning_schedule=PD(0.1, 0.5, 0, 10, frequency=2.5)),
         ("frequency",), ("whole number",)),
    Case("schedule-frequency-string", dense_model,
         lambda m: prune(m, pruning_schedule=CS(0.5, 0, frequency="10")),
         ("frequency",), ("whole number",)),
    Case("schedule-frequency-zero", dense_model,
         lambda m: prune(m, pruning_schedule=PD(0.1, 0.5, 0, 10, frequency=0)),
         ("frequency",), ("> 0",)),
    Case("schedule-sparsity-string", dense_model,
         lambda m: prune(m, pruning_schedule=CS("0.5", 0)),
         ("target_sparsity",), ("target_sparsity=0.5",)),
    Case("schedule-sparsity-one", dense_model,
         lambda m: prune(m, pruning_schedule=CS(1.0, 0)),
         ("target_sparsity",), ("[0, 1)", "target_sparsity=0.5")),
    Case("schedule-sparsity-negative", dense_model,
         lambda m: prune(m, pruning_schedule=PD(-0.1, 0.5, 0, 10)),
         ("initial_sparsity",), ("initial_sparsity=0.5",)),
    Case("schedule-sparsity-nan", dense_model,
         lambda m: prune(m, pruning_schedule=PD(0.1, float("nan"), 0, 10)),
         ("final_sparsity",), ("final_sparsity=0.5",)),
    Case("schedule-begin-negative", dense_model,
         lambda m: prune(m, pruning_schedule=CS(0.5, -1)), ("begin_step",), (">= 0",)),
    Case("schedule-end-before-begin", dense_model,
         lambda m: prune(m, pruning_schedule=CS(0.5, 10, end_step=5)),
         ("end_step", "begin_step"), ("-1 to prune until training ends",)),
    Case("schedule-open-end-polynomial", dense_model,
         lambda m: prune(m, pruning_schedule=PD(0.1, 0.5, 0, -1)),
         ("end_step",), ("must be set",)),
    Case("schedule-begin-float", dense_model,
         lambda m: prune(m, pruning_schedule=CS(0.5, 1.5)), ("begin_step",), ("whole number",)),
    Case("schedule-power-zero", dense_model,
         lambda m: prune(m, pruning_schedule=PD(0.1, 0.5, 0, 10, power=0)),
         ("power",), ("power=3",)),
    Case("prune-schedule-not-a-schedule", dense_model,
         lambda m: prune(m, pruning_schedule=0.5), ("pruning_schedule",), ("ConstantSparsity",)),
    Case("prune-block-size-zero", dense_model, lambda m: prune(m, block_size=(0, 4)),
         ("block_size",), ("block_size=(1, 4)",)),
    Case("prune-block-size-int", dense_model, lambda m: prune(m, block_size=4),
         ("block_size",), ("block_size=(1, 4)",)),
    Case("prune-block-pooling", dense_model, lambda m: prune(m, block_pooling_type="MEAN"),
         ("block_pooling_type",), ("'AVG' or 'MAX'",)),
    Case("prune-policy-string", dense_model, lambda m: prune(m, pruning_policy="xnnpack"),
         ("pruning_policy",), ("PruneForLatencyOnXNNPack()",)),
    Case("prune-block-on-conv-kernel", conv_model, lambda m: prune(m, block_size=(2, 2)),
         ("conv",), ("block_size=(1, 1)",)),
    Case("prune-model-kwargs", dense_model, lambda m: prune(m, name="p"),
         ("name",), ("pruning a single layer",)),
    # -- pruning: models ------------------------------------------------------
    Case("prune-nan-kernel", with_bad_value(np.nan), prune, ("hidden", "kernel"), NAN_FIX),
    Case("prune-inf-bias", with_bad_value(np.inf, "head", "bias", (0,)), prune,
         ("head", "bias"), NAN_FIX),
    Case("prune-subclassed", subclassed_model, prune, ("subclassed",), ("Functional",)),
    Case("prune-unknown-layer", custom_layer_model, prune, ("scale", "Scale"),
         ("PrunableLayer",)),
    Case("prune-not-a-layer", dense_model, lambda m: prune(np.zeros(3)),
         ("to_prune",), ("Keras layer",)),
    # -- QAT ------------------------------------------------------------------
    Case("qat-pruned-unstripped", pruned_model, quant.quantize_model,
         ("prune_low_magnitude_hidden",), ("strip_pruning(model)",)),
    Case("qat-clustered-unstripped", clustered_model, quant.quantize_model,
         ("cluster_hidden",), ("strip_clustering(model)",)),
    Case("qat-apply-pruned-unstripped",
         lambda: quant.quantize_annotate_model(pruned_model()), quant.quantize_apply,
         ("prune_low_magnitude_hidden",), ("strip_pruning(model)",)),
    Case("qat-nan-kernel", with_bad_value(np.nan), quant.quantize_model,
         ("hidden", "kernel"), NAN_FIX),
    Case("qat-inf-kernel", with_bad_value(-np.inf, "head"), quant.quantize_model,
         ("head", "kernel"), NAN_FIX),
    Case("qat-subclassed", subclassed_model, quant.quantize_model,
         ("Subclassed",), ("Functional",)),
    Case("qat-already-quantized", quantized_model, quant.quantize_model,
         ("quant_hidden",), ("original float model",)),
    Case("qat-model-with-annotations", annotated_model, quant.quantize_model,
         ("annotated",), ("quantize_apply(model)",)),
    Case("qat-apply-without-annotations", dense_model, quant.quantize_apply,
         ("annotated",), ("quantize_annotate_layer",)),
    Case("qat-unknown-layer", custom_layer_model, quant.quantize_model,
         ("scale", "Scale"), ("QuantizeConfig",)),
    Case("qat-annotate-a-model", dense_model, quant.quantize_annotate_layer,
         ("quantize_annotate_layer",), ("quantize_annotate_model",)),
    Case("qat-annotate-bad-config", dense_model,
         lambda m: quant.quantize_annotate_layer(m.get_layer("hidden"), quantize_config="8bit"),
         ("quantize_config", "hidden"), ("QuantizeConfig",)),
    Case("qat-quantizer-bits", dense_model,
         lambda m: quant.quantizers.MovingAverageQuantizer(num_bits=12),
         ("num_bits",), ("between 2 and 8",)),
    Case("qat-unbuilt-model",
         lambda: keras.Sequential([keras.layers.Dense(2)], name="unbuilt"),
         quant.quantize_model, ("unbuilt",), ("Input",)),
    # -- clustering -----------------------------------------------------------
    Case("cluster-one-cluster", dense_model, lambda m: cluster.cluster_weights(m, 1),
         ("number_of_clusters",), ("at least 2",)),
    Case("cluster-float-clusters", dense_model, lambda m: cluster.cluster_weights(m, 2.5),
         ("number_of_clusters",), ("integer",)),
    Case("cluster-preserve-sparsity-two", dense_model,
         lambda m: cluster.cluster_weights(m, 2, preserve_sparsity=True),
         ("number_of_clusters",), ("at least 3",)),
    Case("cluster-unknown-init", dense_model,
         lambda m: cluster.cluster_weights(m, 4, cluster_centroids_init="kmeans"),
         ("cluster_centroids_init",), ("CentroidInitialization.KMEANS_PLUS_PLUS",)),
    Case("cluster-preserve-sparsity-string", dense_model,
         lambda m: cluster.cluster_weights(m, 4, preserve_sparsity="yes"),
         ("preserve_sparsity",), ("True or False",)),
    Case("cluster-too-many-clusters", dense_model,
         lambda m: cluster.cluster_weights(m, 30), ("head", "number_of_clusters"),
         ("Lower `number_of_clusters`",)),
    Case("cluster-subclassed", subclassed_model, lambda m: cluster.cluster_weights(m, 3),
         ("subclassed",), ("Functional",)),
    Case("cluster-unknown-layer", custom_layer_model, lambda m: cluster.cluster_weights(m, 3),
         ("scale", "Scale"), ("ClusterableLayer",)),
    Case("cluster-nan-kmeans", with_bad_value(np.nan),
         lambda m: cluster.cluster_weights(m, 3), ("hidden", "kernel"), NAN_FIX),
    Case("cluster-nan-linear", with_bad_value(np.nan),
         lambda m: cluster.cluster_weights(m, 3, cluster_centroids_init="LINEAR"),
         ("hidden", "kernel"), NAN_FIX),
    Case("cluster-inf-layer", with_bad_value(np.inf),
         lambda m: cluster.cluster_weights(m.get_layer("hidden"), 3),
         ("hidden", "kernel"), NAN_FIX),
    Case("cluster-nan-list", with_bad_value(np.nan, "head"),
         lambda m: cluster.cluster_weights(list(m.layers[1:]), 3), ("head", "kernel"), NAN_FIX),
    # -- export ---------------------------------------------------------------
    Case("export-inspect-not-tflite", dense_model,
         lambda m: export.inspect_tflite(b"this is not a flatbuffer"),
         ("flatbuffer",), ("to_tflite",)),
    Case("export-to-tflite-not-a-model", dense_model,
         lambda m: export.to_tflite(m.get_weights()), ("model",), ("keras.Model",)),
]


def snapshot(model):
    return [np.array(keras.ops.convert_to_numpy(w), copy=True) for w in model.weights]


def test_catalogue_is_large_enough():
    assert len(CASES) + len(CLI_CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case):
    model = case.model()
    before = snapshot(model)
    with pytest.raises(case.error) as raised:
        case.call(model)
    message = str(raised.value)
    for name in case.names:
        assert name in message, f"message does not name {name!r}: {message}"
    assert any(words in message for words in case.fix), (
        f"message gives no fix ({case.fix}): {message}"
    )
    after = snapshot(model)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


# -- the command line ---------------------------------------------------------


def _missing(tmp_path):
    return str(tmp_path / "missing.tflite")


def _text_file(name):
    def make(tmp_path):
        path = tmp_path / name
        path.write_text("not a model\n")
        return str(path)

    return make


CLI_CASES = [
    ("inspect-missing-file", "inspect", _missing),
    ("inspect-not-tflite", "inspect", _text_file("notes.tflite")),
    ("inspect-directory", "inspect", lambda tmp_path: str(tmp_path)),
    ("xnnpack-check-missing-file", "xnnpack-check", lambda p: str(p / "missing.keras")),
    ("xnnpack-check-tflite-file", "xnnpack-check", _text_file("model.tflite")),
    ("xnnpack-check-corrupt-keras", "xnnpack-check", _text_file("model.keras")),
]


@pytest.mark.parametrize(
    "command,make_path", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_bad_input(command, make_path, tmp_path, capsys):
    path = make_path(tmp_path)
    content = open(path, "rb").read() if os.path.isfile(path) else None
    with pytest.raises(SystemExit) as exited:
        cli.main([command, path])
    assert exited.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert os.path.basename(path) in lines[0], lines[0]
    if content is not None:
        assert open(path, "rb").read() == content
