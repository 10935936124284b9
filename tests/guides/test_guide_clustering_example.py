"""tfmot guide `clustering/clustering_example`, with `import tfmot_lite as tfmot`.

Train the MNIST CNN, cluster it to 16 centroids (LINEAR init), fine-tune one
epoch at a low learning rate, strip, count the unique weights, and see the
gzipped Keras and TFLite files shrink; quantize post-training and keep the
accuracy. Changed: digits at 16x16 instead of MNIST, a larger fine-tuning
learning rate for the few steps.
"""

import keras
import numpy as np
import pytest
from guide_helpers import (
    compile_for_digits,
    digits_28x28_stand_in,
    gzipped_bytes_size,
    gzipped_keras_size,
    tflite_accuracy,
    to_tflite,
    total_params,
)
from model_builders import mnist_cnn

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow


def test_clustering_example_guide(tmp_path):
    tf = pytest.importorskip("tensorflow")
    (train_images, train_labels), (test_images, test_labels) = digits_28x28_stand_in()

    model = compile_for_digits(mnist_cnn())
    model.fit(train_images, train_labels, validation_split=0.1, epochs=4, verbose=0)
    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)

    cluster_weights = tfmot.clustering.keras.cluster_weights
    CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
    clustering_params = {
        "number_of_clusters": 16,
        "cluster_centroids_init": CentroidInitialization.LINEAR,
    }
    clustered_model = cluster_weights(model, **clustering_params)
    clustered_model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.Adam(learning_rate=1e-4),
        metrics=["accuracy"],
    )
    # The kernels' values train through 16 + 16 centroids.
    assert total_params(clustered_model) > 0
    assert clustered_model.count_params() == model.count_params() + 2 * 16

    clustered_model.fit(train_images, train_labels, batch_size=500, epochs=1,
                        validation_split=0.1, verbose=0)
    _, clustered_model_accuracy = clustered_model.evaluate(test_images, test_labels, verbose=0)
    assert clustered_model_accuracy >= baseline_model_accuracy - 0.05

    final_model = tfmot.clustering.keras.strip_clustering(clustered_model)
    for layer in final_model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            assert len(np.unique(np.asarray(layer.kernel))) <= 16, layer.name
    np.testing.assert_allclose(final_model.predict(test_images, verbose=0),
                               clustered_model.predict(test_images, verbose=0), atol=1e-5)

    baseline_gz = gzipped_keras_size(model, tmp_path, "baseline")
    clustered_gz = gzipped_keras_size(final_model, tmp_path, "clustered")
    clustered_tflite = to_tflite(final_model)
    clustered_tflite_gz = gzipped_bytes_size(clustered_tflite, tmp_path, "clustered")
    assert clustered_gz < 0.6 * baseline_gz, (clustered_gz, baseline_gz)
    assert clustered_tflite_gz < clustered_gz

    quantized = to_tflite(final_model, [tf.lite.Optimize.DEFAULT])
    assert gzipped_bytes_size(quantized, tmp_path, "quantized") < clustered_tflite_gz
    assert tflite_accuracy(quantized, test_images, test_labels) >= clustered_model_accuracy - 0.02
