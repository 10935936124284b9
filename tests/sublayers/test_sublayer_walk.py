"""The walk over the layers inside subclassed layers (`core/sublayers.py`),
the swap on copies and `SublayerHost`, on a user's own blocks."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from tfmot_lite.core import graph, sublayers, techniques
from tfmot_lite.core.sublayer_host import SublayerHost
from sublayer_models import Projection, ResidualBlock, user_block

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras


def _built_block():
    block = ResidualBlock(4, name="block")
    block(keras.ops.zeros((1, 6, 6, 4)))
    return block


def test_children_are_named_by_attribute_list_index_and_dict_key():
    block = _built_block()
    names = [name for name, _ in sublayers.children(block)]
    assert names == ["convs/0", "convs/1", "norms/a", "norms/b", "act", "head"]
    paths = [path for path, _, _ in sublayers.leaves(block)]
    assert paths[-1] == "head/dense"
    assert sublayers.is_composite(block) and not sublayers.is_composite(block.act)


def test_model_paths_go_through_subclassed_layers():
    model, _ = user_block()
    paths = [path for path, _ in graph.iter_layers(model)]
    assert "residual_block/convs/0" in paths
    assert "residual_block/head/dense" in paths
    assert "residual_block" not in paths


def test_swap_replaces_every_reference_and_the_tracking():
    block = _built_block()
    old = block.convs[1]
    new = keras.layers.Conv2D(4, 3, padding="same")
    new.build((None, 6, 6, 4))
    sublayers.swap(block, old, new)
    assert block.convs[1] is new
    assert new in block._layers and old not in block._layers
    assert sum(1 for w in block.weights if w is new.kernel) == 1
    assert not any(w is old.kernel for w in block.weights)


def test_find_names_a_missing_path():
    block = _built_block()
    assert sublayers.find(block, "head/dense")[1] is block.head.dense
    with pytest.raises(ValueError, match="holds no layer at 'head/conv'"):
        sublayers.find(block, "head/conv")


def test_a_single_subclassed_layer_is_wrapped_inside():
    block = _built_block()
    pruned = sparsity.prune_low_magnitude(block)
    assert isinstance(pruned, SublayerHost) and pruned.layer is not block
    wrapped = [p for p, layer in graph.iter_layers(pruned)
               if techniques.technique_of(layer) is techniques.PRUNING]
    assert wrapped == ["block/convs/0", "block/convs/1", "block/head/dense"]
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(pruned(x), block(x), atol=1e-6)
    with pytest.raises(ValueError, match="wraps one by one"):
        sparsity.prune_low_magnitude(block, name="p")


def test_unknown_weights_inside_a_block_are_named_with_their_path():
    @keras.saving.register_keras_serializable(package="tfmot_lite_tests")
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.gamma = self.add_weight(shape=shape[-1:], initializer="ones")

        def call(self, x):
            return x * self.gamma

    @keras.saving.register_keras_serializable(package="tfmot_lite_tests")
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(4)
            self.scale = Scale()

        def call(self, x):
            return self.scale(self.dense(x))

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Block(name="block")(inputs))
    with pytest.raises(ValueError, match=r"block/scale \(Scale\)") as error:
        sparsity.prune_low_magnitude(model)
    assert "tfmot_lite.clone_model" in str(error.value)
    # The way out the error gives works: prune only the Dense inside.
    pruned = tfmot.clone_model(
        model, lambda l: sparsity.prune_low_magnitude(l)
        if isinstance(l, keras.layers.Dense) else l)
    assert [p for p, layer in graph.iter_layers(pruned)
            if techniques.technique_of(layer) is techniques.PRUNING] == ["block/dense"]


def test_a_block_whose_config_builds_other_layers_is_refused():
    @keras.saving.register_keras_serializable(package="tfmot_lite_tests")
    class Forgetful(keras.layers.Layer):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.dense = keras.layers.Dense(units)
            if units == 3:
                self.extra = keras.layers.Dense(units)

        def call(self, x):
            return self.dense(x)

        def get_config(self):
            return {**super().get_config(), "units": 5}  # forgets its own units

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Forgetful(name="forgetful")(inputs))
    with pytest.raises(ValueError, match="forgetful"):
        sparsity.prune_low_magnitude(model)


def test_clone_model_reaches_inside_and_leaves_the_model_alone():
    model, x = user_block()
    before = model.get_weights()
    seen = []

    def clone_function(layer):
        seen.append(type(layer).__name__)
        if isinstance(layer, keras.layers.Dense):
            return clustering.cluster_weights(layer, number_of_clusters=4)
        return layer

    clustered = tfmot.clone_model(model, clone_function)
    assert seen.count("Dense") == 2 and seen.count("Conv2D") == 2
    inner = [p for p, layer in graph.iter_layers(clustered)
             if techniques.technique_of(layer) is techniques.CLUSTERING]
    assert inner[0] == "residual_block/head/dense" and len(inner) == 2
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="must return a Keras layer"):
        tfmot.clone_model(model, lambda layer: None)


def test_callbacks_drive_the_wrappers_inside_blocks():
    model, x = user_block()
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    block = stripped.get_layer("residual_block")
    assert isinstance(block, ResidualBlock) and isinstance(block.head, Projection)
    for kernel in (block.convs[0].kernel, block.head.dense.kernel):
        assert abs(float(np.mean(keras.ops.convert_to_numpy(kernel) == 0)) - 0.5) < 0.02


def test_the_xnnpack_policy_says_it_cannot_follow_a_subclassed_block():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2)(keras.layers.ZeroPadding2D(1)(inputs))
    x = ResidualBlock(8)(x)
    x = keras.layers.Flatten()(keras.layers.GlobalAveragePooling2D(keepdims=True)(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match="subclassed layer, whose data flow the policy cannot follow"):
        sparsity.prune_low_magnitude(model, pruning_policy=sparsity.PruneForLatencyOnXNNPack())
