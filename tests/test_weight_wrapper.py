"""WeightTransformWrapper (tfmot_lite/core/weight_wrapper.py): slots, restore,
dtype casts, and the hooks QAT uses."""

import keras
import numpy as np
import pytest

from tfmot_lite.core import graph
from tfmot_lite.core.weight_wrapper import (
    WeightTransformWrapper,
    assigned_slot,
    find_weight_slots,
    recorded_assignments,
    substituted,
)


class Doubled(WeightTransformWrapper):
    """Runs the layer with twice its kernel."""

    def target_weights(self):
        return [self.layer.kernel]

    def build_transform(self):
        self.calls = 0

    def transformed_weights(self, training):
        return [self.layer.kernel * 2.0]


class HiddenWeights(keras.layers.Layer):
    """Keeps its weight in a list: no attribute holds it."""

    def build(self, input_shape):
        self.parts = [self.add_weight(shape=(input_shape[-1], 2))]

    def call(self, x):
        return x @ self.parts[0]


class Exploding(keras.layers.Dense):
    def call(self, x):
        raise RuntimeError("boom")


def _x():
    return np.random.default_rng(0).normal(size=(3, 4)).astype("float32")


def test_slots_found_once_and_transform_applied():
    dense = keras.layers.Dense(2, use_bias=False)
    wrapper = Doubled(dense)
    out = wrapper(_x())
    assert wrapper._slots == [(dense, "_kernel")]
    np.testing.assert_allclose(out, _x() @ (2.0 * dense.kernel.numpy()), rtol=1e-5)
    # The variable is back in place, untouched.
    assert dense._kernel is dense.kernel and isinstance(dense._kernel, keras.Variable)


def test_weight_not_in_an_attribute_is_a_clear_error():
    layer = HiddenWeights(name="hidden")
    layer.build((None, 4))
    with pytest.raises(ValueError, match="hidden.*not stored as an attribute"):
        find_weight_slots(layer, layer.weights)


def test_variable_restored_when_the_call_raises():
    dense = Exploding(2, name="exploding")
    wrapper = Doubled(dense)
    wrapper.build((None, 4))
    kernel = dense._kernel
    with pytest.raises(RuntimeError, match="boom"):
        wrapper(_x())
    assert dense._kernel is kernel


def test_substituted_restores_and_removes_new_attributes():
    class Holder:
        pass

    owner = Holder()
    owner.a = 1
    with pytest.raises(KeyError):
        with substituted([(owner, "a"), (owner, "b")], [10, 20]):
            assert (owner.a, owner.b) == (10, 20)
            raise KeyError("x")
    assert owner.a == 1 and not hasattr(owner, "b")


def test_transformed_weights_cast_to_compute_dtype():
    dense = keras.layers.Dense(2, use_bias=False, dtype="mixed_float16")
    wrapper = Doubled(dense)
    out = wrapper(_x())
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(dense.kernel.dtype) == "float32"
    expected = _x() @ (2.0 * dense.kernel.numpy())
    np.testing.assert_allclose(np.asarray(out, "float32"), expected, rtol=1e-2, atol=1e-2)


def test_bake_and_strip_write_the_transformed_weights():
    dense = keras.layers.Dense(2, use_bias=False)
    wrapper = Doubled(dense)
    expected = np.asarray(wrapper(_x()))
    stripped = wrapper.strip()
    assert stripped is dense
    np.testing.assert_allclose(stripped(_x()), expected, rtol=1e-5)
    inner = keras.layers.Dense(1)
    assert graph.core_layer(Doubled(inner)) is inner


def test_recorded_assignments_resolve_read_only_kernel_property():
    dense = keras.layers.Dense(2)
    dense.build((None, 4))
    with recorded_assignments(dense) as records:
        dense.kernel = "q"  # Keras 3: a read-only property
        dense.activation = "a"
    assert type(dense) is keras.layers.Dense
    assert [(o is dense, n, v) for o, n, v in records] == [
        (True, "kernel", "q"), (True, "activation", "a")
    ]
    assert assigned_slot(dense, dense, "kernel", dense.kernel) == (dense, "_kernel")
    assert assigned_slot(dense, dense, "bias", dense.bias) == (dense, "bias")
    assert assigned_slot(dense, dense, "activation") == (dense, "activation")
    # Nothing was assigned for real.
    assert isinstance(dense._kernel, keras.Variable) and callable(dense.activation)


def test_input_shape_carried_over_to_the_wrapper():
    model = keras.Sequential([Doubled(keras.layers.Dense(3, input_shape=(5,))),
                              keras.layers.Dense(1)])
    assert model.built and model.inputs[0].shape == (None, 5)
