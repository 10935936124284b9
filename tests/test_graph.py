"""Graph walking and rewriting shared by every technique (tfmot_lite/core/graph.py)."""

import keras
import numpy as np
import pytest

from tfmot_lite.core import graph


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


def test_rewrite_call_hook_inserts_layers_at_model_inputs():
    inserted = []

    def call(layer, args, kwargs, model_inputs):
        def at_input(t):
            if isinstance(t, keras.KerasTensor) and id(t) in model_inputs:
                layer_ = keras.layers.Rescaling(2.0, name=f"x2_{len(inserted)}")
                inserted.append(layer_)
                return layer_(t)
            return t

        return layer(*keras.tree.map_structure(at_input, args), **kwargs)

    model = _nested()
    new = graph.rewrite(model, lambda layer: layer, call=call)
    assert len(inserted) == 1  # the nested model's own input is not a model input
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(new(x), model(2 * x), rtol=1e-6)

    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="only")])
    new_seq = graph.rewrite(seq, lambda layer: layer, call=call)
    assert isinstance(new_seq, keras.Sequential)
    assert [type(l).__name__ for l in new_seq.layers] == ["Rescaling", "Dense"]
    np.testing.assert_allclose(new_seq(x), seq(2 * x), rtol=1e-6)


def test_rewrite_passes_raw_operations_only_when_asked():
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp) + 1.0)
    seen = []

    def replace(layer):
        seen.append(type(layer).__name__)
        return layer

    graph.rewrite(model, replace)
    assert "Add" not in seen
    seen.clear()
    new = graph.rewrite(model, replace, operations=True)
    assert "Add" in seen
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(new(x), model(x), rtol=1e-6)


class _Unregistered(keras.layers.Layer):
    """Not registered with Keras: found through the live object."""

    def call(self, x):
        return x * 3.0


class _Holder(keras.layers.Wrapper):
    _copied_by_reference = ("payload",)

    def __init__(self, layer, payload=None, **kwargs):
        super().__init__(layer, **kwargs)
        self.payload = payload

    def call(self, x):
        return self.layer(x)

    def get_config(self):
        return {**super().get_config(), "payload": "serialized"}


def test_copy_layer_keeps_outer_scope_and_live_objects():
    payload = object()
    holder = _Holder(_Unregistered(), payload=payload)
    with keras.saving.custom_object_scope({"_Holder": _Holder}):
        clone = graph.copy_layer(holder)
    assert clone is not holder and clone.payload is payload
    assert type(clone.layer) is _Unregistered


def test_strip_calls_each_layers_strip():
    model = _nested()

    class Marker(keras.layers.Wrapper):
        def call(self, x):
            return self.layer(x)

        def strip(self):
            return self.layer

    wrapped = keras.models.clone_model(
        model, clone_function=lambda l: Marker(l) if l.name == "head" else l
    )
    with keras.saving.custom_object_scope({"Marker": Marker}):
        stripped = graph.strip(wrapped, (Marker,))
    assert [type(l).__name__ for l in stripped.layers][-1] == "Dense"
