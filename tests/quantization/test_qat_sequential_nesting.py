"""QAT of Sequential models holding nested models (found by the model
fuzzer, tests/fuzz).

* a Functional model with a BatchNormalization, nested in a Sequential, was
  cloned by Keras' own recursion, which calls layers with the kwargs it
  recorded (`mask=None`); `QuantizeBatchNorm` does not take `mask`, so
  `quantize_model` raised a TypeError from inside Keras;
* the rewritten Sequential lost its input's name, which names the input of
  the exported .tflite (its signature).
"""

import keras
import numpy as np

from tfmot_lite import export
from tfmot_lite.quantization import keras as quantization

L = keras.layers


def nested_batch_norm_model():
    inner_in = keras.Input((4, 4, 2))
    inner = keras.Model(inner_in, L.BatchNormalization(name="bn")(inner_in), name="inner")
    return keras.Sequential([
        keras.Input((4, 4, 2), name="pixels"), inner, L.Conv2D(3, 1, name="conv"),
        L.GlobalAveragePooling2D(), L.Dense(2, name="head"),
    ], name="outer")


def test_functional_with_batch_norm_nested_in_a_sequential_quantizes(tmp_path):
    model = nested_batch_norm_model()
    qat = quantization.quantize_model(model)
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2)).astype("float32")
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, np.zeros(8, "int32"), batch_size=4, verbose=0)
    assert type(qat.get_layer("inner").get_layer("quant_bn")).__name__ == "QuantizeBatchNorm"
    qat.save(tmp_path / "qat.keras")
    loaded = keras.models.load_model(tmp_path / "qat.keras")
    np.testing.assert_array_equal(qat(x), loaded(x))


def test_quantized_sequential_keeps_its_input_name():
    model = nested_batch_norm_model()
    qat = quantization.quantize_model(model)
    assert isinstance(qat, keras.Sequential)
    assert qat.inputs[0]._keras_history.operation.name == "pixels"
    from ai_edge_litert.interpreter import Interpreter

    flatbuffer = export.to_tflite(qat)
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    assert list(runner.get_input_details()) == ["pixels"]
