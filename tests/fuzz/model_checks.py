"""The invariants the model fuzzer checks, per technique, on one model.

`check(recipe, technique, tmp_dir, export=...)` runs, on the model the
recipe builds:

1. wrapping (`prune_low_magnitude`, `cluster_weights`, `quantize_model`,
   `prune_channels`) either succeeds, or raises a ValueError that names a
   layer of the model the technique cannot handle (by its path inside
   nested models); any other exception is a failure, and so is an error on
   a model whose layers the technique supports;
2. the input model is never mutated: its weights, config, layer objects and
   predictions are the same after wrapping, training the wrapped model,
   stripping, saving and exporting;
3. after two training steps (masks, centroids and ranges are then
   non-trivial) `strip(wrapped)` predicts what `wrapped` predicts
   (`strip_pruning`, `strip_clustering`, `shrink`; QAT has no
   prediction-preserving strip: its fake quantization is the model);
4. `.keras` save/load without custom_objects gives the same predictions;
5. with `export`: the .tflite conversion runs, the float .tflite agrees
   with Keras to float rounding, and the int8 one (post-training int8 for
   prune/cluster/channels, the QAT model's own int8) agrees within a bound
   relative to the output range (see `INT8_RANGE_ERROR`).

Each failure is an AssertionError whose message says which invariant broke.
"""

import dataclasses
import json
import os

import keras
import numpy as np
from hypothesis import strategies as st

from tfmot_lite import export
from tfmot_lite.clustering import keras as clustering
from tfmot_lite.core import graph, layer_kinds
from tfmot_lite.export.strip import techniques as wrapper_techniques
from tfmot_lite.quantization import keras as quantization
from tfmot_lite.sparsity import keras as sparsity

TRAIN_EXAMPLES, BATCH = 8, 4  # two training steps
TEST_EXAMPLES = 16

# Float .tflite vs Keras: float32 rounding through a few layers.
FLOAT_TOLERANCE = 1e-4
# int8 .tflite vs Keras: the largest error on any output value of an
# example, as a fraction of that output's range over the test batch (widened
# to include 0, as int8 activation ranges are). One int8 step of the
# output alone is 1/255 of its range; every quantized layer on the way adds
# rounding of the same order, so a handful of layers stays well within 10%.
# A measure relative to the range (rather than top-1 agreement) does not flip
# on near-ties between the logits of an untrained head.
INT8_RANGE_ERROR = 0.1
# ... for this share of the examples: a layer that int8 represents poorly
# on some inputs (LayerNormalization over two features whose values nearly
# tie, a saturating Softmax) may miss on a few, a broken conversion (a wrong
# scale, a missed fold) misses on nearly all.
INT8_AGREEING = 0.75


def _schedule():
    # Masks at every step from the first: after two steps they are real.
    return sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1)


CLUSTERS = 3


def _no_refusal(model):
    return []


@dataclasses.dataclass(frozen=True)
class Technique:
    name: str
    wrap: object  # model -> wrapped model
    strip: object  # wrapped model -> plain model with the same predictions, or None
    callbacks: object = lambda: []
    # model -> the names (paths) of what the technique must refuse, one of
    # which its ValueError must name; [] when it must accept the model.
    refusal: object = _no_refusal
    # layer -> whether the technique can take it (the generator's filter)
    supports: object = None


def _quantize_supports(layer):
    return isinstance(layer, keras.layers.InputLayer) or layer_kinds.quantize_kind(layer) is not None


def _quantize_refusal(model):
    return [path for path, layer in graph.iter_layers(model) if not _quantize_supports(layer)]


def _cluster_refusal(model):
    """Layers with a kernel of fewer weights than clusters (a documented error)."""
    from tfmot_lite.clustering import registry

    return [
        path for path, layer in graph.iter_layers(model)
        if registry.has_clusterable_weights(layer) and any(
            int(np.prod(v.shape)) < CLUSTERS for _, v in registry.clusterable_weights(layer))
    ]


# The layers channel pruning reads channels through (README, "Channel
# pruning"): producers, channel-wise layers, activations, pooling/padding/
# dropout, merges. Written out here so that the fuzzer does not read the
# library's own table to decide what to generate.
_CHANNEL_LAYERS = tuple(getattr(keras.layers, name) for name in (
    "InputLayer Conv1D Conv2D Dense SeparableConv1D SeparableConv2D BatchNormalization "
    "DepthwiseConv1D DepthwiseConv2D Activation ReLU LeakyReLU ELU MaxPooling1D MaxPooling2D "
    "AveragePooling1D AveragePooling2D GlobalAveragePooling1D GlobalAveragePooling2D "
    "GlobalMaxPooling1D GlobalMaxPooling2D ZeroPadding1D ZeroPadding2D Cropping1D Cropping2D "
    "UpSampling1D UpSampling2D Dropout SpatialDropout1D SpatialDropout2D GaussianNoise "
    "ActivityRegularization Identity Add Subtract Multiply Average Maximum Minimum "
    "Concatenate").split())


def _channels_supports(layer):
    return isinstance(layer, _CHANNEL_LAYERS)


def _channels_refusal(model):
    """A model without a prunable channel group is refused, by name."""
    return [] if sparsity.channel_report(model).prunable else [model.name]


def _pruning(name, entry_point, strip, **kwargs):
    """A pruning technique: `entry_point(model, pruning_schedule=...)`,
    trained with `UpdatePruningStep`."""
    return Technique(name, lambda m: entry_point(m, pruning_schedule=_schedule()), strip,
                     lambda: [sparsity.UpdatePruningStep()], **kwargs)


TECHNIQUES = {
    "prune": _pruning("prune", sparsity.prune_low_magnitude, sparsity.strip_pruning),
    "cluster": Technique(
        "cluster",
        lambda m: clustering.cluster_weights(
            m, number_of_clusters=CLUSTERS,
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS),
        clustering.strip_clustering,
        refusal=_cluster_refusal,
    ),
    "qat": Technique("qat", quantization.quantize_model, None, refusal=_quantize_refusal,
                     supports=_quantize_supports),
    "channels": _pruning("channels", sparsity.prune_channels, sparsity.shrink,
                         refusal=_channels_refusal, supports=_channels_supports),
}


def rich_example(technique):
    """The hand-written model (`model_strategies.RICH`) for `technique`."""
    from model_strategies import RICH, recipe_from_code

    return recipe_from_code(RICH["any" if TECHNIQUES[technique].supports is None else "conv"])


def technique_models(technique, max_steps=6):
    """The models to fuzz `technique` with: any model, or, for a technique
    that refuses most random models (QAT: no sequence layers; channel
    pruning: channels reaching layers it does not read are kept), three in
    four made of the layers it takes, so that most examples get wrapped."""
    from model_strategies import layer_from_source, models

    supports = TECHNIQUES[technique].supports
    if supports is None:
        return models(None, max_steps)

    def allowed(source):
        return supports(layer_from_source(source))

    restricted = models(allowed, max_steps)
    return st.one_of(restricted, restricted, restricted, models(None, max_steps))


# -- snapshots --------------------------------------------------------------


def _config_text(model):
    return json.dumps(model.get_config(), sort_keys=True, default=repr)


def _outputs(model, x):
    """Inference outputs as a list of NumPy arrays (one per model output)."""
    y = model(x, training=False)
    y = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in y]


@dataclasses.dataclass
class _Snapshot:
    weights: list
    config: str
    layers: list
    outputs: list

    @classmethod
    def of(cls, model, x):
        return cls(
            [np.array(w, copy=True) for w in model.get_weights()],
            _config_text(model),
            [(id(layer), type(layer)) for _, layer in graph.iter_layers(model)],
            _outputs(model, x),
        )

    def assert_same(self, model, x, when):
        now = _Snapshot.of(model, x)
        assert now.layers == self.layers, f"the input model's layers changed ({when})"
        assert now.config == self.config, f"the input model's config changed ({when})"
        assert len(now.weights) == len(self.weights), f"input weights added/removed ({when})"
        for i, (a, b) in enumerate(zip(self.weights, now.weights)):
            assert a.shape == b.shape and np.array_equal(a, b), (
                f"the input model's weight {i} changed ({when})")
        for a, b in zip(self.outputs, now.outputs):
            np.testing.assert_array_equal(a, b, err_msg=f"input model predicts differently ({when})")


# -- properties --------------------------------------------------------------


def _check_wrap_error(error, model, technique):
    """The error of a model that cannot be wrapped: a ValueError naming
    (by path) a layer the technique cannot handle."""
    if not isinstance(error, ValueError):
        raise AssertionError(
            f"{technique.name}: wrapping raised {type(error).__name__} (not a ValueError "
            f"naming the layer): {error}") from error
    refused = technique.refusal(model)
    message = str(error)
    if not refused:
        raise AssertionError(
            f"{technique.name}: wrapping a model of supported layers raised: {message}"
        ) from error
    assert any(path in message for path in refused), (
        f"{technique.name}: the error names none of the unsupported layers {refused}: {message}")


def _close(a, b, tolerance, what):
    for i, (u, v) in enumerate(zip(a, b)):
        scale = 1.0 + float(np.max(np.abs(u), initial=0.0))
        error = float(np.max(np.abs(u - v), initial=0.0))
        assert error <= tolerance * scale, (
            f"{what}: output {i} differs by {error:.3g} (scale {scale:.3g})")


def _train(model, recipe, technique, eager):
    model.compile(
        keras.optimizers.Adam(0.01),
        [keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(recipe.classes),
        run_eagerly=eager,
    )
    model.fit(recipe.sample_inputs(TRAIN_EXAMPLES, seed=1), recipe.sample_labels(TRAIN_EXAMPLES),
              batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=technique.callbacks())


def check(recipe, technique_name, tmp_dir, export_tflite=False, eager=True):
    """Runs every invariant. Returns `{"outcome": "wrapped"}` (with
    `check_export`'s results after an export) or `{"outcome": "refused"}`
    (a clean ValueError, as due)."""
    technique = TECHNIQUES[technique_name]
    keras.backend.clear_session()  # fresh layer-name counters for every example
    model = recipe.build()
    x = recipe.sample_inputs(TEST_EXAMPLES, seed=2)
    before = _Snapshot.of(model, x)
    try:
        wrapped = technique.wrap(model)
    except Exception as error:  # noqa: BLE001 - classified below
        _check_wrap_error(error, model, technique)
        before.assert_same(model, x, "after a refused wrap")
        return {"outcome": "refused"}
    refused = technique.refusal(model)
    assert not refused, f"{technique.name}: wrapped a model with unsupported layers {refused}"
    before.assert_same(model, x, "after wrapping")
    result = {"outcome": "wrapped"}

    _train(wrapped, recipe, technique, eager)
    before.assert_same(model, x, "after training the wrapped model")
    predicted = _outputs(wrapped, x)
    assert all(np.isfinite(p).all() for p in predicted), "non-finite predictions after training"

    if technique.strip is not None:
        stripped = technique.strip(wrapped)
        assert not wrapper_techniques(stripped), f"strip left wrappers: {wrapper_techniques(stripped)}"
        _close(_outputs(stripped, x), predicted, 1e-5, f"{technique.name}: strip(wrapped) vs wrapped")
        before.assert_same(model, x, "after stripping")

    path = os.path.join(tmp_dir, f"{technique.name}.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    for i, (a, b) in enumerate(zip(predicted, _outputs(loaded, x))):
        np.testing.assert_array_equal(
            a, b, err_msg=f"{technique.name}: output {i} differs after .keras save/load")

    if export_tflite:
        result.update(check_export(recipe, technique, wrapped, x, tmp_dir))
        before.assert_same(model, x, "after export")
    return result


# -- export --------------------------------------------------------------------


def run_tflite(flatbuffer, x):
    """Every output of the .tflite on `x` (one array or a list, one per
    input in order), one example at a time, in the Keras output order."""
    from ai_edge_litert.interpreter import Interpreter

    # The runner does not keep its interpreter alive: hold it here.
    interpreter = Interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    xs = x if isinstance(x, list) else [x]
    # The converter names inputs after the Keras inputs (input_0, ...).
    names = list(details) if len(xs) == 1 else [f"input_{i}" for i in range(len(xs))]
    results = []
    for row in range(len(xs[0])):
        feed = {}
        for name, value in zip(names, xs):
            detail = details[name]
            sample = value[row:row + 1]
            scale, zero = detail["quantization"]
            if scale and value.dtype.kind == "f":
                info = np.iinfo(detail["dtype"])
                sample = np.clip(np.round(sample / scale + zero), info.min, info.max)
            feed[name] = sample.astype(detail["dtype"])
        out = runner(**feed)
        results.append([out[k] for k in sorted(out, key=_output_index)])
    del runner, interpreter
    return [np.concatenate([r[i] for r in results]).astype("float32")
            for i in range(len(results[0]))]


def _output_index(name):
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def int8_errors(tflite, reference):
    """Per example: the largest error over every output value, as a fraction
    of that output's int8 range over the batch (min and max widened to
    include 0, as TFLite's activation ranges are)."""
    worst = np.zeros(len(reference[0]))
    for t, k in zip(tflite, reference):
        spread = max(float(k.max()), 0.0) - min(float(k.min()), 0.0) or 1.0
        error = np.abs(t - k).reshape(len(k), -1).max(axis=1) / spread
        worst = np.maximum(worst, error)
    return worst


# The library's own checks of zero-width integer ranges (export/degenerate.py).
from tfmot_lite.export.degenerate import degenerate_activations  # noqa: E402
from tfmot_lite.export.degenerate import xnnpack_prepares as xnnpack_loads  # noqa: E402


def _check_int8(flatbuffer, x, reference, what, findings):
    """Returns the median int8 error, or None (and a finding) when the
    model is one XNNPACK cannot run because of a degenerate range."""
    degenerate = degenerate_activations(flatbuffer)
    if degenerate and not xnnpack_loads(flatbuffer):
        findings.append(f"{what}: degenerate int8 range of {degenerate}; XNNPACK "
                        "cannot prepare the model")
        return None
    errors = int8_errors(run_tflite(flatbuffer, x), reference)
    within = float(np.mean(errors <= INT8_RANGE_ERROR))
    assert within >= INT8_AGREEING, (
        f"{what}: only {within:.0%} of the examples are within {INT8_RANGE_ERROR:.0%} of "
        f"the output range (median error {np.median(errors):.1%})")
    return float(np.median(errors))


def check_export(recipe, technique, wrapped, x, tmp_dir):
    """Converts and compares. Returns `{"int8_median_error": ...,
    "upstream": [...]}`: findings that are the converter's or LiteRT's (the
    float conversion of the same model is right), reported apart."""
    reference = _outputs(wrapped, x)
    single = len(recipe.inputs) == 1 and len(recipe.classes) == 1
    path = os.path.join(tmp_dir, f"{technique.name}.tflite")
    findings = []
    if technique.name == "qat":
        flatbuffer = export.to_tflite(
            wrapped, optimizations=[_tf().lite.Optimize.DEFAULT], path=path)
        error = _check_int8(flatbuffer, x, reference, "qat int8 .tflite", findings)
        if single and error is not None:  # the library's own report on it
            report = export.measure(flatbuffer, data=x, keras_model=wrapped, latency_runs=1)
            assert report.agreement is not None and report.bytes == os.path.getsize(path)
        return {"int8_median_error": error, "upstream": findings}
    stripped = technique.strip(wrapped)
    # Recurrent layers that are not unrolled are unrolled by the export
    # (export/recurrent.py): a TensorList error here is a finding.
    if single:
        export.export_model(wrapped, "float32", path=path, data=x, latency_runs=1,
                            sparse=False)
    else:
        export.to_tflite(stripped, path=path)
    with open(path, "rb") as f:
        _close(run_tflite(f.read(), x), reference, FLOAT_TOLERANCE,
               f"{technique.name}: float .tflite vs Keras")
    if technique.name in ("prune", "channels"):
        # Zeros stored sparse (what export_model does for pruned models by
        # default): the same model, converted with EXPERIMENTAL_SPARSITY.
        try:
            _close(run_tflite(export.to_sparse_tflite(wrapped), x), reference, FLOAT_TOLERANCE,
                   f"{technique.name}: sparse float .tflite vs Keras")
        except AssertionError as mismatch:
            findings.append(str(mismatch))
    try:
        flatbuffer = export.quantize_post_training(
            stripped, "int8", representative_data=recipe.sample_inputs(32, seed=3))
    except _converter_error() as error:
        # Full-integer conversion has no int8 kernel for some layers
        # (recurrent layers, ...): the converter's limit, not an export bug.
        findings.append(f"{technique.name}: no full-int8 conversion: "
                        f"{str(error).strip().splitlines()[0][:200]}")
        return {"int8_median_error": None, "upstream": findings}
    except ValueError as error:
        # A [0, 0] range XNNPACK cannot prepare: the export refuses it
        # (export/degenerate.py) rather than let LiteRT abort.
        if "default XNNPACK delegate" not in str(error):
            raise
        findings.append(f"{technique.name}: int8 refused: {str(error)[:200]}")
        return {"int8_median_error": None, "upstream": findings}
    error = _check_int8(flatbuffer, x, reference, f"{technique.name}: int8 .tflite", findings)
    return {"int8_median_error": error, "upstream": findings}


def _converter_error():
    from tensorflow.lite.python.convert_phase import ConverterError

    return ConverterError


def _tf():
    from tfmot_lite.quiet import import_tensorflow

    return import_tensorflow()
