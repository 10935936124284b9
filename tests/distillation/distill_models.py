"""Small teachers and students for the distillation tests."""

import keras
import numpy as np

L = keras.layers
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def dense_model(classes=4, activation=None, regularizer=None, name=None, features=6):
    inputs = keras.Input((features,))
    hidden = L.Dense(8, activation="relu", kernel_regularizer=regularizer)(inputs)
    outputs = L.Dense(classes, activation=activation)(hidden)
    return keras.Model(inputs, outputs, name=name)


def small_cnn(classes=10):
    """Conv-BN-ReLU twice, GAP, Dense: BatchNorm statistics the teacher must keep."""
    inputs = keras.Input((12, 12, 3))
    x = inputs
    for filters in (8, 16):
        x = L.Conv2D(filters, 3, strides=2, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(classes)(x), name="small_cnn")


def images(n=32, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 12, 12, 3)).astype("float32"),
            rng.integers(0, classes, size=n))


def trained_teacher(epochs=2):
    x, y = images()
    teacher = small_cnn()
    teacher.compile(keras.optimizers.Adam(1e-2), LOSS)
    teacher.fit(x, y, epochs=epochs, batch_size=8, verbose=0)
    return teacher


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def same_weights(model, saved):
    return all(np.array_equal(a, np.asarray(b)) for a, b in zip(saved, model.get_weights()))
