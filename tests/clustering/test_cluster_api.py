import keras
import numpy as np
import pytest
from tfmot_lite.example_models import build_cnn as small_cnn

import tfmot_lite as tfmot
from tfmot_lite.clustering.algorithm import nearest_by_distance
from tfmot_lite.clustering.keras import (
    CentroidInitialization,
    ClusterableLayer,
    ClusteringAlgorithm,
    ClusterWeights,
    cluster_weights,
    strip_clustering,
)


def snapshot(model):
    return [w.numpy().copy() for w in model.weights]


def wrapped_names(model):
    from tfmot_lite.core import graph

    return sorted(
        layer.layer.name
        for _, layer in graph.iter_layers(model)
        if isinstance(layer, ClusterWeights)
    )


def test_public_names_match_tfmot():
    api = tfmot.clustering.keras
    for name in (
        "cluster_weights",
        "strip_clustering",
        "cluster_scope",
        "CentroidInitialization",
        "ClusterableLayer",
        "ClusteringAlgorithm",
        "ClusteringSummaries",
    ):
        assert hasattr(api, name)
    assert [m.name for m in CentroidInitialization] == [
        "LINEAR",
        "RANDOM",
        "DENSITY_BASED",
        "KMEANS_PLUS_PLUS",
    ]


def test_functional_model_gets_new_wrapped_model_and_input_is_untouched():
    model = small_cnn()
    before = snapshot(model)
    layers_before = list(model.layers)
    clustered = cluster_weights(model, number_of_clusters=8)
    assert clustered is not model
    assert model.layers == layers_before
    assert not any(isinstance(l, ClusterWeights) for l in model.layers)
    for a, b in zip(before, snapshot(model)):
        np.testing.assert_array_equal(a, b)
    convs_and_dense = [
        l.name for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    assert wrapped_names(clustered) == sorted(convs_and_dense)
    # Batch norms are copied unwrapped.
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in clustered.layers)


def test_sequential_and_nested_models():
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(12, name="inner_dense")], name="inner"
    )
    inputs = keras.Input((6,))
    x = inner(inputs)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, outputs)
    clustered = cluster_weights(model, 4)
    assert wrapped_names(clustered) == ["head", "inner_dense"]
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    assert clustered.predict(x, verbose=0).shape == (5, 3)
    # The nested model's original layer is not wrapped.
    assert not any(isinstance(l, ClusterWeights) for l in inner.layers)
    # Stripping reaches into the nested model too.
    stripped = strip_clustering(clustered)
    assert wrapped_names(stripped) == []
    assert len(np.unique(stripped.get_layer("inner").layers[0].kernel.numpy())) <= 4
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), clustered.predict(x, verbose=0))

    seq = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    assert len(wrapped_names(cluster_weights(seq, 4))) == 2


def test_single_layer_and_list_of_layers():
    dense = keras.layers.Dense(5, name="d")
    wrapped = cluster_weights(dense, 4, name="my_cluster")
    assert isinstance(wrapped, ClusterWeights) and wrapped.name == "my_cluster"
    model = keras.Sequential([keras.Input((10,)), wrapped])
    out = model(np.ones((2, 10), "float32"))
    assert out.shape == (2, 5)
    assert len(np.unique(wrapped.transformed_weights(False)[0].numpy())) <= 4
    assert not dense.built  # the layer passed in was copied, not used
    pair = cluster_weights([keras.layers.Dense(3), keras.layers.Dropout(0.1)], 4)
    assert isinstance(pair[0], ClusterWeights)
    assert isinstance(pair[1], keras.layers.Dropout)


def test_which_layers_are_clustered():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.SeparableConv2D(4, 1, name="separable")(x)
    x = keras.layers.Conv2DTranspose(4, 3, name="transpose")(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Reshape((-1, 4))(x)
    x = keras.layers.Conv1D(4, 3, name="conv1d")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    model = keras.Model(inputs, outputs)
    clustered = cluster_weights(model, 4)
    assert wrapped_names(clustered) == [
        "conv", "conv1d", "dense", "depthwise", "separable", "transpose"
    ]
    sep = clustered.get_layer("cluster_separable")
    assert sep.weight_names == ["pointwise_kernel"]
    depthwise = clustered.get_layer("cluster_depthwise")
    assert depthwise.weight_names == ["depthwise_kernel"]
    stripped = strip_clustering(clustered)
    assert len(np.unique(stripped.get_layer("depthwise").kernel.numpy())) <= 4


def test_sequence_layers_are_clustered_where_tfmot_clusters_them():
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="embedding")(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm")(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(3), name="bigru")(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    model = keras.Model(tokens, outputs)
    clustered = cluster_weights(model, 4)
    names = {
        l.layer.name: l.weight_names for l in clustered.layers if isinstance(l, ClusterWeights)
    }
    assert names["embedding"] == ["embeddings"]
    assert names["mha"] == ["query_kernel", "key_kernel", "value_kernel", "output_kernel"]
    assert names["lstm"] == ["kernel", "recurrent_kernel"]
    assert names["bigru"] == [
        "forward_kernel",
        "forward_recurrent_kernel",
        "backward_kernel",
        "backward_recurrent_kernel",
    ]


def test_too_few_clusters_is_rejected():
    with pytest.raises(ValueError, match="number_of_clusters` must be at least 2"):
        cluster_weights(small_cnn(), 1)
    with pytest.raises(ValueError, match="at least 3.*preserve_sparsity"):
        cluster_weights(small_cnn(), 2, preserve_sparsity=True)
    with pytest.raises(ValueError, match="must be an integer"):
        cluster_weights(small_cnn(), 4.0)


def test_more_clusters_than_weights_names_the_layer():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(2, name="tiny")(inputs)  # 6 weights
    model = keras.Model(inputs, keras.layers.Dense(40, name="big")(x))
    with pytest.raises(ValueError, match=r"tiny: 'kernel' has 6 weights.*number_of_clusters=8"):
        cluster_weights(model, 8)
    # Per channel counts the weights of one output channel.
    conv = keras.Sequential([keras.Input((5, 5, 1)), keras.layers.Conv2D(8, 2, name="c")])
    with pytest.raises(ValueError, match="c: 'kernel' has 4 weights per output channel"):
        cluster_weights(conv, 5, cluster_per_channel=True)
    cluster_weights(conv, 5)  # 32 weights in the whole kernel is enough
    # An unbuilt layer is checked when it is built.
    lazy = cluster_weights(keras.layers.Dense(1, name="lazy"), 8)
    with pytest.raises(ValueError, match="lazy: 'kernel' has 3 weights"):
        lazy(np.ones((1, 3), "float32"))


def test_unknown_init_names_the_argument():
    with pytest.raises(ValueError, match="cluster_centroids_init.*KMEANS_PLUS_PLUS"):
        cluster_weights(small_cnn(), 4, cluster_centroids_init="KMEDOIDS")
    # Names as strings are accepted.
    cluster_weights(keras.layers.Dense(2), 4, cluster_centroids_init="linear")


class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_unsupported_layers_are_listed_with_the_fix_and_nothing_is_built():
    inputs = keras.Input((4,))
    x = Scale(name="scale")(inputs)
    x = Scale(name="scale2")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError) as err:
        cluster_weights(model, 2)
    message = str(err.value)
    assert "scale (Scale)" in message and "scale2 (Scale)" in message
    assert "ClusterableLayer" in message


def test_other_techniques_wrappers_must_be_stripped_first():
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    )
    with pytest.raises(ValueError, match=r"pruned.*strip_pruning\(model\)"):
        cluster_weights(pruned, 4)


def test_model_kwargs_and_double_clustering():
    model = small_cnn()
    with pytest.raises(ValueError, match="Unexpected arguments for a model"):
        cluster_weights(model, 4, name="x")
    once = cluster_weights(model, 4)
    twice = cluster_weights(once, 4)  # already-clustered layers are kept
    assert wrapped_names(twice) == wrapped_names(once)
    with pytest.raises(ValueError, match="already clustered"):
        cluster_weights(once.layers[1], 4)


class MyDense(keras.layers.Layer, ClusterableLayer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units))
        self.b = self.add_weight(shape=(self.units,), initializer="ones")

    def call(self, x):
        return x @ self.w + self.b

    def get_clusterable_weights(self):
        return [("w", self.w)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_clusterable_layer_clusters_only_what_it_returns():
    model = keras.Sequential([keras.Input((20,)), MyDense(10, name="mine")])
    clustered = cluster_weights(model, 5)
    wrapper = clustered.layers[0]
    assert wrapper.weight_names == ["w"]
    kernel, bias = wrapper.transformed_weights(False)[0], wrapper.layer.b
    assert len(np.unique(kernel.numpy())) <= 5
    np.testing.assert_array_equal(bias.numpy(), np.ones(10))
    stripped = strip_clustering(clustered)
    assert isinstance(stripped.layers[0], MyDense)
    assert len(np.unique(stripped.layers[0].w.numpy())) <= 5


def test_cluster_per_channel_applies_to_conv2d_only():
    model = small_cnn()
    clustered = cluster_weights(model, 4, cluster_per_channel=True)
    wrappers = [l for l in clustered.layers if isinstance(l, ClusterWeights)]
    for w in wrappers:
        is_conv = isinstance(w.layer, keras.layers.Conv2D)
        assert w.cluster_per_channel == is_conv
        shape = tuple(w.cluster_centroids[0].shape)
        assert shape == ((w.layer.filters, 4) if is_conv else (4,))


class ByDistance(ClusteringAlgorithm):
    """A custom algorithm: brute-force argmin, counting its calls."""

    calls = 0

    def get_pulling_indices(self, weight):
        ByDistance.calls += 1
        return nearest_by_distance(weight, self.cluster_centroids)


class MyDenseCustomAlgorithm(MyDense):
    def get_clusterable_algorithm(self, weight_name):
        return ByDistance if weight_name == "w" else None


def test_clusterable_layer_can_bring_its_own_algorithm(tiny_data):
    x, y = tiny_data
    model = keras.Sequential([keras.Input((12,)), MyDenseCustomAlgorithm(3, name="mine")])
    clustered = cluster_weights(model, 4)
    clustered.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ByDistance.calls = 0
    clustered.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert ByDistance.calls > 0
    stripped = strip_clustering(clustered)
    assert len(np.unique(stripped.layers[0].w.numpy())) <= 4
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), clustered.predict(x, verbose=0))


def test_tfmots_experimental_cluster_module_path_clusters_with_preserve_sparsity():
    import tfmot_lite as tfmot
    from tfmot_lite.clustering.keras.experimental import cluster

    assert tfmot.clustering.keras.experimental.cluster.cluster_weights is cluster.cluster_weights
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    kernel = np.asarray(model.layers[0].kernel)
    kernel[:, ::2] = 0.0
    model.layers[0].kernel.assign(kernel)
    clustered = cluster.cluster_weights(model, number_of_clusters=4, preserve_sparsity=True)
    stripped = cluster.strip_clustering(clustered)
    values = np.asarray(stripped.layers[0].kernel)
    assert np.all(values[:, ::2] == 0) and len(np.unique(values)) <= 4


def test_clustering_a_first_layer_given_input_shape_builds_the_sequential():
    import tfmot_lite as tfmot

    model = keras.Sequential([
        tfmot.clustering.keras.cluster_weights(keras.layers.Dense(8, input_shape=(16,)), 4),
        keras.layers.Dense(2),
    ])
    assert model.built and model.count_params() == 16 * 8 + 8 + 4 + 8 * 2 + 2
    stripped = tfmot.clustering.keras.strip_clustering(model)
    assert stripped.built and stripped.count_params() == 16 * 8 + 8 + 8 * 2 + 2


def test_clustering_summaries_name_the_extra_when_tensorboard_is_missing(monkeypatch, tmp_path):
    import sys

    import tfmot_lite as tfmot

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"tfmot-lite\[tensorboard\]"):
        tfmot.clustering.keras.ClusteringSummaries(str(tmp_path))
