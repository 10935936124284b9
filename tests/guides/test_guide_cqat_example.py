"""The code pattern of tfmot's "Cluster preserving quantization aware
training (CQAT) Keras example" (g3doc/guide/combine/cqat_example), with
`import tfmot_lite as tfmot`, `import keras` and the bundled digits (16x16,
one channel) in place of MNIST.

What the guide shows: clustering to 8 clusters, QAT loses the clusters, CQAT
keeps them (in Keras and in the int8 .tflite); the CQAT .tflite is smaller
gzipped than the QAT one and keeps the accuracy.
"""

import keras
import pytest
from combine_guide_helpers import (
    eval_model,
    guide_model,
    gzipped_size,
    int8_kernels,
    interpreter_for,
    load_digits,
    model_weight_clusters,
    to_tflite,
)

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_cqat_example(digits):
    train_images, train_labels, test_images, test_labels = digits
    keras.utils.set_random_seed(0)
    model = guide_model()
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, validation_split=0.1, epochs=4, verbose=0)

    cluster_weights = tfmot.clustering.keras.cluster_weights
    CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
    clustering_params = {
        "number_of_clusters": 8,
        "cluster_centroids_init": CentroidInitialization.KMEANS_PLUS_PLUS,
    }
    clustered_model = cluster_weights(model, **clustering_params)
    clustered_model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-5),
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=["accuracy"])
    clustered_model.fit(train_images, train_labels, epochs=3, validation_split=0.1,
                        verbose=0)
    stripped_clustered_model = tfmot.clustering.keras.strip_clustering(clustered_model)
    assert set(model_weight_clusters(stripped_clustered_model).values()) == {8}
    _, clustered_model_accuracy = clustered_model.evaluate(test_images, test_labels,
                                                           verbose=0)

    # QAT
    qat_model = tfmot.quantization.keras.quantize_model(stripped_clustered_model)
    qat_model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    qat_model.fit(train_images, train_labels, batch_size=128, epochs=1,
                  validation_split=0.1, verbose=0)

    # CQAT
    quant_aware_annotate_model = tfmot.quantization.keras.quantize_annotate_model(
        stripped_clustered_model)
    cqat_model = tfmot.quantization.keras.quantize_apply(
        quant_aware_annotate_model,
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme())
    cqat_model.compile(optimizer="adam",
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    cqat_model.fit(train_images, train_labels, batch_size=128, epochs=1,
                   validation_split=0.1, verbose=0)

    qat_clusters = model_weight_clusters(qat_model)
    cqat_clusters = model_weight_clusters(cqat_model)
    assert len(qat_clusters) == len(cqat_clusters) == 2
    assert all(count > 8 for count in qat_clusters.values())  # QAT lost them
    assert all(count <= 8 for count in cqat_clusters.values())

    qat_tflite_model = to_tflite(qat_model)
    cqat_tflite_model = to_tflite(cqat_model)
    for kernel in int8_kernels(cqat_tflite_model):
        assert kernel.max_unique_per_channel <= 8, kernel
    print("QAT / CQAT gzipped bytes:", gzipped_size(qat_tflite_model),
          gzipped_size(cqat_tflite_model))
    assert gzipped_size(cqat_tflite_model) < gzipped_size(qat_tflite_model)

    cqat_test_accuracy = eval_model(interpreter_for(cqat_tflite_model), test_images,
                                    test_labels)
    print("Clustered and quantized TFLite test accuracy:", cqat_test_accuracy,
          "clustered TF test accuracy:", clustered_model_accuracy)
    assert cqat_test_accuracy >= clustered_model_accuracy - 0.02
