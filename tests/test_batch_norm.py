"""`FusedBatchNormalization`: pruning and clustering train Keras'
BatchNormalization layers through TensorFlow's fused kernel, with the same
results, and strip them back to Keras' class."""

import keras
import numpy as np
import pytest

from tfmot_lite.core import graph
from tfmot_lite.fast.batch_norm import FusedBatchNormalization
from tfmot_lite.clustering import keras as clustering
from tfmot_lite.sparsity import keras as sparsity


def conv_bn_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16)(x)
    x = keras.layers.BatchNormalization(name="bn_dense")(x)  # 2-D: Keras' path
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def batch_norms(model):
    return [layer for _, layer in graph.iter_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _train(model, x, y, steps=3):
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=steps, shuffle=False, verbose=0)


def test_trains_exactly_as_keras_batch_normalization():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = conv_bn_model()
    fused = graph.rewrite(model, graph.training_layer)
    assert [type(l) for l in batch_norms(fused)] == [FusedBatchNormalization] * 2
    _train(model, x, y)
    _train(fused, x, y)
    # Every weight, moving statistics included, followed the same path.
    for a, b in zip(model.weights, fused.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a),
            rtol=1e-4, atol=1e-4, err_msg=a.path,
        )
    assert not np.allclose(keras.ops.convert_to_numpy(batch_norms(model)[0].moving_mean), 0)
    np.testing.assert_allclose(fused.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("technique", ["prune", "cluster"])
def test_techniques_swap_in_the_fused_class_and_strip_swaps_it_out(technique, tmp_path):
    model = conv_bn_model()
    if technique == "prune":
        optimized = sparsity.prune_low_magnitude(model)
        strip = sparsity.strip_pruning
    else:
        optimized = clustering.cluster_weights(model, number_of_clusters=4)
        strip = clustering.strip_clustering
    assert all(type(l) is keras.layers.BatchNormalization for l in batch_norms(model))
    fused = batch_norms(optimized)
    assert [type(l) for l in fused] == [FusedBatchNormalization] * 2
    assert [l.name for l in fused] == [l.name for l in batch_norms(model)]
    assert fused[0].get_config() == batch_norms(model)[0].get_config() | {
        "name": fused[0].name}
    path = tmp_path / "m.keras"
    optimized.save(path)
    loaded = keras.models.load_model(path)
    assert [type(l) for l in batch_norms(loaded)] == [FusedBatchNormalization] * 2
    stripped = strip(optimized)
    assert all(type(l) is keras.layers.BatchNormalization for l in batch_norms(stripped))
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(stripped.predict(x, verbose=0),
                               optimized.predict(x, verbose=0), atol=1e-5)


def test_a_users_batch_normalization_subclass_is_kept():
    @keras.saving.register_keras_serializable(package="test_batch_norm")
    class MyBatchNorm(keras.layers.BatchNormalization):
        pass

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    model = keras.Model(inputs, MyBatchNorm()(x))
    pruned = sparsity.prune_low_magnitude(model)
    assert [type(l) for l in batch_norms(pruned)] == [MyBatchNorm]


def test_masked_and_frozen_calls_take_keras_path():
    bn = FusedBatchNormalization()
    bn.build((None, 2, 2, 3))
    reference = keras.layers.BatchNormalization()
    reference.build((None, 2, 2, 3))
    x = np.random.default_rng(2).normal(size=(2, 2, 2, 3)).astype("float32")
    bn.trainable = reference.trainable = False
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn(x, training=True)),
                               keras.ops.convert_to_numpy(reference(x, training=True)),
                               atol=1e-6)
    assert np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0.0)
