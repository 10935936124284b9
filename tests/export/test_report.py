"""export_model: the report's numbers against an independent reading of the
written .tflite (the `tflite` flatbuffer bindings, LiteRT, the Keras weights)."""

import gzip
import json

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.example_models import build_cnn

sk = tfmot.sparsity.keras


def _compile(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained(digits32):
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits32
    model = _compile(build_cnn(), 3e-3)
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    return model, (x, y), (xt[:120], yt[:120])


@pytest.fixture(scope="module")
def untrained(digits32):
    """For what does not depend on accuracy (file formats, argument checks)."""
    keras.utils.set_random_seed(0)
    _, (xt, yt) = digits32
    return build_cnn(), (xt[:40], yt[:40])


def stored_operators(data):
    """Operator names and the integer share, straight from the flatbuffer."""
    import tflite
    from tflite.utils import BUILTIN_OPCODE2NAME

    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    names, data_ops, integer = [], 0, 0
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        names.append(BUILTIN_OPCODE2NAME[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
        tensors = [t for t in op.InputsAsNumpy().tolist() + op.OutputsAsNumpy().tolist()
                   if t >= 0]
        types = {graph.Tensors(t).Type() for t in tensors}  # 0 f32, 1 f16, 2 i32, ...
        if types & {0, 1, 3, 7, 9}:
            data_ops += 1
            integer += not types & {0, 1}
    return names, integer / data_ops


def keras_kernel_zeros(model):
    zeros = total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            zeros += int((kernel == 0).sum())
            total += kernel.size
    return zeros / total


@pytest.mark.slow
def test_pruned_float_export_report_matches_the_file(trained, tmp_path):
    model, (x, y), (xt, yt) = trained
    pruned = _compile(sk.prune_low_magnitude(
        model, pruning_schedule=sk.ConstantSparsity(0.6, 0, frequency=1)))
    pruned.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0,
               callbacks=[sk.UpdatePruningStep()])
    path = tmp_path / "pruned.tflite"
    report = export.export_model(pruned, "float32", path=path, data=xt, labels=yt,
                                 latency_runs=10)
    data = path.read_bytes()
    assert report.techniques == ["pruning"] and report.path == str(path)
    assert report.bytes == len(data)
    assert report.gzip_bytes == len(gzip.compress(data, compresslevel=9))
    names, integer = stored_operators(data)
    assert report.operators == names
    assert report.int8_fraction == 0.0 == integer
    # Pruned weights are stored sparse (auto) with the zeros of the Keras model.
    assert report.sparse_storage and "DENSIFY" in names
    stripped = sk.strip_pruning(pruned)
    assert report.sparsity == pytest.approx(keras_kernel_zeros(stripped), abs=1e-6)
    assert report.sparsity == pytest.approx(0.6, abs=0.01)
    # Accuracy and agreement, recomputed from the file and the Keras model.
    litert = export.TFLiteModel(str(path)).predict(xt).argmax(-1)
    keras_pred = pruned.predict(xt, verbose=0).argmax(-1)
    assert report.accuracy == pytest.approx(np.mean(litert == yt))
    assert report.agreement == pytest.approx(np.mean(litert == keras_pred))
    assert report.keras_accuracy == pytest.approx(np.mean(keras_pred == yt))
    assert report.agreement >= 0.99
    assert report.latency_us > 0 and report.threads == 1
    assert report.sparse_ready is False and report.sparse_reasons  # build_cnn's stem


@pytest.mark.slow
def test_qat_model_exports_int8_from_its_ranges(trained):
    model, (x, y), (xt, yt) = trained
    qat = _compile(tfmot.quantization.keras.quantize_model(model))
    qat.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    report = export.export_model(qat, "int8", data=xt, labels=yt, int8_io=True,
                                 threads=2, latency_runs=10)
    assert report.techniques == ["qat"] and report.threads == 2
    assert report.int8_fraction == 1.0
    # Every stored kernel is int8 (weight_stats), every operator integer.
    assert {w["dtype"] for w in report.weights} == {"int8"}
    assert report.agreement >= 0.95
    with pytest.raises(ValueError, match="mode='int8'"):
        export.export_model(qat, "float16")


@pytest.mark.slow
def test_clustered_int8_keeps_few_values_per_channel(trained):
    model, (x, y), (xt, yt) = trained
    ck = tfmot.clustering.keras
    clustered = _compile(ck.cluster_weights(
        model, number_of_clusters=8,
        cluster_centroids_init=ck.CentroidInitialization.KMEANS_PLUS_PLUS), 1e-4)
    clustered.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    report = export.export_model(clustered, "int8", data=xt, labels=yt, latency_runs=10)
    names, integer = stored_operators(export.quantize_post_training(
        ck.strip_clustering(clustered), "int8", export.ptq.calibration_samples(xt, 200)))
    assert report.techniques == ["clustering"]
    assert report.int8_fraction == pytest.approx(integer)
    assert 0 < report.int8_fraction < 1  # QUANTIZE/DEQUANTIZE at the float edges
    assert report.max_unique_per_channel <= 8
    assert report.calibration == "120 examples of `data`"


def test_reports_save_as_json_markdown_and_png(untrained, tmp_path):
    model, (xt, yt) = untrained
    reports = [
        export.export_model(model, mode, data=xt, labels=yt, latency_runs=5, name=mode)
        for mode in ("float32", "float16")
    ]
    path = export.save_json(reports, tmp_path / "r.json")
    loaded = export.load_json(path)
    assert [r.to_dict() for r in loaded] == json.loads(json.dumps(
        [r.to_dict() for r in reports], default=list))
    markdown = export.to_markdown(reports, title="digits")
    assert markdown.startswith("## digits") and "| float16 | float16 |" in markdown
    table = export.format_reports(reports)
    assert table.splitlines()[0].startswith("variant") and len(table.splitlines()) == 4
    png = export.plot_reports(reports, tmp_path / "r.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_latency_runs_measure_no_latency(untrained, tmp_path):
    model, (xt, yt) = untrained
    report = export.export_model(model, "float32", data=xt, labels=yt, latency_runs=0)
    assert report.latency_us is None and report.agreement == 1.0
    assert "| - |" in export.to_markdown([report]) and "not measured" in export.to_markdown(
        [report])
    assert open(export.plot_reports([report], tmp_path / "r.png"), "rb").read(4) == b"\x89PNG"
    flatbuffer = export.to_tflite(model)
    with pytest.raises(ValueError, match="`runs`"):
        export.measure_latency(flatbuffer, xt[0], runs=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "int8"}, "needs `representative_data`"),
    ({"mode": "bf16"}, "Unknown `mode`"),
    ({"threads": 0}, "`threads`"),
    ({"latency_runs": -1}, "`latency_runs`"),
    ({"latency_runs": 2.5}, "`latency_runs`"),
    ({"labels": [1, 2]}, "without `data`"),
    ({"data": np.zeros((3, 32, 32, 3)), "labels": [1]}, "one label per example"),
    ({"sparse": True, "mode": "float16"}, "sparse"),
])
def test_bad_arguments(untrained, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export.export_model(untrained[0], **kwargs)


def test_a_path_is_not_a_model(tmp_path):
    with pytest.raises(ValueError, match="load_model"):
        export.export_model(str(tmp_path / "model.keras"))


class _CountsTraces(keras.layers.Layer):
    """Doubles its input; counts the graphs its `call` is traced into."""

    traces = 0

    def call(self, x):
        type(self).traces += 1
        return x * 2.0


@pytest.mark.parametrize("count", [1, 7, 32, 45, 359])
def test_the_keras_reference_is_predicted_in_one_trace(count):
    """The report's Keras predictions (agreement, Keras accuracy) come from
    one trace of the model's predict step, whatever the number of examples
    (Keras' own `predict` traces twice where the last batch is shorter),
    and they are what `predict` gives, example by example, for one input
    and for several."""
    from tfmot_lite.export.pipeline import _keras_predict

    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    doubled = _CountsTraces()(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], keras.layers.Dense(4)(doubled))
    rng = np.random.default_rng(count)
    data = {"a": rng.normal(size=(count, 3)).astype("float32"),
            "b": rng.normal(size=(count, 2)).astype("float32")}
    _CountsTraces.traces = 0
    output = _keras_predict(model, data)
    assert _CountsTraces.traces == 1
    np.testing.assert_allclose(output, model.predict([data["a"], data["b"]], verbose=0),
                               rtol=1e-6, atol=1e-6)
    single = keras.Sequential([keras.Input((3,)), _CountsTraces()])
    _CountsTraces.traces = 0
    np.testing.assert_allclose(_keras_predict(single, data["a"]), 2.0 * data["a"], rtol=1e-6)
    assert _CountsTraces.traces == 1
