"""tfmot guide `combine/sparse_clustering_example`, with `import tfmot_lite as tfmot`.

Train the MNIST CNN, prune it to 50% (ConstantSparsity, frequency 100, as
the guide), strip, cluster it to 8 centroids with sparsity preserved through
tfmot's experimental module path, fine-tune, strip: the zeros stay zeros,
each kernel holds at most 8 values, and the TFLite file shrinks. Changed:
digits at 16x16 instead of MNIST (3 epochs of 41 steps still pass step 100).
"""

import keras
import numpy as np
import pytest
from guide_helpers import (
    compile_for_digits,
    digits_28x28_stand_in,
    gzipped_bytes_size,
    tflite_accuracy,
    to_tflite,
    zero_fraction,
)
from model_builders import mnist_cnn

import tfmot_lite as tfmot
from tfmot_lite.clustering.keras.experimental import cluster

pytestmark = pytest.mark.slow


def kernels(model):
    return {
        layer.name: np.asarray(layer.kernel)
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    }


def test_sparse_clustering_example_guide(tmp_path):
    tf = pytest.importorskip("tensorflow")
    (train_images, train_labels), (test_images, test_labels) = digits_28x28_stand_in()
    model = compile_for_digits(mnist_cnn())
    model.fit(train_images, train_labels, validation_split=0.1, epochs=4, verbose=0)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=100),
    }
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    pruned_model = prune_low_magnitude(model, **pruning_params)
    pruned_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),  # guide: 1e-5 over MNIST's 1266 steps
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    pruned_model.fit(train_images, train_labels, epochs=3, validation_split=0.1,
                     callbacks=callbacks, verbose=0)
    stripped_pruned_model = tfmot.sparsity.keras.strip_pruning(pruned_model)
    for name, kernel in kernels(stripped_pruned_model).items():
        assert zero_fraction(kernel) == pytest.approx(0.5, abs=0.01), name

    CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
    cluster_weights = cluster.cluster_weights  # tfmot's experimental module
    clustering_params = {
        "number_of_clusters": 8,
        "cluster_centroids_init": CentroidInitialization.KMEANS_PLUS_PLUS,
        "preserve_sparsity": True,
    }
    sparsity_clustered_model = cluster_weights(stripped_pruned_model, **clustering_params)
    sparsity_clustered_model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    sparsity_clustered_model.fit(train_images, train_labels, epochs=3, validation_split=0.1, verbose=0)
    _, clustered_accuracy = sparsity_clustered_model.evaluate(test_images, test_labels, verbose=0)
    assert clustered_accuracy > 0.85

    stripped_clustered_model = tfmot.clustering.keras.strip_clustering(sparsity_clustered_model)
    pruned_kernels = kernels(stripped_pruned_model)
    for name, kernel in kernels(stripped_clustered_model).items():
        assert len(np.unique(kernel)) <= 8, name  # zero included
        assert np.all(kernel[pruned_kernels[name] == 0] == 0), name  # zeros kept
        assert zero_fraction(kernel) >= 0.5 - 0.01, name

    baseline_tflite = to_tflite(model)
    final_tflite = to_tflite(stripped_clustered_model, [tf.lite.Optimize.DEFAULT])
    assert gzipped_bytes_size(final_tflite, tmp_path, "pcqat") < 0.3 * gzipped_bytes_size(
        baseline_tflite, tmp_path, "baseline")
    assert tflite_accuracy(final_tflite, test_images, test_labels) >= clustered_accuracy - 0.02
