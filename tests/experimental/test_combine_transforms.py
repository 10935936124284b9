"""The math of the structure-keeping weight transforms, and their configs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmot_lite.experimental import combine
from tfmot_lite.experimental.combine.transforms import MAX_CLUSTERS


class _Owner(keras.layers.Layer):
    """A layer to hold a transform's state (what a wrapper would be)."""


def _build(transform, shape):
    owner = _Owner()
    state = transform.build(shape, "kernel", owner)
    return owner, state


def _per_tensor_clustered(rng, shape, k, zeros=0.0):
    centroids = np.sort(rng.normal(size=k)).astype("float32")
    values = centroids[rng.integers(0, k, size=shape)]
    if zeros:
        values[rng.random(shape) < zeros] = 0.0
    return values


def test_sparsity_preserve_masks_and_blocks_gradient():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 3, 4, 8)).astype("float32")
    w0[rng.random(w0.shape) < 0.5] = 0.0
    transform = combine.SparsityPreserve.from_weight(w0)
    _, state = _build(transform, w0.shape)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(state["mask"]), w0 != 0)
    # A trained kernel has moved everywhere; the transform puts the pruned
    # positions back to exactly zero and passes no gradient to them.
    w = tf.Variable(w0 + 0.1)
    with tf.GradientTape() as tape:
        out = transform(w, True, state)
        loss = tf.reduce_sum(out * out)
    grad = tape.gradient(loss, w).numpy()
    out = out.numpy()
    assert np.all(out[w0 == 0] == 0)
    np.testing.assert_allclose(out[w0 != 0], (w0 + 0.1)[w0 != 0])
    assert np.all(grad[w0 == 0] == 0) and np.all(grad[w0 != 0] != 0)


def test_cluster_preserve_per_tensor_rebuilds_the_kernel_and_sums_gradients():
    rng = np.random.default_rng(1)
    w0 = _per_tensor_clustered(rng, (3, 3, 4, 8), 6)
    transform = combine.ClusterPreserve.from_weight(w0, per_channel_allowed=True)
    assert transform.get_config() == {
        "num_centroids": 6, "per_channel": False, "preserve_sparsity": False}
    owner, state = _build(transform, w0.shape)
    centroids = state["centroids"]
    assert centroids.trainable and not state["indices"].trainable
    with tf.GradientTape() as tape:
        out = transform(tf.constant(w0), False, state)
        loss = tf.reduce_sum(out * tf.constant(np.arange(w0.size, dtype="float32").reshape(w0.shape)))
    np.testing.assert_array_equal(out.numpy(), w0)
    grad = tf.convert_to_tensor(tape.gradient(loss, centroids.value)).numpy()
    weights = np.arange(w0.size, dtype="float32").reshape(w0.shape)
    expected = [weights[w0 == c].sum() for c in np.unique(w0)]
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    # Moving a centroid moves every weight of its cluster together.
    centroids.assign(centroids.value + 1.0)
    out = keras.ops.convert_to_numpy(transform(tf.constant(w0), False, state))
    np.testing.assert_allclose(out, w0 + 1.0)
    assert len(np.unique(out)) == 6
    assert {v.name for v in owner.weights} == {"kernel_cluster_centroids",
                                               "kernel_cluster_indices"}


def test_cluster_preserve_per_channel_when_channels_have_their_own_values():
    rng = np.random.default_rng(2)
    channels = [_per_tensor_clustered(rng, (3, 3, 4), 5) for _ in range(8)]
    w0 = np.stack(channels, axis=-1)
    per_channel = combine.ClusterPreserve.from_weight(w0, per_channel_allowed=True)
    assert per_channel.per_channel and per_channel.num_centroids == 5
    _, state = _build(per_channel, w0.shape)
    assert tuple(state["centroids"].shape) == (8, 5)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(per_channel(tf.constant(w0), False, state)), w0)
    # A kernel quantized per tensor (Dense) keeps one set for the kernel.
    per_tensor = combine.ClusterPreserve.from_weight(w0, per_channel_allowed=False)
    assert not per_tensor.per_channel and per_tensor.num_centroids == len(np.unique(w0))


def test_cluster_preserve_with_sparsity_keeps_zeros_when_the_zero_centroid_moves():
    rng = np.random.default_rng(3)
    w0 = _per_tensor_clustered(rng, (16, 8), 7, zeros=0.5)
    w0[w0 == 0] = 0.0
    transform = combine.ClusterPreserve.from_weight(w0, preserve_sparsity=True)
    assert transform.num_centroids == len(np.unique(w0)) <= 8
    _, state = _build(transform, w0.shape)
    state["centroids"].assign(keras.ops.convert_to_numpy(state["centroids"]) + 0.5)
    out = keras.ops.convert_to_numpy(transform(tf.constant(w0), False, state))
    assert np.all(out[w0 == 0] == 0)
    assert len(np.unique(out)) <= 8


def test_unclustered_kernel_gets_plain_qat():
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(32, 32)).astype("float32")
    w0[:, :4] = 0.0
    transform = combine.ClusterPreserve.from_weight(w0, preserve_sparsity=True)
    assert len(np.unique(w0)) > MAX_CLUSTERS
    assert not transform.clustered and not transform.replaces_weight
    owner, state = _build(transform, w0.shape)
    assert [v.name for v in owner.weights] == ["kernel_sparsity_mask"]
    w = w0 + 1.0
    out = keras.ops.convert_to_numpy(transform(tf.constant(w), True, state))
    np.testing.assert_array_equal(out[:, 4:], w[:, 4:])
    assert np.all(out[:, :4] == 0)


def test_clustered_kernel_gets_zero_gradient_and_is_written_back_in_training():
    rng = np.random.default_rng(5)
    layer = keras.layers.Dense(4)
    layer.build((None, 6))
    layer.kernel.assign(_per_tensor_clustered(rng, (6, 4), 3))
    transform = combine.ClusterPreserve.from_weight(layer.kernel)
    owner = _Owner()
    state = transform.build(tuple(layer.kernel.shape), "kernel", owner, layer.kernel)
    assert layer.kernel.trainable  # a weight of the layer, as in tfmot
    state["centroids"].assign(keras.ops.convert_to_numpy(state["centroids"]) * 2.0)
    before = keras.ops.convert_to_numpy(layer.kernel).copy()
    transform(layer.kernel, False, state)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), before)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(transform(layer.kernel, True, state))
    grad = tape.gradient(loss, layer.kernel.value)
    assert grad is not None and not np.any(tf.convert_to_tensor(grad).numpy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.kernel), before * 2.0)


@pytest.mark.parametrize("obj", [
    combine.SparsityPreserve(),
    combine.ClusterPreserve(8, True, True),
    combine.PreservingQuantizer(
        combine.ClusterPreserve(4, False, False),
        __import__("tfmot_lite").quantization.keras.quantizers.LastValueQuantizer(
            8, True, True, True),
    ),
    combine.Default8BitPrunePreserveQuantizeScheme(),
    combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
    combine.Default8BitClusterPreserveQuantizeScheme(disable_per_axis=True),
    combine.Default8BitClusterPreserveQuantizeRegistry(preserve_sparsity=False),
    combine.Default8BitPrunePreserveQuantizeRegistry(),
])
def test_config_round_trip(obj):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()


def test_scheme_layout_transform_round_trips():
    scheme = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False)
    transform = scheme.get_layout_transformer()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(transform))
    assert restored.registry.get_config() == scheme.get_quantize_registry().get_config()
    assert restored.registry.preserve_sparsity is False


def test_scheme_rejects_non_bool_preserve_sparsity():
    with pytest.raises(ValueError, match="preserve_sparsity"):
        combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity="yes")


def test_tfmot_import_path():
    import tfmot_lite as tfmot

    assert tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme is (
        combine.Default8BitPrunePreserveQuantizeScheme)
    # tfmot's default: sparsity preserved (a kernel without zeros is unaffected).
    assert combine.Default8BitClusterPreserveQuantizeScheme().preserve_sparsity is True


def test_per_tensor_clusters_stay_shared_when_some_channels_use_fewer_values():
    """Small channels of a kernel clustered per tensor rarely hold every
    centroid; the kernel keeps one shared set (not one set per channel)."""
    rng = np.random.default_rng(6)
    centroids = np.linspace(-1, 1, 8).astype("float32")
    w0 = centroids[rng.integers(0, 8, size=(3, 3, 1, 12))]
    per_channel_max = max(len(np.unique(w0[..., c])) for c in range(12))
    assert per_channel_max < 8 == len(np.unique(w0))
    transform = combine.ClusterPreserve.from_weight(w0, per_channel_allowed=True)
    assert not transform.per_channel and transform.num_centroids == 8
