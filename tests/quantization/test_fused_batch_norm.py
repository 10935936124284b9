"""The fused Conv-BN layer's training-time BatchNormalization
(`fused.batch_norm_train`) computes what Keras' BatchNormalization computes:
outputs, gradients and moving-statistics updates."""

import keras
import numpy as np
import pytest

from tfmot_lite.quantization.fused import batch_norm_train


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_batch_norm_train_matches_keras(center, scale):
    rng = np.random.default_rng(0)
    layers = []
    for _ in range(2):
        bn = keras.layers.BatchNormalization(center=center, scale=scale, momentum=0.9)
        bn.build((None, 5, 5, 4))
        layers.append(bn)
    for a, b in zip(layers[0].weights, layers[1].weights):
        value = rng.uniform(0.5, 2.0, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    x = rng.normal(2.0, 3.0, (3, 5, 5, 4)).astype("float32")
    expected = layers[0](x, training=True)
    got = batch_norm_train(layers[1], keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
    for a, b in zip(layers[0].non_trainable_weights, layers[1].non_trainable_weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)
    # The update moved the statistics away from their initial values.
    assert not np.allclose(layers[1].moving_mean.numpy(), 0.0)


def test_batch_norm_train_gradients_match_keras():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    import tensorflow as tf

    rng = np.random.default_rng(1)
    layers = [keras.layers.BatchNormalization() for _ in range(2)]
    for bn in layers:
        bn.build((None, 4, 4, 3))
    for a, b in zip(layers[0].weights, layers[1].weights):
        value = rng.uniform(0.5, 2.0, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    x = tf.constant(rng.normal(size=(2, 4, 4, 3)).astype("float32"))
    w = tf.constant(rng.normal(size=(2, 4, 4, 3)).astype("float32"))
    grads = []
    for fn, bn in ((lambda bn, x: bn(x, training=True), layers[0]), (batch_norm_train, layers[1])):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(bn, x) * w)
        grads.append(tape.gradient(loss, [x] + bn.trainable_weights))
    for a, b in zip(*grads):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4)
