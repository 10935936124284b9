"""Inception-ResNet's residual, keras.applications' `CustomScaleLayer`
(`x + r * scale`), quantizes as TFLite runs it: MUL by the constant with a
range of its own, then ADD, a ReLU after it fused into the ADD.

Before, `quantize_model(InceptionResNetV2(...))` refused the model ("no
default quantization" for its 40 CustomScaleLayers)."""

import keras
import numpy as np
from tflite_helpers import output_steps

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization.inside import ScaledSumQuantizeConfig

L = keras.layers


def _block_model():
    """Two Inception-ResNet residuals: one followed by a ReLU, the last
    (`activation=None` in keras.applications) by none."""
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    branch = L.ReLU(name="b_relu")(L.BatchNormalization(name="b_bn")(
        L.Conv2D(8, 1, use_bias=False, name="b")(x)))
    x = CustomScaleLayer(0.17, name="residual")([x, L.Conv2D(16, 1, name="up")(branch)])
    x = L.Activation("relu", name="residual_ac")(x)
    x = CustomScaleLayer(1.0, name="last")([x, L.Conv2D(16, 1, name="up_last")(x)])
    return keras.Model(inputs, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(x)))


def test_inception_resnet_residual_lands_on_the_tflites_integers(tmp_path):
    x = np.random.default_rng(0).uniform(size=(64, 12, 12, 3)).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(_block_model())
    residual, last = qat.get_layer("quant_residual"), qat.get_layer("quant_last")
    assert isinstance(residual.quantize_config, ScaledSumQuantizeConfig)
    # The ReLU after it is fused into the ADD: its range is the op's.
    assert not residual.quantize_config.quantize_output
    assert last.quantize_config.quantize_output
    for k in range(0, len(x), 16):
        qat(x[k:k + 16], training=True)

    path = tmp_path / "m.tflite"
    report = export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    assert report.int8_fraction == 1.0
    fidelity = export.layer_fidelity(qat, path, x, examples=4)
    assert fidelity.first_departure is None, str(fidelity)
    for name in ("quant_residual_ac", "quant_last"):
        row = fidelity.row(name)
        assert row.compared and row.local_share <= 0.01, row
    steps = output_steps(qat, path, x)
    assert np.mean(steps > 0.5) <= 0.05 and steps.max() < 1.01


def test_inception_resnet_residual_trains_and_round_trips(tmp_path):
    x = np.random.default_rng(1).uniform(size=(32, 12, 12, 3)).astype("float32")
    qat = tfmot.quantization.keras.quantize_model(_block_model())
    # Two steps, eagerly: they run faster than tracing the step.
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)
    qat.fit(x, np.arange(32) % 10, batch_size=16, epochs=1, verbose=0)
    product = [v for v in qat.get_layer("quant_residual").weights if "product" in v.path]
    assert product and all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in product)
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)),
                               keras.ops.convert_to_numpy(qat(x, training=False)), atol=1e-6)
