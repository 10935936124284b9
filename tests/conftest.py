"""Shared fixtures: real data (the bundled digits) and small Keras models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfmot_lite import data  # noqa: E402
from tfmot_lite.demo import build_cnn  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def digits32():
    """The bundled digits as 32x32x3 images: (x_train, y_train), (x_test, y_test)."""
    return data.digits(image_size=32)


@pytest.fixture
def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = rng.integers(0, 3, size=64).astype("int32")
    return x, y


def small_cnn(input_shape=(32, 32, 3), classes=10):
    """Conv-BN-ReLU CNN: the demo's model, the shape the tutorials optimize.

    BatchNormalization uses momentum 0.9 so that its moving statistics settle
    within the few hundred steps a test trains for.
    """
    return build_cnn(input_shape, classes)
