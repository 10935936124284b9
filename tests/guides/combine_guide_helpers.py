"""Helpers shared by the collaborative-optimization guide tests (PQAT, CQAT,
PCQAT): the guides' own helper functions, written for Keras 3, and the
digits in place of MNIST."""

import gzip

import keras
import numpy as np
import tensorflow as tf
from model_builders import mnist_cnn
from tflite_helpers import kernel_stats

from tfmot_lite import data


def load_digits():
    """`(train_images, train_labels, test_images, test_labels)`: the bundled
    digits as 16x16 grey images, in place of the guides' MNIST."""
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=16, channels=1)
    return x_train[..., 0], y_train, x_test[..., 0], y_test


def _guide_kernels(model):
    """`(name, values)` for the kernels the guides' print helpers look at:
    each layer's weights (a wrapper's trainable ones) named `kernel`, not
    the quantize layer's nor centroids."""
    for layer in model.layers:
        weights = layer.trainable_weights if isinstance(layer, keras.layers.Wrapper) \
            else layer.weights
        for weight in weights:
            if "quantize_layer" in weight.name or "kernel" not in weight.name:
                continue
            if "centroid" in weight.name:
                continue
            yield f"{layer.name}/{weight.name}", keras.ops.convert_to_numpy(weight)


def model_weights_sparsity(model):
    """The guide's `print_model_weights_sparsity`, returning what it prints."""
    sparsity = {
        name: np.count_nonzero(values == 0) / values.size
        for name, values in _guide_kernels(model)
    }
    print(sparsity)
    return sparsity


def model_weight_clusters(model):
    """The guide's `print_model_weight_clusters`, returning what it prints:
    unique values per kernel among each layer's (trainable, for wrappers)
    weights."""
    clusters = {name: len(np.unique(values)) for name, values in _guide_kernels(model)}
    print(clusters)
    return clusters


def eval_model(interpreter, test_images, test_labels):
    """The guide's `eval_model`: one image at a time through the interpreter."""
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    predictions = []
    for test_image in test_images:
        interpreter.set_tensor(input_index, np.expand_dims(test_image, 0).astype(np.float32))
        interpreter.invoke()
        predictions.append(np.argmax(interpreter.tensor(output_index)()[0]))
    return float((np.array(predictions) == test_labels).mean())


def gzipped_size(flatbuffer):
    return len(gzip.compress(flatbuffer))


def to_tflite(model, representative=None):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if representative is not None:
        converter.representative_dataset = representative
    return converter.convert()


def interpreter_for(flatbuffer):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    return interpreter


def guide_model(input_size=16):
    """The guides' MNIST model, for 16x16 digits, as these guides write it
    (`activation=tf.nn.relu`)."""
    return mnist_cnn(input_size, activation=tf.nn.relu)


int8_kernels = kernel_stats
"""Per-kernel zeros / unique values of a .tflite model."""
