"""Every import of tfmot's internal `python.core` paths in the official
guides works after replacing `tensorflow_model_optimization` with
`tfmot_lite`.

The list is every `tensorflow_model_optimization.python...` import found in
tensorflow/model-optimization's g3doc guides (pcqat_example and
sparse_clustering_example: the experimental cluster module; clustering,
pruning and QAT examples: `keras` from `python.core.keras.compat`).
"""

import importlib

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot

GUIDE_IMPORTS = [
    # (module, name imported from it)
    ("tensorflow_model_optimization.python.core.clustering.keras.experimental", "cluster"),
    ("tensorflow_model_optimization.python.core.keras.compat", "keras"),
]


@pytest.mark.parametrize("module, name", GUIDE_IMPORTS)
def test_guide_import_resolves(module, name):
    lite = importlib.import_module(module.replace("tensorflow_model_optimization", "tfmot_lite"))
    assert getattr(lite, name) is not None


def test_compat_keras_is_keras_3():
    from tfmot_lite.python.core.keras.compat import keras as compat_keras

    assert compat_keras is keras


def test_experimental_cluster_is_the_public_module():
    from tfmot_lite.clustering.keras.experimental import cluster as public
    from tfmot_lite.python.core.clustering.keras.experimental import cluster

    assert cluster is importlib.import_module(
        "tfmot_lite.python.core.clustering.keras.experimental.cluster")
    for name in public.__all__:
        assert getattr(cluster, name) is getattr(public, name)
    assert cluster.cluster_weights is tfmot.clustering.keras.cluster_weights


def test_sparsity_preserving_clustering_as_the_guide_writes_it():
    """The guide's cell: cluster a pruned model through the internal path
    with `preserve_sparsity=True`; the zeros stay zeros after strip."""
    from tfmot_lite.python.core.clustering.keras.experimental import cluster

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, name="d")])
    kernel, bias = model.get_layer("d").get_weights()
    kernel[np.abs(kernel) < np.median(np.abs(kernel))] = 0.0
    model.get_layer("d").set_weights([kernel, bias])
    cluster_weights = cluster.cluster_weights
    clustering_params = {
        "number_of_clusters": 4,
        "cluster_centroids_init": tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS,
        "preserve_sparsity": True,
    }
    clustered = cluster_weights(model, **clustering_params)
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    after = stripped.get_layer("d").get_weights()[0]
    assert np.all(after[kernel == 0] == 0)
    assert np.unique(after[kernel != 0]).size <= 4
