"""`to_tflite` writes a small model's SavedModel with its weights frozen
into the graph (fast for many small variables) and a large one through
`model.export` (freezing copies every weight byte several times: a QAT
ResNet50 peaked 2 GB above the model that way). Both give the same .tflite,
with the same signature: for a model of several inputs, of dict inputs and
outputs, and one holding a subclassed block (a `SublayerHost`), too.
The converter's own full garbage collection walks only what the conversion
made."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from sublayer_models import ResidualBlock
from tflite_helpers import op_report

import tfmot_lite as tfmot
from tfmot_lite.export import convert

L = keras.layers


def _qat_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3), name="image")
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, use_bias=False)(inputs)))
    x = L.GlobalAveragePooling2D()(L.AveragePooling2D(2)(x))
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, L.Dense(4)(x)))
    x = np.random.default_rng(0).uniform(size=(32, 12, 12, 3)).astype("float32")
    for k in range(0, 32, 8):
        qat(x[k:k + 8], training=True)
    return qat, x


def _convert(qat, monkeypatch, limit, options=None):
    """`to_tflite` with `FREEZE_MAX_BYTES` set to `limit`: `(flatbuffer,
    whether the variables were frozen)`."""
    monkeypatch.setattr(convert, "FREEZE_MAX_BYTES", limit)
    frozen = []
    original = convert._frozen_call
    monkeypatch.setattr(convert, "_frozen_call",
                        lambda *a: frozen.append(True) or original(*a))
    if options is None:
        options = dict(optimizations=[tf.lite.Optimize.DEFAULT],
                       inference_input_type=tf.int8, inference_output_type=tf.int8)
    flatbuffer = convert.to_tflite(qat, **options)
    return flatbuffer, bool(frozen)


def _outputs(flatbuffer, x):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    scale, zero = runner.get_input_details()["image"]["quantization"]
    q = np.clip(np.round(x / scale + zero), -128, 127).astype("int8")
    return np.concatenate([runner(image=q[i:i + 1])["output_0"] for i in range(len(q))])


def test_the_frozen_and_the_exported_savedmodel_give_the_same_tflite(monkeypatch):
    qat, x = _qat_cnn()
    assert convert.weight_bytes(qat) < convert.FREEZE_MAX_BYTES
    small, was_frozen = _convert(qat, monkeypatch, convert.FREEZE_MAX_BYTES)
    large, large_frozen = _convert(qat, monkeypatch, 0)
    assert was_frozen and not large_frozen
    assert op_report(small) == op_report(large)
    np.testing.assert_array_equal(_outputs(small, x), _outputs(large, x))


def _two_inputs_model():
    """Two inputs (a list), two outputs."""
    keras.utils.set_random_seed(0)
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    hidden = L.Dense(8, activation="relu")(L.Concatenate()([a, b]))
    return keras.Model([a, b], [L.Dense(3)(hidden), L.Dense(2)(hidden)])


def _dict_model():
    """Dict inputs, an int32 one among them, under keys other than the
    inputs' names (the signature names them as `model.export` does: by
    input name) and sorting in another order; dict outputs."""
    keras.utils.set_random_seed(0)
    inputs = {"values": keras.Input((6,), name="a_values"),
              "ids": keras.Input((5,), dtype="int32", name="z_ids")}
    ids = L.GlobalAveragePooling1D()(L.Embedding(20, 4)(inputs["ids"]))
    hidden = L.Dense(8, activation="relu")(L.Concatenate()([inputs["values"], ids]))
    return keras.Model(inputs, {"scores": L.Dense(3)(hidden), "extra": L.Dense(2)(hidden)})


def _hosted_block_qat():
    """A QAT model whose Conv2D, BatchNorm and Dense layers sit in a user's
    subclassed block: the block is a `SublayerHost` in the wrapped graph."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = L.GlobalAveragePooling2D()(ResidualBlock(4)(inputs))
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inputs, L.Dense(3)(x)))
    qat(np.random.default_rng(0).normal(size=(8, 8, 8, 4)).astype("float32"), training=True)
    return qat


def _example_inputs(flatbuffer, seed=0):
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(seed)
    details = Interpreter(model_content=flatbuffer).get_signature_runner().get_input_details()
    return {name: (rng.integers(0, 20, d["shape"]) if d["dtype"] == np.int32
                   else rng.normal(size=d["shape"])).astype(d["dtype"])
            for name, d in details.items()}


@pytest.mark.parametrize("build", [_two_inputs_model, _dict_model, _hosted_block_qat],
                         ids=["two_inputs", "dict_io", "hosted_block"])
def test_models_of_several_dict_or_hosted_parts_freeze_to_the_same_tflite(build, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    model = build()
    options = dict(optimizations=[tf.lite.Optimize.DEFAULT]) if build is _hosted_block_qat else {}
    small, was_frozen = _convert(model, monkeypatch, convert.FREEZE_MAX_BYTES, options)
    large, large_frozen = _convert(model, monkeypatch, 0, options)
    assert was_frozen and not large_frozen
    signatures = [Interpreter(model_content=f).get_signature_list() for f in (small, large)]
    assert signatures[0] == signatures[1]
    assert op_report(small) == op_report(large)
    inputs = _example_inputs(small)
    outputs = [Interpreter(model_content=f).get_signature_runner()(**inputs) for f in (small, large)]
    assert sorted(outputs[0]) == sorted(outputs[1])
    for name in outputs[0]:
        np.testing.assert_array_equal(outputs[0][name], outputs[1][name])


def test_weight_bytes_counts_every_variable():
    qat, _ = _qat_cnn()
    expected = sum(np.asarray(keras.ops.convert_to_numpy(v)).nbytes for v in qat.variables)
    assert convert.weight_bytes(qat) == expected > 0


def test_the_converters_collection_leaves_the_older_objects_alone(monkeypatch):
    qat, _ = _qat_cnn()
    gc.unfreeze()  # the suite's conftest freezes after each test, as a user's process does not
    frozen_at_collect = []
    collect = gc.collect
    monkeypatch.setattr(gc, "collect",
                        lambda *a: frozen_at_collect.append(gc.get_freeze_count()) or collect(*a))
    convert.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    # TFLiteConverter.convert collects once; the process's objects (the
    # model, Keras, TensorFlow) sit frozen meanwhile, and are back after.
    assert frozen_at_collect and all(count > 10_000 for count in frozen_at_collect)
    assert gc.get_freeze_count() == 0


def test_garbage_older_than_the_block_is_collected_after_it():
    class Cycle:
        def __init__(self):
            self.itself = self

    gc.unfreeze()
    gc.disable()  # no automatic collection between the steps
    try:
        old = weakref.ref(Cycle())
        with convert.objects_before_frozen():
            new = weakref.ref(Cycle())
            gc.collect()
            assert new() is None and old() is not None
        gc.collect()
        assert old() is None
    finally:
        gc.enable()


def test_a_freeze_of_the_callers_own_is_left_as_it_was():
    gc.freeze()  # as a server does before it forks
    frozen = gc.get_freeze_count()
    assert frozen > 10_000
    # A frozen object that loses its last reference still leaves the count
    # (freed by reference counting, from any thread); an unfreeze empties it.
    with convert.objects_before_frozen():
        assert gc.get_freeze_count() > frozen // 2
    assert gc.get_freeze_count() > frozen // 2
