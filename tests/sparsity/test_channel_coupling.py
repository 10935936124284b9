"""Which channels are pruned together, which stay, and why (channel_report)."""

import keras
import pytest
from channel_models import mobilenet_v2_tiny, nested_model, resnet_tiny

from tfmot_lite.sparsity import keras as sparsity

L = keras.layers


def groups_by_layer(report):
    return {name: g for g in report.groups for name in g.layers}


def test_inverted_residual_blocks_couple_stem_and_projections():
    report = sparsity.channel_report(mobilenet_v2_tiny())
    groups = groups_by_layer(report)
    # The residual adds tie the stem to both blocks' projections.
    assert groups["stem"] is groups["block1_project"] is groups["block2_project"]
    assert groups["stem"].channels == 8
    # Each expansion is its own group (the depthwise conv passes it through).
    assert groups["block1_expand"] is not groups["block2_expand"]
    assert groups["block1_expand"].channels == 24
    assert groups["head"].prunable and groups["stem"].prunable
    assert not groups["logits"].prunable
    assert "model output" in groups["logits"].reason


def test_resnet_blocks_couple_shortcut_and_residual_branch():
    groups = groups_by_layer(sparsity.channel_report(resnet_tiny()))
    # Identity shortcut: stem and res1's second conv; projection shortcut:
    # res2's shortcut conv and its second conv.
    assert groups["stem"] is groups["res1_conv2"]
    assert groups["res2_shortcut"] is groups["res2_conv2"]
    assert groups["res2_shortcut"] is not groups["stem"]
    assert groups["res1_conv1"] is not groups["stem"]
    assert all(groups[n].prunable for n in ("stem", "res1_conv1", "res2_conv2"))


def test_nested_model_is_inlined_and_concatenate_keeps_groups_apart():
    groups = groups_by_layer(sparsity.channel_report(nested_model()))
    # Concatenate offsets: each branch stays its own group.
    assert groups["backbone/bb_branch_a"] is not groups["backbone/bb_branch_b"]
    assert groups["backbone/bb_branch_a"].channels == 6
    assert groups["backbone/bb_branch_b"].prunable
    assert groups["head_sep"].prunable and groups["fc"].prunable


def test_concatenate_then_add_joins_the_branches():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="a")(inputs)
    b = L.Conv2D(4, 1, name="b")(inputs)
    c = L.Conv2D(8, 1, name="c")(inputs)
    x = L.Add()([L.Concatenate()([a, b]), c])
    x = L.Conv2D(3, 1, name="out")(x)
    groups = groups_by_layer(sparsity.channel_report(keras.Model(inputs, x)))
    assert groups["a"] is groups["b"] is groups["c"]
    assert groups["a"].channels == 8


@pytest.mark.parametrize(
    "make_blocker, reason",
    [
        (lambda: L.Flatten(name="blocker"), "mixes channels"),
        (lambda: L.Reshape((-1,), name="blocker"), "mixes channels"),
        (lambda: L.Activation("sigmoid", name="blocker"), "maps 0 to a non-zero"),
        (lambda: L.LayerNormalization(name="blocker"), "does not understand"),
        (lambda: L.Lambda(lambda t: t * 2.0, name="blocker"), "does not understand"),
    ],
)
def test_channels_that_cannot_be_removed_are_left_intact_with_a_reason(
    make_blocker, reason
):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, name="conv")(inputs)
    x = make_blocker()(x)
    x = L.Flatten()(x) if len(x.shape) > 2 else x
    outputs = L.Dense(2, name="logits")(x)
    report = sparsity.channel_report(keras.Model(inputs, outputs))
    group = groups_by_layer(report)["conv"]
    assert not group.prunable
    assert reason in group.reason and "blocker" in group.reason
    assert "conv" in str(report) and reason in str(report)


def test_custom_layer_with_weights_on_the_path_is_a_clear_error():
    class Scale(L.Layer):
        def build(self, shape):
            self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, name="conv")(inputs)
    x = Scale(name="my_scale")(x)
    x = L.Conv2D(5, 1, name="after")(x)
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"my_scale.*Scale.*conv") as error:
        sparsity.prune_channels(model)
    assert "leave_intact=['my_scale']" in str(error.value)
    # The fix named in the error works: conv's channels stay intact.
    pruned = sparsity.prune_channels(model, leave_intact=["my_scale"])
    wrapped = [l.layer.name for l in pruned.layers if isinstance(l, sparsity.PruneChannels)]
    assert "conv" not in wrapped and "after" in wrapped
    report = groups_by_layer(sparsity.channel_report(model, leave_intact=["my_scale"]))
    assert "leave_intact" in report["conv"].reason


def test_nothing_to_prune_is_a_clear_error():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(3, name="only")(inputs))
    with pytest.raises(ValueError, match="(?s)no channels that can be pruned.*model output"):
        sparsity.prune_channels(model)


def test_multiply_couples_like_add():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, activation="relu", name="a")(inputs)
    b = L.Conv2D(4, 1, activation="tanh", name="b")(inputs)
    x = L.Multiply()([a, b])
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    groups = groups_by_layer(sparsity.channel_report(keras.Model(inputs, outputs)))
    assert groups["a"] is groups["b"] and groups["a"].prunable
