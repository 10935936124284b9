"""`to_tflite` stores batch-sized reshapes with constant shapes
(`export/static_shapes.py`): Dense on inputs of rank > 2, Reshape and
Flatten no longer leave SHAPE/GATHER/PACK arithmetic in the .tflite, so
XNNPACK runs the whole model as one partition, with the same outputs and the
batch size still free."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmot_lite as tfmot
from tfmot_lite.export import convert, static_shapes
from tfmot_lite.export.runtime import TFLiteModel

L = keras.layers
SHAPE_OPS = {"SHAPE", "GATHER", "STRIDED_SLICE", "REDUCE_PROD", "PACK"}


def _squeeze_excite_cnn():
    """EfficientNet's squeeze-and-excite reshape, ConvNeXt's Dense over
    pixels, VGG's Flatten."""
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, activation="relu")(inputs)
    se = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(x))
    x = L.Multiply()([x, L.Conv2D(8, 1, activation="sigmoid")(se)])
    x = L.Dense(6, activation="relu")(x)
    return keras.Model(inputs, L.Dense(4)(L.Flatten()(x)))


def _sequence_model():
    inputs = keras.Input((10, 16))
    x = L.Dense(24, activation="gelu")(inputs)
    x = L.MultiHeadAttention(2, 8)(x, x)
    return keras.Model(inputs, L.Dense(4)(L.GlobalAveragePooling1D()(x)))


def _without_context(monkeypatch):
    monkeypatch.setattr(static_shapes, "batch_free_shapes",
                        lambda tf: contextlib.nullcontext())


def _ops(runner):
    return {d["op_name"] for d in runner.interpreter._get_ops_details()}


@pytest.mark.parametrize("make", [_squeeze_excite_cnn, _sequence_model])
@pytest.mark.parametrize("freeze_limit", [convert.FREEZE_MAX_BYTES, 0])
def test_one_partition_same_outputs(make, freeze_limit, monkeypatch):
    keras.utils.set_random_seed(0)
    model = make()
    x = np.random.default_rng(0).uniform(size=(5, *model.input_shape[1:])).astype("float32")
    monkeypatch.setattr(convert, "FREEZE_MAX_BYTES", freeze_limit)  # 0: model.export
    static = TFLiteModel(convert.to_tflite(model))
    with monkeypatch.context() as patch:
        _without_context(patch)
        dynamic = TFLiteModel(convert.to_tflite(model))
    # The old graph: shape arithmetic that splits XNNPACK's partitions.
    assert SHAPE_OPS & _ops(dynamic)
    assert dynamic.xnnpack_delegation().partitions > 1
    assert any(" RESHAPE left to LiteRT: " in note
               for note in dynamic.xnnpack_delegation().notes)
    delegation = static.xnnpack_delegation()
    assert not SHAPE_OPS & _ops(static), _ops(static)
    assert delegation.complete and delegation.partitions == 1, delegation
    np.testing.assert_allclose(static.predict(x), dynamic.predict(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(static.predict(x), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_batch_stays_free():
    keras.utils.set_random_seed(0)
    model = _squeeze_excite_cnn()
    runner = TFLiteModel(convert.to_tflite(model))
    assert runner.input["shape_signature"][0] == -1
    x = np.random.default_rng(1).uniform(size=(3, 12, 12, 3)).astype("float32")
    interpreter = runner.interpreter
    interpreter.resize_tensor_input(runner.input["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(runner.input["index"], x)
    interpreter.invoke()
    batched = interpreter.get_tensor(runner.output["index"])
    assert batched.shape == (3, 4)
    np.testing.assert_allclose(batched, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_qat_int8_same_integers():
    keras.utils.set_random_seed(0)
    qat = tfmot.quantization.keras.quantize_model(_squeeze_excite_cnn())
    x = np.random.default_rng(2).uniform(size=(16, 12, 12, 3)).astype("float32")
    qat(x, training=True)
    settings = dict(optimizations=[tf.lite.Optimize.DEFAULT],
                    inference_input_type=tf.int8, inference_output_type=tf.int8)
    static = TFLiteModel(convert.to_tflite(qat, **settings))
    with pytest.MonkeyPatch.context() as patch:
        _without_context(patch)
        dynamic = TFLiteModel(convert.to_tflite(qat, **settings))
    assert dynamic.xnnpack_delegation().partitions > 1
    assert any(" RESHAPE left to LiteRT: " in note
               for note in dynamic.xnnpack_delegation().notes)
    assert static.xnnpack_delegation().complete
    np.testing.assert_array_equal(static.predict(x), dynamic.predict(x))


def test_backend_restored_even_on_error():
    from keras.src.backend.tensorflow import numpy as backend_numpy

    before = backend_numpy.matmul, backend_numpy.reshape
    with pytest.raises(RuntimeError):
        with static_shapes.batch_free_shapes(tf):
            assert backend_numpy.matmul is not before[0]
            raise RuntimeError("trace failed")
    assert (backend_numpy.matmul, backend_numpy.reshape) == before


def test_reshapes_and_matmuls_keep_their_values():
    """Inside the context: shapes without a leading size tensor and integer
    matmuls go to Keras' own functions; the rewritten ones give the same
    values."""
    with static_shapes.batch_free_shapes(tf):
        x = tf.reshape(tf.range(24.0), (2, 3, 4))
        assert keras.ops.reshape(x, (4, -1)).shape == (4, 6)
        assert keras.ops.reshape(x, (tf.constant(6), 4)).shape == (6, 4)
        ints = tf.ones((2, 3, 4), tf.int32)
        assert keras.ops.matmul(ints, tf.ones((4, 5), tf.int32)).shape == (2, 3, 5)
        np.testing.assert_array_equal(
            keras.ops.matmul(x, tf.eye(4)), x)
        sparse = tf.sparse.from_dense(tf.eye(4))  # Keras' own sparse path
        np.testing.assert_array_equal(keras.ops.matmul(sparse, tf.ones((4, 3))), np.ones((4, 3)))


def test_another_keras_layout_leaves_shapes_as_keras_writes_them(monkeypatch):
    from keras.src.backend.tensorflow import numpy as backend_numpy

    matmul = backend_numpy.matmul
    monkeypatch.delattr(backend_numpy, "reshape")
    with static_shapes.batch_free_shapes(tf):
        assert backend_numpy.matmul is matmul
    assert backend_numpy.matmul is matmul and not hasattr(backend_numpy, "reshape")
