"""Coverage: keras.applications models and the other supported layers
quantize, train a step, and convert to an int8-bodied TFLite model.
(MobileNetV3Small, EfficientNetB0 and ResNet50V2 go through the same steps,
fully integer, in tests/benchmarks/test_model_zoo.py.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tflite_helpers import assert_int8_body

from tfmot_lite import export
from tfmot_lite.quantization import keras as quantize
from tfmot_lite.core import techniques
from tfmot_lite.quantization.quantize import _leaf_layers
from tfmot_lite.quantization.registry import PASS_THROUGH

L = keras.layers


def _qat_step(model, n=8):
    qat = quantize.quantize_model(model)
    x = np.random.default_rng(0).uniform(size=(n, *model.inputs[0].shape[1:]))
    x = x.astype("float32")
    y = qat.predict(x, verbose=0)
    for _, layer in _leaf_layers(qat):
        if isinstance(layer, quantize.QuantizeConvBatchNorm):
            layer.batch_norm.trainable = False  # keep the float model's statistics
    # A training pass with learning rate 0 calibrates the activation ranges
    # and leaves the weights as they are.
    qat.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    qat.fit(x, np.zeros_like(y), epochs=1, verbose=0, batch_size=n)
    return qat, x


def _assert_every_layer_quantized(qat):
    """Compute layers are all quantized; the rest keep their input's scale."""
    left = [
        f"{path} ({type(layer).__name__})"
        for path, layer in _leaf_layers(qat)
        if techniques.technique_of(layer) is not techniques.QAT
        and not isinstance(layer, PASS_THROUGH)
    ]
    assert not left, left


def _assert_converts_and_agrees(qat, x, atol):
    flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    assert_int8_body(flatbuffer)
    out = export.TFLiteModel(flatbuffer).predict(x)
    ref = qat.predict(x, verbose=0)
    assert np.abs(out - ref).max() <= atol * max(np.abs(ref).max(), 1e-6)
    return flatbuffer


@pytest.mark.slow
def test_mobilenet_v2():
    """Quantized layer by layer, and converted (uncalibrated ranges: the test
    checks the structure; the digits test checks trained agreement)."""
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    qat = quantize.quantize_model(model)
    _assert_every_layer_quantized(qat)
    kinds = [type(l).__name__ for l in qat.layers]
    # Every Conv/DepthwiseConv is followed by a BatchNorm in MobileNetV2.
    assert "Conv2D" not in kinds and "DepthwiseConv2D" not in kinds
    assert kinds.count("QuantizeConvBatchNorm") == 52
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert np.isfinite(qat.predict(x, verbose=0)).all()
    names, _ = assert_int8_body(
        export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    )
    assert names.count("DEPTHWISE_CONV_2D") == 17 and "MUL" not in names


@pytest.mark.slow
def test_resnet50_quantizes_every_layer():
    model = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10)
    qat = quantize.quantize_model(model)
    _assert_every_layer_quantized(qat)
    kinds = [type(l).__name__ for l in qat.layers]
    assert kinds.count("QuantizeConvBatchNorm") == 53
    # Quantizer state is non-trainable: training updates the same weights.
    assert len(qat.trainable_weights) == len(model.trainable_weights)


def _small_models(only):
    """Yields `(name, model)`, building only the model named `only`."""
    inp = keras.Input((16,))
    h = L.Dense(8, activation="relu")(inp)
    yield "dense", keras.Model(inp, L.Dense(3, activation="softmax")(h))

    inp = keras.Input((20, 4))
    h = L.Conv1D(8, 3, activation="relu")(inp)
    h = L.Conv1D(8, 3)(h)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.MaxPooling1D()(h)
    h = L.GlobalAveragePooling1D()(h)
    yield "conv1d", keras.Model(inp, L.Dense(2)(h))

    inp = keras.Input((16, 16, 3))
    h = L.SeparableConv2D(8, 3, activation="relu")(inp)
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same")(h)
    h = L.Concatenate()([h, h])
    h = L.Flatten()(h)
    yield "separable_transpose", keras.Model(inp, L.Dense(2)(h))

    norm = L.Normalization()
    norm.adapt(np.random.default_rng(1).uniform(size=(16, 16, 16, 3)).astype("float32"))
    inp = keras.Input((16, 16, 3))
    h = L.Rescaling(1 / 127.5, offset=-1.0)(inp)
    h = norm(h)
    h = L.ZeroPadding2D()(h)
    h = L.Conv2D(4, 3, strides=2)(h)
    h = L.Multiply()([h, h])
    yield "preprocessing", keras.Model(inp, L.AveragePooling2D(2)(h))

    inner = keras.Sequential(
        [keras.Input((16, 16, 3)), L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU()],
        name="backbone",
    )
    inp = keras.Input((16, 16, 3))
    h = inner(inp)
    h = L.GlobalAveragePooling2D()(h)
    yield "nested", keras.Model(inp, L.Dense(2)(h))

    yield "sequential", keras.Sequential(
        [keras.Input((16,)), L.Dense(8), L.BatchNormalization(), L.ReLU(),
         L.Dropout(0.1), L.Dense(2)]
    )


SMALL = ["dense", "conv1d", "separable_transpose", "preprocessing", "nested", "sequential"]
FAST_SMALL = {"dense", "nested"}  # the rest, seconds each, run in the slow tier


@pytest.mark.parametrize("name", [
    name if name in FAST_SMALL else pytest.param(name, marks=pytest.mark.slow)
    for name in SMALL
])
def test_small_models_convert_to_int8(name):
    model = dict(_small_models(name))[name]
    qat, x = _qat_step(model)
    _assert_every_layer_quantized(qat)
    _assert_converts_and_agrees(qat, x, atol=0.1)
    # The QAT model computes what the float model computes, up to rounding.
    ref = model.predict(x, verbose=0)
    assert np.abs(qat.predict(x, verbose=0) - ref).max() <= 0.1 * np.abs(ref).max()
    if name == "nested":
        backbone = qat.get_layer("backbone")
        assert any(isinstance(l, quantize.QuantizeConvBatchNorm) for l in backbone.layers)
    if name == "sequential":
        assert isinstance(qat, keras.Sequential)


def _applied_like_quantize_model(model, x):
    """Checks that `quantize_apply(quantize_annotate_model(model))`, with
    the default scheme and with PQAT's, has one QuantizeLayer (the input's)
    and exports the operators `quantize_model(model)` exports (an int8
    body); returns those operators."""
    from tfmot_lite import experimental
    from tfmot_lite.export.flatbuffer import Subgraph

    def ops(qat):
        qat(x, training=True)
        flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
        assert_int8_body(flatbuffer)
        return Subgraph(flatbuffer).types

    whole = ops(quantize.quantize_model(model))
    for scheme in (None, experimental.combine.Default8BitPrunePreserveQuantizeScheme()):
        applied = quantize.quantize_apply(quantize.quantize_annotate_model(model), scheme)
        names = [layer.name for layer in applied.layers]
        assert [n for n in names if n.startswith("quantize_layer")] == ["quantize_layer"], names
        assert names.index("quantize_layer") == 1, names
        assert ops(applied) == whole
    return whole


def test_annotated_model_requantizes_nothing_a_folded_or_pass_through_layer_keeps():
    """`quantize_apply` (PQAT, CQAT, PCQAT) of a DenseNet-style transition:
    Conv-BN-ReLU (the BatchNorm and ReLU fold into Identity layers), a 1x1
    Conv, AveragePooling2D and MaxPooling2D (int8 kernels that keep their
    input's scale), then a standalone BatchNorm. Their outputs are int8
    already: no QuantizeLayer follows them (one requantized the pooling's
    output to another scale, and DenseNet121's PQAT export failed on
    AVERAGE_POOL_2D's same-scale constraint), and the .tflite has the same
    operators as `quantize_model`'s."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(inp)))
    h = L.Conv2D(8, 1, use_bias=False)(h)
    h = L.MaxPooling2D(2)(L.AveragePooling2D(2)(h))
    h = L.ReLU()(L.BatchNormalization()(h))
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    assert "QUANTIZE" not in _applied_like_quantize_model(model, x)[1:]


def test_annotated_model_starting_with_a_split_rescaling_quantizes_its_input():
    """`quantize_apply(quantize_annotate_model(m))` (the path of PQAT, CQAT
    and PCQAT) of a model whose first layer is a Rescaling with an offset
    (MobileNetV3's preprocessing): the MUL and ADD it is split into take the
    quantized input, as with `quantize_model`, and no second QuantizeLayer
    follows them: the .tflite is integer from the first QUANTIZE and has the
    same operators as `quantize_model`'s."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = L.Rescaling(1 / 127.5, offset=-1.0)(inp)
    h = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(h))
    model = keras.Model(inp, L.Dense(2)(h))
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")

    _applied_like_quantize_model(model, x)


@pytest.mark.parametrize("count", [2, 3])
def test_average_runs_integer_and_lands_on_xnnpacks_integers(count, tmp_path):
    """`Average` runs as ADD (two at a time) then MUL by 1/n: each sum has
    a range (`AverageQuantizeConfig`). With the average's range alone the
    converter had left the ADD and the MUL float (DEQUANTIZE ... QUANTIZE)."""
    from tflite_helpers import output_steps

    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    branches = [L.Conv2D(8, 3, padding="same")(inputs) for _ in range(count)]
    qat = quantize.quantize_model(keras.Model(inputs, L.Average()(branches)))
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    for k in range(0, 64, 16):
        qat(x[k:k + 16], training=True)
    path = tmp_path / "m.tflite"
    report = export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    assert report.int8_fraction == 1.0, report.operators
    assert report.operators.count("ADD") == count - 1 and "MUL" in report.operators
    steps = output_steps(qat, path, x)
    assert np.mean(steps > 0.5) <= 0.005 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x, training=False), qat(x, training=False), atol=1e-6)
