"""The code pattern of tfmot's "Sparsity and cluster preserving quantization
aware training (PCQAT) Keras example" (g3doc/guide/combine/pcqat_example),
with `import tfmot_lite as tfmot`, `import keras` and the bundled digits
(16x16, one channel) in place of MNIST.

What the guide shows: prune to 50%, sparsity-preserving clustering to 8
clusters keeps the zeros, QAT loses zeros and clusters, PCQAT keeps both
(in Keras and in the int8 .tflite); the PCQAT .tflite is smaller gzipped
than the QAT one and keeps the accuracy.
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
    model_weights_sparsity,
    to_tflite,
)

import tfmot_lite as tfmot

# The guide imports `...clustering.keras.experimental.cluster` for
# `cluster_weights(..., preserve_sparsity=True)`.
from tfmot_lite.clustering.keras.experimental import cluster  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_pcqat_example(digits):
    train_images, train_labels, test_images, test_labels = digits
    keras.utils.set_random_seed(0)
    model = guide_model()
    opt = keras.optimizers.Adam(learning_rate=1e-3)
    model.compile(optimizer=opt,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, validation_split=0.1, epochs=4, verbose=0)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
            0.5, begin_step=0, frequency=100),
    }
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    pruned_model = prune_low_magnitude(model, **pruning_params)
    pruned_model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         optimizer=keras.optimizers.Adam(learning_rate=1e-5),
                         metrics=["accuracy"])
    pruned_model.fit(train_images, train_labels, epochs=3, validation_split=0.1,
                     callbacks=callbacks, verbose=0)
    stripped_pruned_model = tfmot.sparsity.keras.strip_pruning(pruned_model)
    for value in model_weights_sparsity(stripped_pruned_model).values():
        assert value == pytest.approx(0.5, abs=0.01)

    cluster_weights = cluster.cluster_weights
    CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
    clustering_params = {
        "number_of_clusters": 8,
        "cluster_centroids_init": CentroidInitialization.KMEANS_PLUS_PLUS,
        "preserve_sparsity": True,
    }
    sparsity_clustered_model = cluster_weights(stripped_pruned_model, **clustering_params)
    sparsity_clustered_model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    sparsity_clustered_model.fit(train_images, train_labels, epochs=3, validation_split=0.1,
                                 verbose=0)
    stripped_clustered_model = tfmot.clustering.keras.strip_clustering(
        sparsity_clustered_model)
    for value in model_weights_sparsity(stripped_clustered_model).values():
        assert value >= 0.5
    assert all(n <= 8 for n in model_weight_clusters(stripped_clustered_model).values())
    _, clustered_accuracy = sparsity_clustered_model.evaluate(test_images, test_labels,
                                                              verbose=0)

    # QAT
    qat_model = tfmot.quantization.keras.quantize_model(stripped_clustered_model)
    qat_model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    qat_model.fit(train_images, train_labels, batch_size=128, epochs=1,
                  validation_split=0.1, verbose=0)

    # PCQAT
    quant_aware_annotate_model = tfmot.quantization.keras.quantize_annotate_model(
        stripped_clustered_model)
    pcqat_model = tfmot.quantization.keras.quantize_apply(
        quant_aware_annotate_model,
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=True))
    pcqat_model.compile(optimizer="adam",
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
    pcqat_model.fit(train_images, train_labels, batch_size=128, epochs=1,
                    validation_split=0.1, verbose=0)

    qat_clusters, pcqat_clusters = (model_weight_clusters(qat_model),
                                    model_weight_clusters(pcqat_model))
    assert all(n > 8 for n in qat_clusters.values())
    assert len(pcqat_clusters) == 2 and all(n <= 8 for n in pcqat_clusters.values())
    assert all(v < 0.1 for v in model_weights_sparsity(qat_model).values())
    pcqat_sparsity = model_weights_sparsity(pcqat_model)
    assert len(pcqat_sparsity) == 2 and all(v >= 0.5 for v in pcqat_sparsity.values())

    qat_tflite_model = to_tflite(qat_model)
    pcqat_tflite_model = to_tflite(pcqat_model)
    for kernel in int8_kernels(pcqat_tflite_model):
        assert kernel.zero_fraction >= 0.5 and kernel.max_unique_per_channel <= 8, kernel
    print("QAT / PCQAT gzipped bytes:", gzipped_size(qat_tflite_model),
          gzipped_size(pcqat_tflite_model))
    assert gzipped_size(pcqat_tflite_model) < gzipped_size(qat_tflite_model)

    pcqat_test_accuracy = eval_model(interpreter_for(pcqat_tflite_model), test_images,
                                     test_labels)
    print("Pruned, clustered and quantized TFLite test accuracy:", pcqat_test_accuracy,
          "clustered TF accuracy:", clustered_accuracy)
    assert pcqat_test_accuracy >= clustered_accuracy - 0.02
