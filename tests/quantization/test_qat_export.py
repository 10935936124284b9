"""The Proof: QAT on the bundled digits, exported to int8 with the stock
converter, predicts what the Keras QAT model predicts."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfmot_lite.example_models import build_cnn as small_cnn
from tflite_helpers import assert_int8_body

from tfmot_lite import export
from tfmot_lite.quantization import keras as quantize


def _compile(model, lr, run_eagerly=False):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )


@pytest.fixture(scope="module")
def trained(digits32):
    (x_train, y_train), (x_test, y_test) = digits32
    keras.utils.set_random_seed(0)
    float_model = small_cnn()
    _compile(float_model, 1e-3)
    float_model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    float_acc = float_model.evaluate(x_test, y_test, verbose=0)[1]
    qat = quantize.quantize_model(float_model)
    _compile(qat, 1e-4)
    qat.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    return float_model, float_acc, qat


@pytest.mark.slow
def test_int8_tflite_matches_keras_qat_model(trained, digits32):
    float_model, float_acc, qat = trained
    (_, _), (x_test, y_test) = digits32
    flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    names, _ = assert_int8_body(flatbuffer)
    # Conv-BN-ReLU folded: three int8 convolutions, no separate BN or ReLU.
    assert names.count("CONV_2D") == 3
    assert "MUL" not in names and "ADD" not in names and "RELU" not in names
    tflite = export.TFLiteModel(flatbuffer)
    int8_pred = tflite.predict(x_test).argmax(-1)
    keras_pred = qat.predict(x_test, verbose=0).argmax(-1)
    agreement = float(np.mean(int8_pred == keras_pred))
    int8_acc = float(np.mean(int8_pred == y_test))
    print(f"\nagreement {agreement:.4f}, float acc {float_acc:.4f}, int8 acc {int8_acc:.4f}")
    assert agreement >= 0.997
    assert int8_acc >= float_acc - 0.005


@pytest.mark.slow
def test_int8_input_and_output_types(trained, digits32):
    _, _, qat = trained
    (_, _), (x_test, _) = digits32
    flatbuffer = export.to_tflite(
        qat,
        optimizations=[tf.lite.Optimize.DEFAULT],
        inference_input_type=tf.int8,
        inference_output_type=tf.int8,
    )
    tflite = export.TFLiteModel(flatbuffer)
    assert tflite.input["dtype"] == np.int8 and tflite.output["dtype"] == np.int8
    from tflite_helpers import op_report

    names, float_ops = op_report(flatbuffer)
    assert not float_ops and "DEQUANTIZE" not in names, names
    x = x_test[:200]
    agreement = np.mean(
        tflite.predict(x).argmax(-1) == qat.predict(x, verbose=0).argmax(-1)
    )
    assert agreement >= 0.99


def test_folded_kernels_are_the_converted_int8_kernels(digits32):
    """The fused layer's inference kernel, fake-quantized per channel, is
    exactly what the converter stores: 127 levels per channel."""
    (x_train, y_train), _ = digits32
    qat = quantize.quantize_model(small_cnn())
    # Two steps move the BatchNorm statistics the fold scales by; eagerly,
    # as tracing the step would take longer than the steps.
    _compile(qat, 1e-3, run_eagerly=True)
    qat.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    fused = [l for l in qat.layers if isinstance(l, quantize.QuantizeConvBatchNorm)]
    assert len(fused) == 3
    layer = fused[1]
    s, _ = layer._folding()
    kernel = keras.ops.convert_to_numpy(layer._quantize_kernel(layer.conv.kernel * s))
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127.0
    levels = kernel / scale
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert np.abs(np.round(levels)).max() == 127


def test_training_updates_batch_norm_statistics(digits32):
    (x_train, y_train), _ = digits32
    model = small_cnn()
    qat = quantize.quantize_model(model)
    fused = [l for l in qat.layers if isinstance(l, quantize.QuantizeConvBatchNorm)][0]
    before = keras.ops.convert_to_numpy(fused.batch_norm.moving_mean).copy()
    _compile(qat, 1e-3)
    qat.fit(x_train[:64], y_train[:64], epochs=1, batch_size=32, verbose=0)
    after = keras.ops.convert_to_numpy(fused.batch_norm.moving_mean)
    assert not np.allclose(before, after)
    # The float model's BatchNorm is untouched.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.layers[2].moving_mean), np.zeros(16)
    )
