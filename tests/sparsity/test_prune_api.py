import keras
import numpy as np
import pytest
from model_builders import mlp

from tfmot_lite.core import graph
from tfmot_lite.sparsity import keras as sparsity


def wrappers(model):
    return [l for _, l in graph.iter_layers(model) if isinstance(l, sparsity.PruneLowMagnitude)]


def snapshot(model):
    return [w.copy() for w in model.get_weights()]


@pytest.mark.parametrize(
    "layer, pruned_names",
    [
        (keras.layers.Dense(4), ["kernel"]),
        (keras.layers.EinsumDense("ab,bc->ac", output_shape=4), ["kernel"]),
        (keras.layers.Conv1D(4, 3), ["kernel"]),
        (keras.layers.Conv2D(4, 3), ["kernel"]),
        (keras.layers.Conv3D(4, 3), ["kernel"]),
        (keras.layers.Conv1DTranspose(4, 3), ["kernel"]),
        (keras.layers.Conv2DTranspose(4, 3), ["kernel"]),
        (keras.layers.Conv3DTranspose(4, 3), ["kernel"]),
        (keras.layers.SeparableConv1D(4, 3), ["pointwise_kernel"]),
        (keras.layers.SeparableConv2D(4, 3), ["pointwise_kernel"]),
        (keras.layers.Embedding(20, 4), ["embeddings"]),
        (keras.layers.SimpleRNN(4), ["kernel", "recurrent_kernel"]),
        (keras.layers.LSTM(4), ["kernel", "recurrent_kernel"]),
        (keras.layers.GRU(4), ["kernel", "recurrent_kernel"]),
        (keras.layers.DepthwiseConv2D(3), []),
        (keras.layers.BatchNormalization(), []),
        (keras.layers.LayerNormalization(), []),
    ],
)
def test_each_known_layer_prunes_its_kernels(layer, pruned_names):
    shapes = {
        "Conv1D": (8, 3), "Conv1DTranspose": (8, 3), "SeparableConv1D": (8, 3),
        "SimpleRNN": (5, 3), "LSTM": (5, 3), "GRU": (5, 3),
        "Conv3D": (6, 6, 6, 2), "Conv3DTranspose": (6, 6, 6, 2),
        "Embedding": (5,), "Dense": (6,), "EinsumDense": (6,),
        "LayerNormalization": (6,),
    }
    shape = shapes.get(layer.__class__.__name__, (8, 8, 3))
    inputs = keras.Input(shape, dtype="int32" if isinstance(layer, keras.layers.Embedding) else "float32")
    model = keras.Model(inputs, layer(inputs))
    pruned = sparsity.prune_low_magnitude(model, sparsity.ConstantSparsity(0.5, 0))
    found = wrappers(pruned)
    if not pruned_names:
        assert found == []
        return
    (wrapper,) = found
    assert [w.name for w in wrapper.pruned_weights] == pruned_names


def test_multi_head_attention_prunes_query_key_value_and_output_kernels():
    q = keras.Input((5, 8))
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    model = keras.Model(q, mha(q, q))
    pruned = sparsity.prune_low_magnitude(model)
    (wrapper,) = wrappers(pruned)
    assert len(wrapper.pruned_weights) == 4
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    np.testing.assert_allclose(pruned(x), model(x), atol=1e-5)  # masks start at ones


def test_layers_without_weights_pass_through_unwrapped():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2)(x)
    pruned = sparsity.prune_low_magnitude(keras.Model(inputs, outputs))
    types = [type(l).__name__ for l in pruned.layers]
    assert types == ["InputLayer", "PruneLowMagnitude", "MaxPooling2D", "Flatten", "PruneLowMagnitude"]


def test_pruning_returns_a_new_model_and_never_mutates_the_input(tiny_data):
    x, y = tiny_data
    model = mlp(16)
    before = snapshot(model)
    pruned = sparsity.prune_low_magnitude(model, sparsity.ConstantSparsity(0.8, 0, frequency=1))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=2, batch_size=16, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    for a, b in zip(before, snapshot(model)):
        np.testing.assert_array_equal(a, b)
    assert all(not isinstance(l, sparsity.PruneLowMagnitude) for l in model.layers)
    # The same model can be pruned again.
    again = sparsity.prune_low_magnitude(model)
    assert len(wrappers(again)) == 2
    # And the input model still trains on its own.
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)


def test_single_layer_and_list_of_layers():
    layer = keras.layers.Dense(4)
    wrapped = sparsity.prune_low_magnitude(layer)
    assert isinstance(wrapped, sparsity.PruneLowMagnitude)
    assert wrapped.layer is not layer
    model = keras.Sequential([keras.Input((3,)), wrapped, keras.layers.Dense(2)])
    assert model(np.ones((1, 3), "float32")).shape == (1, 2)
    assert not layer.built
    pair = sparsity.prune_low_magnitude([keras.layers.Dense(2), keras.layers.Conv2D(2, 1)])
    assert all(isinstance(w, sparsity.PruneLowMagnitude) for w in pair)


def test_nested_models_are_pruned_inside(tiny_data):
    x, _ = tiny_data
    inner = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, activation="relu")], name="inner")
    inputs = keras.Input((12,))
    outputs = keras.layers.Dense(3)(inner(inputs))
    outer = keras.Model(inputs, outputs, name="outer")
    pruned = sparsity.prune_low_magnitude(outer)
    paths = [p for p, l in graph.iter_layers(pruned) if isinstance(l, sparsity.PruneLowMagnitude)]
    assert paths == ["inner/prune_low_magnitude_dense", "prune_low_magnitude_dense_1"] or len(paths) == 2
    assert any(p.startswith("inner/") for p in paths)
    np.testing.assert_allclose(pruned(x), outer(x), atol=1e-6)
    assert all(not isinstance(l, sparsity.PruneLowMagnitude) for _, l in graph.iter_layers(outer))


class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


class PrunableScale(Scale, sparsity.PrunableLayer):
    def get_prunable_weights(self):
        return [self.w]


def test_unknown_layers_with_weights_are_all_named_in_one_error():
    inputs = keras.Input((4,))
    x = Scale(name="scale_a")(inputs)
    x = keras.layers.Dense(4)(x)
    x = Scale(name="scale_b")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError) as err:
        sparsity.prune_low_magnitude(model)
    message = str(err.value)
    assert "scale_a" in message and "scale_b" in message
    assert "PrunableLayer" in message and "clone_function" in message


def test_custom_prunable_layer_is_pruned(tiny_data):
    x, y = tiny_data
    inputs = keras.Input((12,))
    outputs = keras.layers.Dense(3)(PrunableScale(name="scale")(inputs))
    model = keras.Model(inputs, outputs)
    pruned = sparsity.prune_low_magnitude(model, sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    scale = stripped.get_layer("scale")
    assert isinstance(scale, PrunableScale)
    assert int((np.asarray(scale.w) == 0).sum()) == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pruning_schedule="constant"), "pruning_schedule"),
        (dict(block_size=(0, 2)), "block_size"),
        (dict(block_pooling_type="MEDIAN"), "block_pooling_type"),
        (dict(sparsity_m_by_n=(4, 4)), "sparsity_m_by_n"),
        (dict(sparsity_m_by_n=(2, 4), block_size=(2, 2)), "sparsity_m_by_n"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sparsity.prune_low_magnitude(mlp(16), **kwargs)


def test_block_sparsity_on_a_3x3_conv_names_the_layer():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv3x3")])
    with pytest.raises(ValueError, match="conv3x3"):
        sparsity.prune_low_magnitude(model, block_size=(2, 2))


def test_policy_is_consulted_before_wrapping():
    class DenseOnly(sparsity.PruningPolicy):
        def allow_pruning(self, layer):
            return layer.name == "keep_me"

        def ensure_model_supports_pruning(self, model):
            if len(model.layers) < 2:
                raise ValueError("too small")

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="keep_me"),
                              keras.layers.Dense(2, name="leave_me")])
    pruned = sparsity.prune_low_magnitude(model, pruning_policy=DenseOnly())
    assert [w.layer.name for w in wrappers(pruned)] == ["keep_me"]
    with pytest.raises(ValueError, match="too small"):
        sparsity.prune_low_magnitude(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
                                     pruning_policy=DenseOnly())


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        sparsity.prune_low_magnitude(net)


def test_prune_scope_loads_models_like_tfmot(tmp_path):
    pruned = sparsity.prune_low_magnitude(mlp(16))
    path = str(tmp_path / "m.keras")
    pruned.save(path)
    with sparsity.prune_scope():
        loaded = keras.models.load_model(path)
    assert len(wrappers(loaded)) == 2
