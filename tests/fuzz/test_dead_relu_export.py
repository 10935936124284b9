"""A fuzzer finding, fixed: a layer that outputs only zeros (a dead ReLU)
gets an int8 range of [0, 0]; LiteRT's XNNPACK delegate cannot prepare the
model and aborts the process. The export now says so with an error instead
(`export/degenerate.py`), before anything runs the model in this process."""

import keras
import model_checks  # tests/fuzz/, beside this file
import numpy as np
import pytest
from model_strategies import recipe_from_code

from tfmot_lite import export

pytestmark = pytest.mark.slow

DEAD_RELU = '''
nested_1 = keras.Sequential([
    keras.Input((8, 8, 2)),
    L.Conv2DTranspose(4, 3, padding="same", name="nested_1_conv2dtranspose_2"),
    L.GlobalMaxPooling2D(name="nested_1_globalmaxpooling2d_3"),
    L.ActivityRegularization(l2=0.01, name="nested_1_activityregularization_4"),
], name="nested_1")
model = keras.Sequential([
    keras.Input((8, 8, 2), dtype="float32", name="input_0"),
    nested_1,
    L.Dense(7, activation="swish", use_bias=False, name="dense_5"),
    L.Dense(3, activation="relu", use_bias=False, name="dense_6"),
    L.Dense(2, activation="swish", use_bias=True, name="dense_7"),
    L.Dense(5, name="head_0"),
], name="fuzzed")
'''


def test_a_model_xnnpack_cannot_prepare_is_an_error_not_an_abort(tmp_path):
    recipe = recipe_from_code(DEAD_RELU)
    keras.backend.clear_session()
    technique = model_checks.TECHNIQUES["cluster"]
    clustered = technique.wrap(recipe.build())
    model_checks._train(clustered, recipe, technique, eager=True)
    plain = technique.strip(clustered)
    path = tmp_path / "model.tflite"
    with pytest.raises(ValueError, match="cannot run on LiteRT's default XNNPACK delegate"):
        export.quantize_post_training(
            plain, "int8", representative_data=recipe.sample_inputs(32, seed=3), path=path)
    assert not path.exists()  # nothing half-written


def test_zero_ranges_xnnpack_can_prepare_are_a_warning():
    inputs = keras.Input((6,))
    dead = keras.layers.Dense(4, activation="relu", kernel_initializer="zeros",
                              bias_initializer=keras.initializers.Constant(-1.0))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(dead))
    data = np.random.default_rng(0).uniform(size=(32, 6)).astype("float32")
    with pytest.warns(UserWarning, match=r"integer range is \[0, 0\]"):
        export.quantize_post_training(model, "int8", representative_data=data)
