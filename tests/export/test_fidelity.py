"""layer_fidelity: Keras layer outputs against the .tflite's tensors.

A faithful export (QAT int8, float32) departs nowhere; an export whose Keras
model was changed afterwards (one layer's kernel, a differently initialised
head) departs first at that layer, and the report names it."""

import json

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import data, export

L = keras.layers

# keras.applications' ImageNet preprocessing (ConvNeXt, EfficientNet).
IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_VARIANCE = [(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2]


def _conv_bn_relu_dense(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(16, 3, strides=2, name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, name="dense")(x), name="small")


def _compile(model, from_logits=True):
    # Eagerly: these tests read what a few steps of training leave (ranges,
    # folded constants), and eight steps run faster than tracing the step.
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                  run_eagerly=True)
    return model


@pytest.fixture(scope="module")
def digits16():
    (x, y), (xt, _) = data.digits(image_size=16)
    return x[:256], y[:256], xt[:8]


@pytest.fixture(scope="module")
def qat_export(digits16, tmp_path_factory):
    """A briefly trained QAT Conv-BN-ReLU-Dense model, its int8 export's
    report (with the automatic fidelity check) and the .tflite's path."""
    x, y, xt = digits16
    qat = _compile(tfmot.quantization.keras.quantize_model(_conv_bn_relu_dense()))
    qat.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("fidelity") / "qat.tflite"
    report = export.export_model(qat, "int8", path=path, data=xt, latency_runs=2)
    return qat, report, path


def test_qat_int8_export_departs_nowhere(qat_export):
    qat, report, _ = qat_export
    fidelity = export.FidelityReport.from_dict(report.fidelity)
    assert report.first_departure is None
    assert fidelity.first_departure is None
    assert fidelity.examples == 4
    rows = {r.path: r for r in fidelity.rows}
    # The wrapped layers are found by name and agree within a few int8 steps.
    for path in ("quantize_layer", "quant_conv", "quant_conv2", "quant_gap", "quant_dense"):
        assert rows[path].match == "name", rows[path]
        assert rows[path].cosine > 0.999
        assert rows[path].max_error < 0.05
        assert rows[path].lsb <= 3
        assert rows[path].tensor_dtype == "int8"
    # Run on the .tflite's own inputs (XNNPACK's), each layer lands on the
    # .tflite's integers but for rounding ties (one step, on a few elements).
    assert fidelity.kernels == "XNNPACK"
    for path in ("quant_conv", "quant_conv2", "quant_gap", "quant_dense"):
        assert rows[path].local_lsb <= 1.01 and rows[path].local_share <= 0.01, rows[path]
        assert not fidelity.departs_locally(rows[path])
    # The folded BatchNormalization/ReLU (identities in the QAT model) have
    # no tensor of their own and are not compared.
    for path in ("bn", "relu", "bn2", "relu2"):
        assert rows[path].match == "folded" and not rows[path].compared
    assert [r.path for r in fidelity.rows] == [
        "quantize_layer", "quant_conv", "bn", "relu", "quant_conv2", "bn2", "relu2",
        "quant_gap", "quant_dense"]
    text = str(report)
    assert ("layer fidelity: no layer departs (5 of 9 layers compared on 4 example(s), "
            "XNNPACK kernels)") in text


def test_reads_the_tensors_xnnpack_computes(tmp_path):
    """The tensors compared are XNNPACK's (the .tflite with every operator
    output listed among the graph's outputs, `taps.every_tensor_an_output`):
    a QAT mean over a 3x3 pool lands on XNNPACK's MEAN on its own inputs,
    every element, where LiteRT's built-in MEAN (`xnnpack=False`) rounds a
    share of them one step up."""
    from tfmot_lite.export.runtime import TFLiteModel
    from tfmot_lite.export.taps import every_tensor_an_output

    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    x = rng.uniform(0, 1, (64, 9, 9, 3)).astype("float32")
    inputs = keras.Input((9, 9, 3))
    features = L.Conv2D(32, 3, strides=3, activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, L.Dense(4, name="dense")(
        L.GlobalAveragePooling2D(name="gap")(features)))
    qat = tfmot.quantization.keras.quantize_model(model)
    for k in range(0, 64, 16):
        qat(x[k:k + 16], training=True)
    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, latency_runs=0, fidelity=False)
    flatbuffer = path.read_bytes()

    tapped = every_tensor_an_output(flatbuffer)
    plain, every = TFLiteModel(flatbuffer), TFLiteModel(tapped)
    np.testing.assert_array_equal(every.predict(x[:4]), plain.predict(x[:4]))
    written = {int(i) for op in every.interpreter._get_ops_details()
               if op["op_name"] != "DELEGATE" for i in op["outputs"]}
    assert written <= {d["index"] for d in every.interpreter.get_output_details()}

    on_xnnpack = export.layer_fidelity(qat, flatbuffer, x, examples=16)
    on_builtin = export.layer_fidelity(qat, flatbuffer, x, examples=16, xnnpack=False)
    assert (on_xnnpack.kernels, on_builtin.kernels) == ("XNNPACK", "built-in")
    assert on_xnnpack.row("quant_gap").local_share == 0.0, on_xnnpack.row("quant_gap")
    assert on_builtin.row("quant_gap").local_share > 0.05, on_builtin.row("quant_gap")
    assert "XNNPACK kernels" in on_xnnpack.summary()
    assert export.FidelityReport.from_dict(on_builtin.to_dict()).kernels == "built-in"
    # Converted without int8 optimizations, the weights are QUANTIZE ops'
    # per-channel outputs, read (and dequantized per channel) as any other.
    float_weights = export.to_tflite(qat, representative_data=x)
    assert export.layer_fidelity(qat, float_weights, x, examples=2).first_departure is None


def test_names_the_layer_changed_after_conversion(qat_export, digits16):
    qat, _, flatbuffer = qat_export
    _, _, xt = digits16
    before = export.layer_fidelity(qat, flatbuffer, xt, examples=3)
    assert before.first_departure is None
    kernel = next(v for v in qat.get_layer("quant_conv2").weights if v.path.endswith("kernel"))
    original = kernel.numpy()
    try:
        kernel.assign(-original)
        after = export.layer_fidelity(qat, flatbuffer, xt, examples=3)
    finally:
        kernel.assign(original)
    first = after.first_departure
    assert first is not None and first.path == "quant_conv2"
    assert first.cosine < 0.5 and first.max_error > 0.3
    # What comes before it still agrees; what follows departs too.
    assert not after.departs(after.row("quant_conv"))
    assert after.departs(after.row("quant_gap"))
    summary = after.summary()
    assert summary.startswith("first departs at quant_conv2 (QuantizeConvBatchNorm): cosine ")
    flagged = [line.split()[0] for line in str(after).splitlines()
               if line.rstrip().endswith(("departs", "computes differently"))]
    assert flagged == ["quant_conv2", "quant_gap", "quant_dense"]
    # Fed the .tflite's own inputs, the layers after it compute what the
    # .tflite computes: the changed layer is the one that computes
    # differently by itself.
    assert after.first_local_departure.path == "quant_conv2"
    changed = after.row("quant_conv2")
    assert changed.local_share > 0.5 and changed.local_lsb > 10
    assert not after.departs_locally(after.row("quant_dense"))
    assert after.row("quant_dense").local_share <= 0.05
    assert "on its own .tflite inputs, quant_conv2 (QuantizeConvBatchNorm) computes " \
        "differently" in summary


def test_float_export_and_a_differently_initialised_head(digits16):
    x, _, xt = digits16
    model = _conv_bn_relu_dense(seed=0)
    flatbuffer = export.to_tflite(model)
    fidelity = export.layer_fidelity(model, flatbuffer, xt)
    rows = {r.path: r for r in fidelity.rows}
    # Conv and BatchNormalization are fused into the ReLU's tensor.
    assert rows["conv"].match == "folded" and "relu" in rows["conv"].tensor
    assert rows["relu"].match == "name" and rows["relu"].cosine > 0.99999
    assert rows["relu"].lsb is None and rows["relu"].tensor_dtype == "float32"
    # The converter names the last Dense output after the signature; it is
    # found by shape and order.
    assert rows["dense"].match == "shape" and rows["dense"].max_error < 1e-4
    assert fidelity.first_departure is None

    other = _conv_bn_relu_dense(seed=1)
    for layer, copy in zip(model.layers, other.layers):
        if layer.name != "dense":
            copy.set_weights(layer.get_weights())
    departed = export.layer_fidelity(other, flatbuffer, xt)
    assert departed.first_departure.path == "dense"
    assert [r.path for r in departed.rows if departed.departs(r)] == ["dense"]


def test_ptq_int8_compares_integer_tensors(digits16):
    x, y, xt = digits16
    model = _compile(_conv_bn_relu_dense())
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    report = export.export_model(model, "int8", data=xt, representative_data=x[:64],
                                 latency_runs=2, fidelity=True, fidelity_examples=2)
    fidelity = export.FidelityReport.from_dict(report.fidelity)
    relu = fidelity.row("relu")
    assert relu.tensor_dtype == "int8" and relu.lsb is not None
    assert relu.cosine > 0.99
    assert fidelity.examples == 2


def test_report_round_trips_through_json(qat_export, tmp_path):
    _, report, _ = qat_export
    path = export.save_json([report], tmp_path / "r.json")
    (loaded,) = export.load_json(path)
    assert loaded.fidelity == json.loads(json.dumps(report.fidelity))
    assert export.FidelityReport.from_dict(loaded.fidelity).summary() == report.fidelity["summary"]


def test_bad_arguments(qat_export, digits16):
    qat, _, flatbuffer = qat_export
    _, _, xt = digits16
    with pytest.raises(ValueError, match="needs|pass `data`"):
        export.export_model(qat, "int8", fidelity=True, latency_runs=1)
    with pytest.raises(ValueError, match="examples"):
        export.layer_fidelity(qat, flatbuffer, xt, examples=0)
    with pytest.raises(ValueError, match="Functional or Sequential"):
        export.layer_fidelity(L.Dense(3), flatbuffer, xt)
    assert np.isfinite(export.layer_fidelity(qat, flatbuffer, xt[:1]).rows[1].cosine)


def test_departure_rules():
    def row(path, cosine, error, lsb):
        return export.LayerFidelity(path=path, layer_type="Conv2D", shape=(4,), match="name",
                                    tensor=f"m_1/{path}_1/Relu", cosine=cosine,
                                    max_error=error, max_abs_error=error, lsb=lsb)

    report = export.FidelityReport(rows=[
        row("narrow", 0.5, 0.5, 1.0),      # an int8 output spanning two steps
        row("two_steps", 0.98, 0.3, 2.0),  # within rounding
        row("float_ok", 0.9999, 0.01, None),
        row("three_steps", 0.999, 0.2, 3.0),
        row("float_off", 0.5, 0.9, None),
    ], examples=1)
    assert [r.path for r in report.rows if report.departs(r)] == ["three_steps", "float_off"]
    assert report.first_departure.path == "three_steps"
    assert report.worst.path == "float_off"
    assert report.summary().startswith(
        "first departs at three_steps (Conv2D): cosine 0.9990, max error 20.0% of its "
        "range, 3.0 LSB (tensor 'three_steps_1/Relu'; 5 of 5 layers compared")


def test_local_departure_rules():
    def row(path, share, elements, lsb=1.0, error=None):
        return export.LayerFidelity(
            path=path, layer_type="Conv2D", shape=(4,), match="name", cosine=1.0,
            max_error=0.0, lsb=0.0, local_error=error, local_lsb=lsb, local_share=share,
            local_bias=None if share is None else -share,
            local_elements=elements)

    report = export.FidelityReport(rows=[
        row("ties", 0.004, 5000),                  # a few rounding ties
        row("lut_ties", 0.001, 5000, lsb=5.0),     # one tie amplified by a sigmoid
        row("one_of_twenty", 0.05, 20),            # one element: a tie on a small output
        row("biased_mean", 0.19, 1000),            # another rounding rule
        row("float_off", None, None, lsb=None, error=0.5),
    ], examples=1)
    assert [r.path for r in report.rows if report.departs_locally(r)] == [
        "biased_mean", "float_off"]
    assert report.first_local_departure.path == "biased_mean"
    assert report.summary().endswith(
        "on its own .tflite inputs, biased_mean (Conv2D) computes differently: 19.0% of "
        "elements on another integer (max 1 LSB, mean -0.19 LSB)")
    loaded = export.FidelityReport.from_dict(report.to_dict())
    assert loaded.first_local_departure.path == "biased_mean"
    assert loaded.max_local_share == report.max_local_share == 0.02


def _standalone_batch_norm(seed=0):
    """Conv -> Add -> BatchNormalization -> ReLU: TFLite runs the BatchNorm
    as MUL and ADD with int8 constants, the ADD fused into the ReLU. Its
    per-channel scales span 0.01 to 8, so their int8 steps are coarse."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = L.Add(name="add")([L.Conv2D(8, 3, padding="same", name="a")(inputs),
                           L.Conv2D(8, 1, name="b")(inputs)])
    bn = L.BatchNormalization(name="bn")
    x = L.ReLU(name="relu")(bn(x))
    x = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(8, 3, name="c")(x))
    model = keras.Model(inputs, L.Dense(4, name="dense")(x))
    bn.set_weights([np.array([0.01, 0.05, 0.2, 1, 3, 8, 0.5, 2], "float32"),
                    np.linspace(-1, 1, 8).astype("float32"), np.zeros(8, "float32"),
                    np.ones(8, "float32")])
    return model


def test_standalone_batch_norm_constants_are_the_converters():
    """QuantizeBatchNorm multiplies by and adds the int8 constants the
    converter stores (each over its own range), so the .tflite's MUL and
    ADD constants, dequantized, are the Keras model's values; the layer's
    ADD is fused into the ReLU, so its row is folded, and nothing departs."""
    import tensorflow as tf

    from tfmot_lite.export.flatbuffer import Subgraph
    from tfmot_lite.quantization.conv_bn_folding import batch_norm_folding
    from tfmot_lite.quantization.quantizers import fake_quant_constant

    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(_standalone_batch_norm())
    qat.compile("adam", "mse", run_eagerly=True)
    qat.fit(x, np.zeros((64, 4)), epochs=1, batch_size=16, verbose=0)
    flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])

    bn = qat.get_layer("quant_bn").batch_norm
    expected = [keras.ops.convert_to_numpy(fake_quant_constant(v))
                for v in batch_norm_folding(bn, bn.moving_mean, bn.moving_variance)]
    graph, stored = Subgraph(flatbuffer), {}
    for index, op_type in enumerate(graph.types):
        for t in graph.inputs(index):
            values = graph.constant(t) if op_type in ("MUL", "ADD") else None
            if values is not None:  # the int8 constant, dequantized
                q = graph.graph.Tensors(t).Quantization()
                stored[op_type] = (values.astype("float64") - q.ZeroPointAsNumpy()[0]) \
                    * q.ScaleAsNumpy()[0]
    np.testing.assert_allclose(stored["MUL"], expected[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(stored["ADD"], expected[1], rtol=0, atol=1e-6)
    # The small scales are coarse: 0.01 is stored as 0.
    assert stored["MUL"][0] == 0.0

    fidelity = export.layer_fidelity(qat, flatbuffer, x, examples=4)
    rows = {r.path: r for r in fidelity.rows}
    assert rows["quant_bn"].match == "folded" and not rows["quant_bn"].compared
    assert rows["quant_relu"].match == "name" and rows["quant_relu"].lsb <= 2.5
    assert fidelity.first_departure is None, str(fidelity)


def _squeeze_excite(seed=0):
    """EfficientNet's pattern: Conv -> silu, then a squeeze-and-excite whose
    gate is a sigmoid 1x1 convolution multiplied into the features."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = L.Activation("silu", name="swish")(L.Conv2D(8, 3, padding="same", name="conv")(inputs))
    gate = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    gate = L.Conv2D(8, 1, activation="sigmoid", name="gate")(gate)
    x = L.Multiply(name="excite")([x, gate])
    return keras.Model(inputs, L.Dense(10, name="dense")(L.GlobalAveragePooling2D(name="gap")(x)))


def test_logistic_activations_round_where_tflite_does(digits16):
    """TFLite runs sigmoid as an int8 LOGISTIC with the fixed output scale
    1/256 and silu as `x * LOGISTIC(x)`: the QAT model's gate lies on that
    grid, the converter needs no requantization after either LOGISTIC, and
    the .tflite agrees with the Keras model layer by layer."""
    import tensorflow as tf

    from tfmot_lite.export.flatbuffer import Subgraph

    x, y, xt = digits16
    qat = _compile(tfmot.quantization.keras.quantize_model(_squeeze_excite()))
    qat.fit(x, y, batch_size=32, epochs=1, verbose=0)

    # The gate's output range is LOGISTIC's: no range is tracked for it.
    gate_ranges = [v.path for v in qat.get_layer("quant_gate").non_trainable_variables]
    assert "quant_gate/pre_activation_min" in gate_ranges
    assert not any("post_activation" in path for path in gate_ranges), gate_ranges
    # The Activation("silu") layer: its input is the conv's quantized output
    # (no second range), its product gets a range of its own.
    swish_ranges = [v.path for v in qat.get_layer("quant_swish").non_trainable_variables]
    assert "quant_swish/post_activation_min" in swish_ranges
    assert not any("pre_activation" in path for path in swish_ranges), swish_ranges

    gate = keras.ops.convert_to_numpy(
        keras.Model(qat.inputs, qat.get_layer("quant_gate").output)(xt, training=False))
    assert gate.min() >= 0.0 and gate.max() <= 255 / 256
    np.testing.assert_allclose(gate * 256, np.round(gate * 256), atol=1e-3)

    flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    types = Subgraph(flatbuffer).types
    assert types.count("LOGISTIC") == 2
    # One QUANTIZE: the float input's. None rescales a LOGISTIC's output.
    assert types.count("QUANTIZE") == 1 and types[0] == "QUANTIZE"
    fidelity = export.layer_fidelity(qat, flatbuffer, xt, examples=4)
    rows = {r.path: r for r in fidelity.rows}
    for path in ("quant_swish", "quant_gate", "quant_excite"):
        assert rows[path].match == "name" and rows[path].lsb <= 2.5, rows[path]
    assert fidelity.first_departure is None, str(fidelity)


def _fixed_range_activations(seed=0):
    """A layer activation and Activation/Softmax layers that TFLite runs as
    integer TANH, LOGISTIC and SOFTMAX kernels with fixed output ranges."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(8, 3, name="conv")(inputs))
    x = L.Dense(16, activation="tanh", name="tanh_dense")(x)
    x = L.Activation("sigmoid", name="sigmoid")(L.Dense(16, name="dense")(x))
    x = L.Softmax(name="softmax")(L.Dense(10, name="logits")(x))
    return keras.Model(inputs, x)


@pytest.mark.slow  # over 5 s in the fast tier
def test_fixed_range_activations_take_tflite_ranges(digits16, tmp_path):
    """tanh, sigmoid and softmax outputs lie on TFLite's fixed grids (1/128
    for TANH, 1/256 for LOGISTIC and SOFTMAX) with no range tracked for
    them, the converter adds no requantization after any of the three, and
    the .tflite agrees with the Keras model layer by layer."""
    import tensorflow as tf

    from tfmot_lite.export.flatbuffer import Subgraph

    x, y, xt = digits16
    model = _compile(tfmot.quantization.keras.quantize_model(_fixed_range_activations()),
                     from_logits=False)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)

    for layer, step in (("quant_tanh_dense", 128), ("quant_sigmoid", 256),
                        ("quant_softmax", 256)):
        values = keras.ops.convert_to_numpy(
            keras.Model(model.inputs, model.get_layer(layer).output)(xt, training=False))
        np.testing.assert_allclose(values * step, np.round(values * step), atol=1e-3)
        tracked = [v.path for v in model.get_layer(layer).non_trainable_variables
                   if v.path.endswith(("output_min", "post_activation_min"))]
        assert not tracked, tracked

    flatbuffer = export.to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT])
    types = Subgraph(flatbuffer).types
    assert {"TANH", "LOGISTIC", "SOFTMAX"} <= set(types), types
    # One QUANTIZE: the float input's. None rescales a fixed-range output.
    assert types.count("QUANTIZE") == 1 and types[0] == "QUANTIZE", types
    fidelity = export.layer_fidelity(model, flatbuffer, xt, examples=4)
    assert fidelity.first_departure is None, str(fidelity)

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(xt, training=False)),
                               keras.ops.convert_to_numpy(model(xt, training=False)), atol=1e-6)


@pytest.mark.parametrize("side", [3, 12])
def test_global_average_pooling_lands_where_xnnpack_does(side, tmp_path):
    """QAT's GlobalAveragePooling2D rounds the exact mean to the nearest
    step: the integer XNNPACK's MEAN gives. LiteRT's built-in MEAN
    (`xnnpack=False`, the kernels `layer_fidelity` reads) rounds some
    outputs one step up, most on a small pool."""
    from tfmot_lite.export.runtime import TFLiteModel

    rng = np.random.default_rng(side)
    x = (np.abs(rng.normal(size=(64, side, side, 32)))
         * rng.uniform(0.2, 3.0, size=(1, 1, 1, 32))).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(
        keras.Sequential([keras.Input((side, side, 32)), L.GlobalAveragePooling2D()]))
    for k in range(0, 64, 16):
        qat(x[k:k + 16], training=True)  # the ranges follow the batches
    path = tmp_path / "gap.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    xnnpack = TFLiteModel(path.read_bytes())
    step = xnnpack.output["quantization"][0]
    keras_out = np.asarray(qat(x, training=False))
    steps = np.abs(keras_out - xnnpack.predict(x)) / step
    assert steps.max() < 0.01, steps.max()
    builtin = TFLiteModel(path.read_bytes(), xnnpack=False).predict(x)
    off = np.abs(builtin - keras_out) / step
    assert off.max() < 1.01
    if side == 3:
        assert np.mean(off > 0.5) > 0.05


@pytest.mark.parametrize("make,off", [
    (lambda: [L.Conv2D(16, 1, activation="silu")], 0.0),
    (lambda: [L.Conv2D(16, 1), L.Activation("silu")], 0.0),
    (lambda: [L.Conv2D(16, 1), L.Activation("hard_swish")], 0.001),
    (lambda: [L.Rescaling(1 / 127.5, offset=-1.0)], 0.0),
    (lambda: [L.Normalization(mean=IMAGENET_MEAN, variance=IMAGENET_VARIANCE)], 0.0),
    (lambda: [L.Rescaling([1 / 58.4, 1 / 57.1, 1 / 57.4])], 0.0),
    # A Dense over pixels (a matmul over more than two axes, quantized
    # inside its call): its activation's op rounds as a layer's does.
    (lambda: [L.Dense(16, activation="sigmoid")], 0.0),
    (lambda: [L.Dense(16, activation="tanh")], 0.0),
    (lambda: [L.Dense(16, activation="silu")], 0.0),
], ids=["conv_silu", "silu_layer", "hard_swish_layer", "rescaling_offset",
        "per_channel_normalization", "per_channel_rescaling", "dense_pixels_sigmoid",
        "dense_pixels_tanh", "dense_pixels_silu"])
def test_quantized_layers_land_on_xnnpacks_integers(make, off, tmp_path):
    """Swish (x * LOGISTIC(x)), hard-swish, a Rescaling with an offset and
    per-channel constants (ConvNeXt's and EfficientNet's ImageNet
    Normalization: the converter stores `1/std` and `-mean/std` on an int8
    grid, and so does the layout), QAT int8: the Keras model's outputs are
    the integers XNNPACK computes, every one for swish and the Rescalings
    (the built-in kernels' LOGISTIC misses a few percent); hard-swish's
    fixed-point kernel puts a few in ten thousand one step away."""
    from tfmot_lite.export.runtime import TFLiteModel

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    rescaling = isinstance(make()[0], (L.Rescaling, L.Normalization))
    x = (rng.uniform(0, 255, (64, 8, 8, 3)) if rescaling
         else rng.normal(size=(64, 8, 8, 3))).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(
        keras.Sequential([keras.Input((8, 8, 3))] + make()))
    for k in range(0, 64, 16):
        qat(x[k:k + 16], training=True)
    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    xnnpack = TFLiteModel(path.read_bytes())
    steps = np.abs(np.asarray(qat(x, training=False)) - xnnpack.predict(x)) / (
        xnnpack.output["quantization"][0])
    assert np.mean(steps > 0.5) <= off and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())


def test_a_reshape_named_after_two_layers_belongs_to_neither():
    """A Dense over pixels reads its input through a RESHAPE the converter
    names after both layers (`dense/Reshape;norm/FakeQuant...`); the values
    are the LayerNormalization's, whose own tensor is the RESHAPE's input.
    The norm keeps that tensor (matched by name, not folded), so the Dense
    runs on the .tflite's own norm output and lands on its integers."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 8))
    x = L.LayerNormalization(name="norm")(L.Conv2D(8, 1, name="conv")(inputs))
    x = L.Dense(16, name="pointwise")(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D(name="gap")(x))
    data = np.random.default_rng(0).normal(size=(32, 6, 6, 8)).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(model)
    qat(data, training=True)
    flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    fidelity = export.layer_fidelity(qat, flatbuffer, data, examples=4)
    rows = {r.path: r for r in fidelity.rows}
    norm, dense = rows["quant_norm"], rows["quant_pointwise"]
    assert norm.match == "name" and "Reshape" not in norm.tensor, norm
    assert dense.match == "name" and dense.local_share is not None
    assert dense.local_share <= 0.01, dense
