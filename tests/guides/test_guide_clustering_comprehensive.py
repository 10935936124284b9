"""tfmot guide `clustering/clustering_comprehensive_guide`, with
`import tfmot_lite as tfmot`.

Every cell pattern: cluster a whole model, some layers (`clone_model`), a
custom `ClusterableLayer` whose kernel and bias are clustered (first layer
given `input_shape=`); checkpoint to HDF5 and load under `cluster_scope`;
strip and compare gzipped sizes. Changed: Keras 3 weight files end in
`.weights.h5`.
"""

import keras
import numpy as np
import pytest
from guide_helpers import gzipped_keras_size, summary_text, total_params

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow

input_dim = 20
output_dim = 20
rng = np.random.default_rng(0)
x_train = rng.normal(size=(8, input_dim)).astype("float32")
y_train = keras.utils.to_categorical(rng.integers(0, output_dim, size=8), num_classes=output_dim)

cluster_weights = tfmot.clustering.keras.cluster_weights
CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
clustering_params = {
    "number_of_clusters": 3,
    "cluster_centroids_init": CentroidInitialization.KMEANS_PLUS_PLUS,
}


def setup_model():
    return keras.Sequential([
        keras.layers.Dense(input_dim, input_shape=[input_dim]),
        keras.layers.Flatten(),
    ])


def train_model(model):
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"])
    assert total_params(model) > 0
    model.fit(x_train, y_train, verbose=0)
    return model


@pytest.fixture(scope="module")
def pretrained_weights(tmp_path_factory):
    model = train_model(setup_model())
    path = str(tmp_path_factory.mktemp("pretrained") / "pretrained.weights.h5")
    model.save_weights(path)
    return path


def unique_values(weight):
    return len(np.unique(np.asarray(weight)))


def test_cluster_whole_model_and_some_layers(pretrained_weights):
    model = setup_model()
    model.load_weights(pretrained_weights)
    clustered_model = cluster_weights(model, **clustering_params)
    assert "0 (unbuilt)" not in summary_text(clustered_model)
    assert total_params(clustered_model) == 420 + 3

    base_model = setup_model()
    base_model.load_weights(pretrained_weights)

    def apply_clustering_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return cluster_weights(layer, **clustering_params)
        return layer

    cloned = keras.models.clone_model(base_model, clone_function=apply_clustering_to_dense)
    assert isinstance(cloned.layers[0], tfmot.clustering.keras.ClusterWeights)
    assert total_params(cloned) == 420 + 3
    for m in (clustered_model, cloned):
        train_model(m)
        stripped = tfmot.clustering.keras.strip_clustering(m)
        assert unique_values(stripped.layers[0].kernel) <= 3


def test_custom_clusterable_layer_with_input_shape_clusters_kernel_and_bias():
    class MyDenseLayer(keras.layers.Dense, tfmot.clustering.keras.ClusterableLayer):
        def get_clusterable_weights(self):
            # Cluster kernel and bias. This is just an example, clustering
            # bias usually hurts model accuracy.
            return [("kernel", self.kernel), ("bias", self.bias)]

    model_for_clustering = keras.Sequential([
        tfmot.clustering.keras.cluster_weights(MyDenseLayer(20, input_shape=[input_dim]), **clustering_params),
        keras.layers.Flatten(),
    ])
    assert model_for_clustering.built
    assert total_params(model_for_clustering) == 420 + 2 * 3
    # The bias of a fresh layer is all zero: fewer distinct values than
    # clusters. Give it some before training.
    model_for_clustering.layers[0].layer.bias.assign(rng.normal(size=20).astype("float32"))
    train_model(model_for_clustering)
    stripped = tfmot.clustering.keras.strip_clustering(model_for_clustering)
    assert unique_values(stripped.layers[0].kernel) <= 3
    assert unique_values(stripped.layers[0].bias) <= 3


def test_checkpoint_to_hdf5_load_in_cluster_scope_and_strip(pretrained_weights, tmp_path):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    clustered_model = cluster_weights(base_model, **clustering_params)
    clustered_model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")

    keras_model_file = str(tmp_path / "clustered.h5")
    clustered_model.save(keras_model_file, include_optimizer=True)
    with tfmot.clustering.keras.cluster_scope():
        loaded_model = keras.models.load_model(keras_model_file)
    assert total_params(loaded_model) > 0
    np.testing.assert_allclose(loaded_model.predict(x_train, verbose=0),
                               clustered_model.predict(x_train, verbose=0), atol=1e-6)

    final_model = tfmot.clustering.keras.strip_clustering(clustered_model)
    assert final_model.count_params() == 420
    assert unique_values(final_model.layers[0].kernel) <= 3
    # Both strip_clustering and gzip are needed to see the compression.
    assert gzipped_keras_size(final_model, tmp_path, "stripped") < gzipped_keras_size(
        base_model, tmp_path, "baseline")
    assert gzipped_keras_size(final_model, tmp_path, "stripped") < gzipped_keras_size(
        clustered_model, tmp_path, "unstripped")


def test_re_clustering_with_other_settings_says_to_strip_first(pretrained_weights):
    model = setup_model()
    model.load_weights(pretrained_weights)
    clustered = cluster_weights(model, 4)
    with pytest.raises(ValueError, match=r"strip_clustering\(model\)"):
        cluster_weights(clustered, 8)
    with pytest.raises(ValueError, match=r"already clustered.*strip_clustering\(layer\)"):
        cluster_weights(clustered.layers[0], 8)
    again = cluster_weights(clustered, 4)  # same settings: kept, as tfmot does
    assert not isinstance(again.layers[0].layer, tfmot.clustering.keras.ClusterWeights)


def test_sequential_without_input_fails_at_wrap_time_with_the_fix():
    unbuilt = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"not built.*keras\.Input"):
        cluster_weights(unbuilt, 3)
