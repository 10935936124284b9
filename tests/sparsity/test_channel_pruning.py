"""prune_channels: coupled per-channel masks driven by the pruning callbacks."""

import math

import keras
import numpy as np
import pytest
from channel_models import compile_model, data, mobilenet_v2_tiny, nested_model, resnet_tiny

from tfmot_lite.core import graph
from tfmot_lite.sparsity import keras as sparsity


def wrappers(model):
    return {
        path: layer for path, layer in graph.iter_layers(model)
        if isinstance(layer, sparsity.PruneChannels)
    }


def masks(model):
    return {
        layer.layer.name: keras.ops.convert_to_numpy(layer.channel_mask)
        for layer in wrappers(model).values()
    }


def update_once(model):
    """Runs the pruning callback for one step, without training."""
    callback = sparsity.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_train_batch_begin(0)
    return model


def train(model, steps=2, schedule_callbacks=None, x_y=None):
    x, y = x_y or data(model.input_shape[1:])
    compile_model(model).fit(
        x[: 8 * steps], y[: 8 * steps], batch_size=8, epochs=1, verbose=0,
        callbacks=schedule_callbacks or [sparsity.UpdatePruningStep()],
    )
    return model


@pytest.mark.parametrize("build", [pytest.param(mobilenet_v2_tiny, marks=pytest.mark.slow),
                                   resnet_tiny])
def test_coupled_layers_share_masks_with_the_exact_fraction(build):
    model = build()
    report = sparsity.channel_report(model)
    schedule = sparsity.ConstantSparsity(0.5, 0, frequency=1)
    pruned = train(sparsity.prune_channels(model, schedule))
    m = masks(pruned)
    for group in report.prunable:
        group_masks = [m[name] for name in group.layers]
        for other in group_masks[1:]:
            np.testing.assert_array_equal(other, group_masks[0])
        assert group_masks[0].sum() == group.channels - math.floor(0.5 * group.channels)
    if build is mobilenet_v2_tiny:
        # The BatchNorm and depthwise conv between pruned channels follow them.
        np.testing.assert_array_equal(m["block1_dw"], m["block1_expand"])
        np.testing.assert_array_equal(m["block1_dw_bn"], m["block1_expand"])
        np.testing.assert_array_equal(m["block2_project_bn"], m["stem"])
    else:
        np.testing.assert_array_equal(m["res2_shortcut_bn"], m["res2_conv2"])
    # Whole output channels are zero in the kernels.
    for w in wrappers(pruned).values():
        if w.role == "producer":
            kernel = keras.ops.convert_to_numpy(w.pruned_weights[0])
            pruned_columns = kernel[..., keras.ops.convert_to_numpy(w.channel_mask) == 0]
            assert pruned_columns.size and not pruned_columns.any()


def test_least_important_channels_go_first_with_batchnorm_gamma_folded_in():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    conv.kernel.assign(np.array([[[[1.0, 2.0, 3.0, 4.0]] * 2]]).reshape(1, 1, 2, 4))
    # Channel 3 has the largest kernel but a tiny gamma: it goes first.
    bn.gamma.assign(np.array([1.0, 1.0, 1.0, 0.01], "float32"))
    pruned = sparsity.prune_channels(model, sparsity.ConstantSparsity(0.5, 0, frequency=1))
    w = wrappers(pruned)["prune_channels_conv"]
    w.update_masks(0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(w.channel_mask), [0, 1, 1, 0])
    l1 = sparsity.prune_channels(model, sparsity.ConstantSparsity(0.25, 0, frequency=1), importance="l1")
    wrappers(l1)["prune_channels_conv"].update_masks(0.25)
    np.testing.assert_array_equal(masks(l1)["conv"], [1, 1, 1, 0])


def test_input_model_is_not_modified_and_can_be_pruned_again():
    model = resnet_tiny()
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    names = [layer.name for layer in model.layers]
    update_once(sparsity.prune_channels(model, sparsity.ConstantSparsity(0.5, 0, frequency=1)))
    assert [layer.name for layer in model.layers] == names
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(w))
    assert wrappers(sparsity.prune_channels(model))


def test_nested_model_is_pruned_inside_and_out():
    schedule = sparsity.ConstantSparsity(0.5, 0, frequency=1)
    pruned = train(sparsity.prune_channels(nested_model(), schedule))
    paths = set(wrappers(pruned))
    assert "backbone/prune_channels_bb_branch_a" in paths
    assert "prune_channels_head_sep" in paths and "prune_channels_fc" in paths
    m = masks(pruned)
    assert m["bb_branch_a"].sum() == 3 and m["bb_branch_b"].sum() == 5
    assert m["fc"].sum() == 8


@pytest.mark.slow
def test_save_and_load_mid_schedule_resumes_with_groups_linked(tmp_path):
    schedule = sparsity.PolynomialDecay(0.25, 0.75, begin_step=0, end_step=4, frequency=2)
    x, y = data()
    pruned = train(sparsity.prune_channels(mobilenet_v2_tiny(), schedule), steps=2, x_y=(x, y))
    mid = masks(pruned)
    # tfmot's clock: the second training step is step 2, an update step;
    # PolynomialDecay there: 0.75 + (0.25 - 0.75) * (1 - 2/4)**3 = 0.6875.
    assert mid["block1_expand"].sum() == 24 - math.floor(0.6875 * 24)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6
    )
    step = [int(keras.ops.convert_to_numpy(w.pruning_step)) for w in wrappers(loaded).values()]
    assert set(step) == {2}
    train(loaded, steps=4, x_y=(x, y))
    end = masks(loaded)
    assert end["block1_expand"].sum() == 24 - math.floor(0.75 * 24)
    for group in sparsity.channel_report(mobilenet_v2_tiny()).prunable:
        first = end[group.layers[0]]
        for name in group.layers[1:]:
            np.testing.assert_array_equal(end[name], first)
    np.testing.assert_array_equal(end["block2_project_bn"], end["stem"])


@pytest.mark.slow
def test_pruning_summaries_log_channel_sparsity(tmp_path):
    pruned = sparsity.prune_channels(resnet_tiny(), sparsity.ConstantSparsity(0.5, 0, frequency=1))
    log_dir = str(tmp_path / "logs")
    train(pruned, schedule_callbacks=[
        sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir)
    ])
    from tfmot_lite.sparsity.callbacks import pruning_metrics, pruning_wrappers

    metrics = pruning_metrics(pruning_wrappers(pruned))
    assert metrics["pruning/res1_conv1/kernel/sparsity"] == pytest.approx(0.5)
    assert any(f.name.startswith("events") for f in (tmp_path / "logs" / "train").iterdir())


def test_strip_pruning_bakes_the_masks():
    x, _ = data()
    pruned = update_once(sparsity.prune_channels(resnet_tiny(), sparsity.ConstantSparsity(0.5, 0, frequency=1)))
    stripped = sparsity.strip_pruning(pruned)
    assert not wrappers(stripped)
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5
    )


def test_a_sparsity_that_would_remove_every_channel_is_a_clear_error():
    class Everything(sparsity.PruningSchedule):
        def __call__(self, step):
            return True, 1.0

        def get_config(self):
            return {}

    pruned = sparsity.prune_channels(resnet_tiny(), Everything())
    pattern = r"(?s)Sparsity 1.0 would remove every channel of .*stem.*below 1"
    with pytest.raises(ValueError, match=pattern):
        train(pruned, steps=1)


def test_bad_arguments_are_clear_errors():
    model = resnet_tiny()
    with pytest.raises(ValueError, match="importance"):
        sparsity.prune_channels(model, importance="l3")
    with pytest.raises(ValueError, match="PruningSchedule"):
        sparsity.prune_channels(model, pruning_schedule=0.5)
    with pytest.raises(ValueError, match="not in model.*nope"):
        sparsity.prune_channels(model, leave_intact=["nope"])
    with pytest.raises(ValueError, match=r"holds layers that are pruned.*strip_pruning\(model\)"):
        sparsity.prune_channels(sparsity.prune_low_magnitude(model))
    with pytest.raises(ValueError, match="only passes channels through"):
        sparsity.prune_channels(keras.layers.BatchNormalization())
    with pytest.raises(ValueError, match="LSTM.*has no output channels"):
        sparsity.prune_channels(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="without the pruning callback"):
        pruned = sparsity.prune_channels(model)
        x, y = data()
        compile_model(pruned).fit(x, y, epochs=1, verbose=0)


def test_a_single_layer_is_pruned_on_its_own():
    layer = keras.layers.Dense(10)
    layer.build((None, 4))
    wrapped = sparsity.prune_channels(layer, sparsity.ConstantSparsity(0.3, 0, frequency=1))
    model = keras.Sequential([keras.Input((4,)), wrapped])
    cb = sparsity.UpdatePruningStep()
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    assert keras.ops.convert_to_numpy(wrapped.channel_mask).sum() == 7
