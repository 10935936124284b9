"""Small models several test modules build, one definition each.

Import them as `from model_builders import ...` (pytest.ini puts tests/ on
the path). The CNNs the demo, tutorials and benchmarks train (also the
tests' everyday digits CNN) are `tfmot_lite.example_models`.
"""

import keras

L = keras.layers


def dense_model(inputs=6, hidden=8, classes=3, head_activation=None, name=None):
    """Input -> Dense(hidden, relu) "hidden" -> Dense(classes) "head".

    The smallest model with two kernels every technique wraps; the fixed
    layer names let a test address them (and an error message name them)."""
    x = keras.Input((inputs,))
    h = L.Dense(hidden, activation="relu", name="hidden")(x)
    return keras.Model(x, L.Dense(classes, activation=head_activation, name="head")(h),
                       name=name)


def mlp(hidden=32, name=None):
    """A Sequential Dense(hidden, relu) -> Dense(3) for `tiny_data` (12
    features, 3 classes): Sequential, so the wrapped model is one too and
    `model.layers[i]` is the i-th Dense."""
    return keras.Sequential(
        [keras.Input((12,)), L.Dense(hidden, activation="relu"), L.Dense(3)], name=name)


def mnist_cnn(size=16, activation="relu"):
    """The tfmot guides' MNIST model (Conv 12 filters, max-pool, Dense 10)
    for `size` x `size` grey digits. The collaborative-optimization guides
    write `activation=tf.nn.relu`, the others `"relu"`."""
    return keras.Sequential([
        L.InputLayer(input_shape=(size, size)),
        L.Reshape(target_shape=(size, size, 1)),
        L.Conv2D(filters=12, kernel_size=(3, 3), activation=activation),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dense(10),
    ])
