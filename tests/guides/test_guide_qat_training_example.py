"""The code pattern of tfmot's "Quantization aware training in Keras
example" (g3doc/guide/quantization/training_example), with
`import tfmot_lite as tfmot`, `import keras` and the bundled digits (32x32
grey images) in place of MNIST."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmot_lite as tfmot
from tfmot_lite import data

pytestmark = pytest.mark.slow


def _evaluate_tflite(flatbuffer, x_test, y_test):
    """The guide's `evaluate_model`: one image at a time through the interpreter."""
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    predictions = []
    for image in x_test:
        interpreter.set_tensor(input_index, np.expand_dims(image, 0).astype(np.float32))
        interpreter.invoke()
        predictions.append(np.argmax(interpreter.get_tensor(output_index)[0]))
    predictions = np.array(predictions)
    return float(np.mean(predictions == y_test)), predictions


def test_training_example():
    (train_images, train_labels), (test_images, test_labels) = data.digits(
        image_size=32, channels=1
    )
    train_images, test_images = train_images[..., 0], test_images[..., 0]

    # Train a model for the digits without quantization aware training.
    model = keras.Sequential([
        keras.layers.InputLayer(shape=(32, 32)),
        keras.layers.Reshape(target_shape=(32, 32, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=4, validation_split=0.1, verbose=0)

    # Clone and fine-tune the pre-trained model with quantization aware training.
    quantize_model = tfmot.quantization.keras.quantize_model
    q_aware_model = quantize_model(model)
    q_aware_model.compile(optimizer="adam",
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    q_aware_model.summary()
    kinds = [type(layer).__name__ for layer in q_aware_model.layers]
    # Conv2D and Dense quantized; reshaping and max pooling keep their
    # input's int8 scale and stay as they are.
    assert kinds == ["QuantizeLayer", "Reshape", "QuantizeWrapperV2", "MaxPooling2D",
                     "Flatten", "QuantizeWrapperV2"]
    assert q_aware_model.count_params() > model.count_params()  # + quantizer ranges

    train_images_subset = train_images[0:1000]
    train_labels_subset = train_labels[0:1000]
    history = q_aware_model.fit(train_images_subset, train_labels_subset,
                                batch_size=100, epochs=2, validation_split=0.1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    # Quantization aware training keeps the baseline accuracy.
    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    _, q_aware_model_accuracy = q_aware_model.evaluate(test_images, test_labels, verbose=0)
    assert baseline_model_accuracy > 0.85
    assert q_aware_model_accuracy >= baseline_model_accuracy - 0.03

    # Create a quantized model for the TFLite backend.
    converter = tf.lite.TFLiteConverter.from_keras_model(q_aware_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_tflite_model = converter.convert()

    # The int8 model matches the Keras QAT model.
    test_accuracy, predictions = _evaluate_tflite(quantized_tflite_model, test_images,
                                                  test_labels)
    keras_predictions = q_aware_model.predict(test_images, verbose=0).argmax(-1)
    assert np.mean(predictions == keras_predictions) >= 0.99
    assert abs(test_accuracy - q_aware_model_accuracy) <= 0.01

    # 4x smaller: int8 weights in place of float32.
    float_converter = tf.lite.TFLiteConverter.from_keras_model(model)
    float_tflite_model = float_converter.convert()
    assert len(quantized_tflite_model) < 0.35 * len(float_tflite_model)
