"""`xnnpack_delegation`: which operators LiteRT's XNNPACK delegate runs,
checked against models whose split is known, and in `export_model`'s
report."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmot_lite import export
from tfmot_lite.export import convert
from tfmot_lite.export.runtime import TFLiteModel

L = keras.layers


def _model(block):
    """Two convolutions, `block` between them: one that stays in XNNPACK or
    one it leaves to LiteRT's kernels."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 4))
    a = L.Add()([L.Conv2D(8, 1)(inputs), L.Conv2D(8, 1)(inputs)])
    return keras.Model(inputs, L.Conv2D(4, 1)(block(a)))


def _int8(model):
    rng = np.random.default_rng(0)
    samples = [rng.normal(size=(1, 12, 12, 4)).astype("float32") for _ in range(16)]
    return convert.to_tflite(
        model, optimizations=[tf.lite.Optimize.DEFAULT],
        representative_data=np.concatenate(samples),
        inference_input_type=tf.int8, inference_output_type=tf.int8)


def _ops(runner):
    return [d["op_name"] for d in runner.interpreter._get_ops_details()
            if d["op_name"] != "DELEGATE"]


def test_float_model_runs_in_one_partition():
    runner = TFLiteModel(convert.to_tflite(_model(L.MaxPooling2D(3, 1, "same"))))
    delegation = runner.xnnpack_delegation()
    assert delegation.complete and delegation.partitions == 1
    assert delegation.operators == len(_ops(runner)) and delegation.outside == {}
    assert str(delegation) == (
        f"XNNPACK runs {delegation.operators} of {delegation.operators} operators (1 partition)")


def test_int8_average_pooling_is_left_to_litert():
    """XNNPACK takes no int8 AVERAGE_POOL_2D (this LiteRT): the convolutions
    before and after it land in two partitions."""
    runner = TFLiteModel(_int8(_model(L.AveragePooling2D(3, 1, "same"))))
    delegation = runner.xnnpack_delegation()
    assert delegation.outside == {"AVERAGE_POOL_2D int8": 1}
    assert delegation.partitions == 2
    assert delegation.delegated == delegation.operators - 1 == len(_ops(runner)) - 1
    assert "LiteRT's built-in kernels run AVERAGE_POOL_2D int8 x1" in str(delegation)


def test_without_xnnpack_nothing_is_delegated():
    flatbuffer = convert.to_tflite(_model(L.ReLU()))
    delegation = TFLiteModel(flatbuffer, xnnpack=False).xnnpack_delegation()
    assert delegation.partitions == 0 and delegation.delegated == 0
    assert sum(delegation.outside.values()) == delegation.operators > 0


def test_export_report_says_what_xnnpack_runs(tmp_path):
    model = _model(L.AveragePooling2D(3, 1, "same"))
    x = np.random.default_rng(1).normal(size=(24, 12, 12, 4)).astype("float32")
    reports = [export.export_model(model, "float32", latency_runs=3, name="float"),
               export.export_model(model, "int8", representative_data=x, int8_io=True,
                                   latency_runs=3, name="int8")]
    assert reports[0].xnnpack["outside"] == {} and reports[0].xnnpack["partitions"] == 1
    assert reports[1].xnnpack["outside"] == {"AVERAGE_POOL_2D int8": 1}
    assert "AVERAGE_POOL_2D int8 x1" in str(reports[1])
    header, rule, *rows = export.format_reports(reports).splitlines()
    assert "XNNPACK ops" in header
    share = reports[1].xnnpack["delegated"] / reports[1].xnnpack["operators"]
    assert f"{share:.0%}" in rows[1] and "100%" in rows[0]
    loaded = export.load_json(export.save_json(reports, tmp_path / "r.json"))
    assert loaded[1].xnnpack == reports[1].xnnpack


@pytest.mark.parametrize("block", [L.ReLU(), L.AveragePooling2D(3, 1, "same")])
def test_counts_add_up(block):
    runner = TFLiteModel(_int8(_model(lambda a: L.Add()([block(a), a]))))
    delegation = runner.xnnpack_delegation()
    assert delegation.delegated + sum(delegation.outside.values()) == delegation.operators
    assert not delegation.complete


def _upsampler(batch_size=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), batch_size=batch_size)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, L.Conv2DTranspose(4, 3, strides=2, padding="same")(x))


def test_transpose_conv_reading_the_batch_size_is_left_to_litert_and_says_why():
    """With the batch size free, a Conv2DTranspose's output shape is
    computed from it at run time (SHAPE, STRIDED_SLICE, PACK), and XNNPACK
    takes no TRANSPOSE_CONV without a constant one. A model built on a
    fixed batch size exports the shape as a constant: all in XNNPACK."""
    free = TFLiteModel(convert.to_tflite(_upsampler())).xnnpack_delegation()
    assert free.outside["TRANSPOSE_CONV float32"] == 1, free.outside
    [note] = free.notes
    assert note.startswith("1 TRANSPOSE_CONV left to LiteRT") and "batch_size=1" in note
    assert note in str(free)

    fixed = TFLiteModel(convert.to_tflite(_upsampler(batch_size=1))).xnnpack_delegation()
    assert fixed.complete and fixed.partitions == 1 and fixed.notes == []


def test_qat_transpose_conv_lands_on_xnnpacks_integers_once_xnnpack_runs_it(tmp_path):
    """The same QAT model, int8: run by XNNPACK (fixed batch size), the
    .tflite's outputs are the Keras model's integers, every one; run by
    LiteRT's built-in kernel (free batch size), it rounds a few outputs one
    step up, as its CONV_2D does."""
    import tfmot_lite as tfmot

    x = np.random.default_rng(0).normal(size=(48, 8, 8, 3)).astype("float32")
    off = {}
    for batch_size in (None, 1):
        qat = tfmot.quantization.keras.quantize_model(_upsampler(batch_size))
        for k in range(0, 48, 16):
            qat(x[k:k + 16], training=True)
        path = tmp_path / f"{batch_size}.tflite"
        export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
        runner = TFLiteModel(path.read_bytes())
        tflite = np.concatenate([runner.predict(x[i:i + 1]) for i in range(len(x))])
        steps = (np.asarray(qat(x, training=False)) - tflite) / runner.output["quantization"][0]
        assert np.abs(steps).max() < 1.01
        off[batch_size] = np.mean(np.abs(steps) > 0.5)
    assert off[1] == 0.0 and 0 < off[None] < 0.01, off
