"""A Conv2DTranspose with its own ReLU: TFLite's int8 TRANSPOSE_CONV does
not fuse it (the converter writes a RELU op after it), so QAT quantizes the
transposed convolution's output and the ReLU's. With one range after the
ReLU only (as for a Conv2D, whose CONV_2D fuses it), the converter had left
the TRANSPOSE_CONV float between a DEQUANTIZE and a QUANTIZE, and 11% of
the outputs were on another integer than the Keras model's."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.export.runtime import TFLiteModel

L = keras.layers


@pytest.mark.parametrize("activation", ["relu", "relu6", "sigmoid"])
def test_exports_integer_and_lands_on_xnnpacks_integers(activation, tmp_path):
    x = np.random.default_rng(0).normal(size=(48, 8, 8, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    # A fixed batch size: XNNPACK runs the TRANSPOSE_CONV (its output shape
    # is a constant; see tests/export/test_delegation.py).
    model = keras.Sequential([
        keras.Input((8, 8, 3), batch_size=1),
        L.Conv2DTranspose(8, 3, strides=2, padding="same", activation=activation),
        L.Conv2D(4, 3, padding="same"),
    ])
    qat = tfmot.quantization.keras.quantize_model(model)
    for k in range(0, 48, 16):
        qat(x[k:k + 16], training=True)
    path = tmp_path / "m.tflite"
    report = export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    assert report.int8_fraction == 1.0, report.operators
    assert "TRANSPOSE_CONV" in report.operators and "DEQUANTIZE" not in report.operators

    runner = TFLiteModel(path.read_bytes())
    assert runner.xnnpack_delegation().outside.get("TRANSPOSE_CONV int8") is None
    tflite = np.concatenate([runner.predict(x[i:i + 1]) for i in range(len(x))])
    steps = np.abs(np.asarray(qat(x, training=False)) - tflite) / runner.output["quantization"][0]
    assert np.mean(steps > 0.5) < 1e-3 and steps.max() <= 2.01, (np.mean(steps > 0.5), steps.max())


def test_the_relu_gets_a_range_before_it_and_a_conv2d_does_not():
    def config(layer):
        qat = tfmot.quantization.keras.quantize_model(
            keras.Sequential([keras.Input((4, 4, 3)), layer]))
        return qat.layers[-1].quantize_config

    transposed = config(L.Conv2DTranspose(2, 3, activation="relu"))
    assert transposed.activation_attrs == ["activation"] and not transposed.quantize_output
    direct = config(L.Conv2D(2, 3, activation="relu"))
    assert direct.activation_attrs == [] and direct.quantize_output
