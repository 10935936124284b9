"""Graph walking and rewriting shared by every technique (tfmot_lite/graph.py)."""

import keras
import numpy as np
import pytest

from tfmot_lite import graph


def _nested():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="d1")], name="inner"
    )
    x = keras.Input((4,))
    y = keras.layers.Dense(2, name="head")(inner(x))
    return keras.Model(x, y, name="outer")


def test_iter_layers_paths_name_nested_layers():
    layers = [
        (path, layer)
        for path, layer in graph.iter_layers(_nested())
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert [path for path, _ in layers] == ["inner/d1", "head"]
    assert all(isinstance(layer, keras.layers.Dense) for _, layer in layers)


def test_copy_layer_copies_values_not_buffers():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    clone = graph.copy_layer(layer)
    np.testing.assert_array_equal(clone.kernel.numpy(), layer.kernel.numpy())
    clone.kernel.assign(np.zeros((4, 3), "float32"))
    assert np.abs(layer.kernel.numpy()).sum() > 0


def test_copy_layer_keeps_adapted_normalization():
    norm = keras.layers.Normalization()
    data = np.random.default_rng(0).normal(3.0, 2.0, (256, 5)).astype("float32")
    norm.adapt(data)
    clone = graph.copy_layer(norm)
    np.testing.assert_allclose(clone(data[:8]), norm(data[:8]), atol=1e-6)


def test_rewrite_returns_new_model_and_leaves_input_untouched():
    model = _nested()
    before = [w.numpy().copy() for w in model.weights]
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    expected = model(x)

    def zero_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
        return layer

    new = graph.rewrite(model, zero_dense)
    assert new is not model
    assert all(a is not b for a, b in zip(new.weights, model.weights))
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    np.testing.assert_allclose(model(x), expected)
    # Every kernel in the copy was zeroed, so only the biases remain.
    assert not np.allclose(new(x), expected)


def test_subclassed_model_is_refused_by_name():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="my_net")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="my_net.*subclassed"):
        graph.check_rewritable(Net())


def test_dataflow_graph_inlines_nested_models():
    flow = graph.DataflowGraph(_nested())
    paths = [op.path for op in flow.ops]
    assert paths == ["inner/d1", "head"]
    first, second = flow.ops
    assert flow.next_ops(first) == [second]
    assert flow.input_shape(second) == (None, 3)
