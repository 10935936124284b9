"""inspect_tflite: per-operator weights and storage, XNNPACK sparse verdict."""

import contextlib
import io

import keras
import numpy as np
import pytest

from tfmot_lite import export

L = keras.layers


def guide_model(keepdims=True, stem_padding="valid"):
    inputs = keras.Input((32, 32, 3))
    x = L.ZeroPadding2D(1)(inputs) if stem_padding == "valid" else inputs
    x = L.Conv2D(8, 3, strides=2, padding=stem_padding)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.ReLU()(L.DepthwiseConv2D(3, padding="same")(x))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1, name="pw1")(x)))
    x = L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(1)(x))
    x = L.ReLU()(L.Conv2D(32, 1, name="pw2")(x))
    x = L.GlobalAveragePooling2D(keepdims=keepdims)(x)
    return keras.Model(inputs, L.Dense(10)(L.Flatten()(x)))


def zero_smallest(model, fraction):
    """Sets the smallest `fraction` of each 1x1 kernel to zero, exactly."""
    for name in ("pw1", "pw2"):
        kernel = model.get_layer(name).kernel
        values = keras.ops.convert_to_numpy(kernel)
        flat = np.abs(values).reshape(-1)
        order = np.argsort(flat, kind="stable")
        mask = np.ones_like(flat)
        mask[order[: int(round(fraction * flat.size))]] = 0
        kernel.assign(values * mask.reshape(values.shape))
    return model


def convert(model, sparse=True):
    with contextlib.redirect_stdout(io.StringIO()):
        if sparse:
            return export.to_sparse_tflite(model)
        return export.to_tflite(model)


@pytest.fixture(scope="module")
def sparse_file():
    keras.utils.set_random_seed(1)
    return convert(zero_smallest(guide_model(), 0.8))


def test_sparse_export_is_found_sparse_and_ready(sparse_file):
    report = export.inspect_tflite(sparse_file)
    assert report.sparse_ready, report.reasons
    assert report.reasons == []
    assert report.densify_count == 2
    pointwise = [op for op in report.by_type("CONV_2D") if op.weight_shape[1:3] == (1, 1)]
    assert [op.weight_shape for op in pointwise] == [(16, 1, 1, 8), (32, 1, 1, 16)]
    for op in pointwise:
        assert op.sparse_storage
        assert op.zero_fraction == pytest.approx(0.8, abs=0.01)
        assert op.role == "1x1"
    (stem,) = [op for op in report.by_type("CONV_2D") if op.weight_shape == (8, 3, 3, 3)]
    assert stem.role == "start" and not stem.sparse_storage and stem.zero_fraction == 0
    for op in report.by_type("DEPTHWISE_CONV_2D"):
        assert op.role == "inside" and not op.sparse_storage
    assert [op.role for op in report.by_type("MEAN")] == ["end"]
    (fc,) = report.by_type("FULLY_CONNECTED")
    assert fc.role == "" and fc.weight_shape == (10, 32)
    assert "DENSIFY" not in [op.op_type for op in report.operators]
    # 640 float 1x1 weights at 80% zeros: the sparse values take 128 x 4 bytes.
    dense = export.inspect_tflite(convert(zero_smallest(guide_model(), 0.8), sparse=False))
    assert report.constant_bytes < dense.constant_bytes - 4 * 640 // 2
    text = str(report)
    assert "XNNPACK sparse-inference preconditions hold: yes" in text
    assert "16x1x1x8" in text and "sparse" in text


def test_inspect_reads_a_path(sparse_file, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(sparse_file)
    assert export.inspect_tflite(str(path)).sparse_ready
    assert export.inspect_tflite(path).size_bytes == len(sparse_file)


def test_too_dense_model_gets_a_negative_verdict_with_the_reason():
    report = export.inspect_tflite(convert(zero_smallest(guide_model(), 0.5)))
    assert not report.sparse_ready
    (reason,) = report.reasons
    assert reason.startswith("zeros: 50.0% of the 640 weights of 2 1x1 CONV_2D")
    assert "needs at least 66.7%" in reason


def test_dense_storage_and_flat_mean_are_reasons():
    model = zero_smallest(guide_model(keepdims=False), 0.8)
    report = export.inspect_tflite(convert(model, sparse=False))
    assert not report.sparse_ready
    names = [reason.split(":")[0] for reason in report.reasons]
    assert names == ["end", "storage"]
    assert "keep_dims=False" in report.reasons[0]
    assert "EXPERIMENTAL_SPARSITY" in report.reasons[1]
    assert not any(op.sparse_storage for op in report.operators)
    fractions = [
        op.zero_fraction for op in report.by_type("CONV_2D") if op.weight_shape[1] == 1
    ]
    assert fractions == [pytest.approx(0.8, abs=0.01)] * 2


def test_start_convolution_with_same_padding_is_the_reason():
    model = zero_smallest(guide_model(stem_padding="same"), 0.8)
    report = export.inspect_tflite(convert(model))
    (reason,) = report.reasons
    assert reason.startswith("start:")
    assert "padding top/bottom/left/right (0, 1, 0, 1)" in reason


def test_unsupported_operator_inside_the_subgraph_is_named():
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2)(L.ZeroPadding2D(1)(inputs))
    x = L.MaxPooling2D()(L.Conv2D(16, 1, name="pw1")(x))
    x = L.Conv2D(32, 1, name="pw2")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    model = zero_smallest(keras.Model(inputs, L.Flatten()(x)), 0.8)
    report = export.inspect_tflite(convert(model))
    assert [r.split(":")[0] for r in report.reasons] == ["operators"]
    assert "MAX_POOL_2D is not supported inside a sparse subgraph" in report.reasons[0]
    assert [op.role for op in report.by_type("MAX_POOL_2D")] == ["unsupported"]
    # The walk goes on past it: the second 1x1 convolution and the end count.
    assert [op.role for op in report.by_type("CONV_2D")] == ["start", "1x1", "1x1"]
    assert [op.role for op in report.by_type("MEAN")] == ["end"]
