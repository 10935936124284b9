"""A pooling read by a Concatenate and by another layer keeps a range of
its own (`QuantizeSameScale`), so every reader sees what the .tflite holds.

DenseNet's pattern: the pooling between dense blocks (and the stem's max
pooling) feeds the next block's BatchNorm and its concatenation. Without a
range of its own the converter hands the pooling the concatenation's scale
for every reader; the Keras model had not rounded to it (10-17% of the
pooling's outputs a step off in a trained DenseNet121).
"""

import keras
import numpy as np
import pytest
from tflite_helpers import output_steps

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization.same_scale import QuantizeSameScale

L = keras.layers


def _dense_block_entry():
    """The stem (Conv-BN-ReLU, padding, max pooling) and a transition
    (1x1 convolution, average pooling), each pooling read by a
    BatchNorm-ReLU-Conv branch and by the concatenation after it."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(16, 3, use_bias=False, name="stem")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.MaxPooling2D(3, 2, name="max_pool")(x)
    branch = L.ReLU(name="b1_relu")(L.BatchNormalization(name="b1_bn")(x))
    x = L.Concatenate(name="cat1")([x, L.Conv2D(8, 1, name="b1_conv")(branch)])
    x = L.Conv2D(16, 1, use_bias=False, name="transition")(x)
    x = L.AveragePooling2D(2, 2, name="avg_pool")(x)
    branch = L.ReLU(name="b2_relu")(L.BatchNormalization(name="b2_bn")(x))
    x = L.Concatenate(name="cat2")([x, L.Conv2D(8, 1, name="b2_conv")(branch)])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x))


def _qat(x):
    qat = tfmot.quantization.keras.quantize_model(_dense_block_entry())
    for k in range(0, len(x), 16):
        qat(x[k:k + 16], training=True)  # the ranges follow the batches
    return qat


def _x(n=64):
    return np.random.default_rng(1).uniform(size=(n, 16, 16, 3)).astype("float32")


def test_a_pooling_that_a_concatenation_shares_lands_on_the_tflites_integers(tmp_path):
    x = _x()
    qat = _qat(x)
    for name in ("quant_max_pool", "quant_avg_pool"):
        assert isinstance(qat.get_layer(name), QuantizeSameScale), name
    # Read only by the pooling (the stem through the padding): no range of
    # its own, the pooling's rounds it.
    assert not qat.get_layer("quant_transition")._output_quantizers
    assert not qat.get_layer("quant_stem").quantize_output

    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    fidelity = export.layer_fidelity(qat, path, x, examples=4)
    for name in ("quant_max_pool", "quant_avg_pool"):
        row = fidelity.row(name)
        assert row.compared and row.local_share <= 0.01, row
    steps = output_steps(qat, path, x)
    # Measured: 1.4% of the logits one step off, none more; before the
    # poolings had ranges of their own, 46% and up to 2 steps.
    assert np.mean(steps > 0.5) <= 0.05 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())


def test_the_pooling_range_trains_saves_and_strips(tmp_path):
    x, y = _x(32), np.arange(32) % 10
    qat = _qat(x)
    # Two steps, eagerly: they run faster than tracing the step.
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)
    pool = qat.get_layer("quant_avg_pool")
    before = [keras.ops.convert_to_numpy(v) for v in pool.weights]
    qat.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert any(not np.array_equal(a, keras.ops.convert_to_numpy(b))
               for a, b in zip(before, pool.weights))

    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("quant_avg_pool"), QuantizeSameScale)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)),
                               keras.ops.convert_to_numpy(qat(x, training=False)), atol=1e-6)

    stripped = tfmot.quantization.keras.strip_quantization(qat)
    kinds = {type(layer).__name__ for layer in stripped.layers}
    assert {"MaxPooling2D", "AveragePooling2D"} <= kinds
    assert not any(isinstance(layer, QuantizeSameScale) for layer in stripped.layers)


def test_a_pooling_one_layer_reads_keeps_its_inputs_scale():
    """Read by one layer, or only by a Concatenate, a pooling stays as it
    was: the converter keeps its input's scale."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    a = L.MaxPooling2D(2, name="alone")(L.Conv2D(4, 1, name="c1")(inputs))
    b = L.AveragePooling2D(2, name="joined")(L.Conv2D(4, 1, name="c2")(inputs))
    out = L.Concatenate(name="cat")([L.Conv2D(4, 1, name="c3")(a), b])
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, out))
    assert not any(isinstance(layer, QuantizeSameScale) for layer in qat.layers)


@pytest.mark.parametrize("signed", [False, True], ids=["from_zero", "both_signs"])
def test_an_average_lands_where_tflites_average_pool_puts_its_ties(signed, tmp_path):
    """A 2x2 average of int8 values ties on a quarter of its outputs; TFLite's
    AVERAGE_POOL_2D (XNNPACK and the built-in kernel) rounds the mean of the
    stored integers half away from zero, FakeQuant half up. The wrapper's
    output is the device's integer on every element, ties included."""
    x = np.random.default_rng(0).normal(size=(64, 12, 12, 16)).astype("float32")
    x = x if signed else np.abs(x)
    model = keras.Sequential([keras.Input((12, 12, 16)),
                              QuantizeSameScale(L.AveragePooling2D(2, padding="same"))])
    for k in range(0, 64, 16):
        model(x[k:k + 16], training=True)
    path = tmp_path / "avg.tflite"
    export.export_model(model, "int8", path=path, int8_io=True, latency_runs=1)
    for xnnpack in (True, False):
        steps = output_steps(model, path, x, xnnpack)
        assert steps.max() < 0.01, (xnnpack, np.mean(steps > 0.5))


def test_a_pooling_whose_input_another_layer_reads_stays_as_it_was(tmp_path):
    """Two ranges may not meet at a same-scale op (the converter refuses
    the model): where the tensor a pooling reads is read elsewhere too, the
    pooling keeps no range and the model converts."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    t = L.Conv2D(8, 1, name="t")(inputs)
    pool = L.AveragePooling2D(2, name="pool")(t)
    other = L.Conv2D(4, 2, strides=2, name="other")(t)
    branch = L.Conv2D(4, 1, name="branch")(L.ReLU()(L.BatchNormalization()(pool)))
    out = L.Concatenate(name="cat")([pool, branch, other])
    x = _x(32)[:, :8, :8]
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, out))
    for k in range(0, len(x), 16):
        qat(x[k:k + 16], training=True)
    assert not any(isinstance(layer, QuantizeSameScale) for layer in qat.layers)
    export.export_model(qat, "int8", path=tmp_path / "m.tflite", latency_runs=1)
