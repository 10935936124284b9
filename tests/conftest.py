"""Shared fixtures: seeding, real data (the bundled digits) and small data.

The small CNN the tests optimize is `tfmot_lite.example_models.build_cnn`;
the small models several test modules build are in `model_builders.py`.
"""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfmot_lite import data  # noqa: E402


# What the imports made lives as long as the process: out of the garbage
# collector's full passes (see `_seeded`).
gc.freeze()


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session(free_memory=False)
    # Collect the test's garbage, then freeze what survives out of later
    # full collections. TensorFlow keeps the graphs of traced functions
    # after their models are gone (about 20,000 objects per small model
    # trained, plain Keras too), so an xdist worker reaches millions of
    # objects, and every automatic full collection and the converter's
    # `gc.collect()` walked them all: 217 s of the suite's test time went
    # to automatic full collections alone (47 s in one KerasHub BERT test).
    # Frozen, they are walked no more; each collection here walks only
    # what one test made. (What a module-scoped fixture holds stays frozen,
    # in memory, after its module: a few small models per module.)
    gc.collect()
    gc.freeze()


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



@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests that share a module-scoped fixture (a tutorial's quick run, a
    trained model) run on one xdist worker (`--dist loadgroup` in
    pytest.ini), so the fixture is built once, not once per worker; and the
    slow tier runs first."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(
            definition.scope == "module"
            for definitions in info.name2fixturedefs.values()
            for definition in definitions
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # Modules with slow tests first, so that the longest tests do not start
    # last and leave one xdist worker idle at the end of the run. A module
    # stays in one piece and in order (its module-scoped fixtures are built
    # once).
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)
