"""shrink: pruned channels physically removed, predictions unchanged."""

import keras
import numpy as np
import pytest
from channel_models import compile_model, data, mobilenet_v2_tiny, nested_model, resnet_tiny

from tfmot_lite.core import graph
from tfmot_lite.sparsity import keras as sparsity


def pruned_once(model, sparsity_level=0.5):
    """Channel-pruned at `sparsity_level`, masks set by the callback."""
    pruned = sparsity.prune_channels(model, sparsity.ConstantSparsity(sparsity_level, 0, frequency=1))
    callback = sparsity.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    callback.on_train_batch_begin(0)
    return pruned


def layer_named(model, name):
    return next(layer for _, layer in graph.iter_layers(model) if layer.name == name)


@pytest.mark.parametrize("build", [mobilenet_v2_tiny, resnet_tiny, nested_model])
def test_shrunk_model_predicts_what_the_masked_model_predicts(build):
    x, _ = data()
    pruned = pruned_once(build())
    masked = pruned.predict(x, verbose=0)
    shrunk, summary = sparsity.shrink(pruned, return_summary=True)
    assert not any(
        isinstance(layer, sparsity.PruneChannels) for _, layer in graph.iter_layers(shrunk)
    )
    np.testing.assert_allclose(shrunk.predict(x, verbose=0), masked, atol=1e-4)
    # Stripped first, then shrunk: the same model.
    from_stripped = sparsity.shrink(sparsity.strip_pruning(pruned))
    np.testing.assert_allclose(from_stripped.predict(x, verbose=0), masked, atol=1e-4)
    assert from_stripped.count_params() == shrunk.count_params()
    assert summary.params_after < 0.6 * summary.params_before
    assert summary.macs_after < 0.6 * summary.macs_before
    assert summary.params_after == shrunk.count_params()


def test_inverted_residual_shapes_are_consistent():
    shrunk = sparsity.shrink(pruned_once(mobilenet_v2_tiny()))
    get = lambda name: layer_named(shrunk, name)  # noqa: E731
    assert get("stem").filters == 4
    assert get("block1_expand").kernel.shape == (1, 1, 4, 12)
    assert get("block1_dw").kernel.shape == (3, 3, 12, 1)
    assert get("block1_dw_bn").moving_mean.shape == (12,)
    assert get("block1_project").kernel.shape == (1, 1, 12, 4)
    assert get("block2_project_bn").gamma.shape == (4,)
    assert get("head").kernel.shape == (1, 1, 4, 16)
    assert get("logits").kernel.shape == (16, 5)


def test_resnet_and_nested_shapes_are_consistent():
    shrunk = sparsity.shrink(pruned_once(resnet_tiny()))
    assert layer_named(shrunk, "res2_shortcut").kernel.shape == (1, 1, 4, 8)
    assert layer_named(shrunk, "res2_conv2").kernel.shape == (3, 3, 8, 8)
    assert layer_named(shrunk, "logits").kernel.shape == (8, 5)
    nested = sparsity.shrink(pruned_once(nested_model()))
    sep = layer_named(nested, "head_sep")
    # Concatenate offsets: 3 of branch a's 6 and 5 of branch b's 10 remain.
    assert sep.depthwise_kernel.shape == (3, 3, 8, 1)
    assert sep.pointwise_kernel.shape == (1, 1, 8, 6)
    assert layer_named(nested, "fc").units == 8


def test_separable_conv_with_depth_multiplier_slices_pointwise_rows():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.SeparableConv2D(4, 3, depth_multiplier=2, name="sep")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalMaxPooling2D()(x))
    model = keras.Model(inputs, outputs)
    x, _ = data((8, 8, 3))
    pruned = pruned_once(model, 0.5)
    shrunk = sparsity.shrink(pruned)
    assert layer_named(shrunk, "sep").pointwise_kernel.shape == (1, 1, 6, 2)
    np.testing.assert_allclose(
        shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-4
    )


@pytest.mark.slow
def test_summary_lists_layers_and_totals():
    _, summary = sparsity.shrink(pruned_once(resnet_tiny()), return_summary=True)
    by_layer = {c.layer: c for c in summary.layers}
    conv = by_layer["res1_conv1"]
    assert (conv.channels_before, conv.channels_after) == (8, 4)
    assert by_layer["logits"].channels_after == 5
    text = str(summary)
    assert "res1_conv1" in text and "parameters:" in text and "MACs:" in text
    assert "left intact: logits: they feed a model output" in text


def test_macs_and_params_are_counted_by_hand():
    from tfmot_lite.sparsity.channels import count_macs, count_params

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 * 3*3*3*4
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4 * 3*3*4
    x = keras.layers.SeparableConv2D(5, 1)(x)  # 4*4 * (4 + 4*5)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2)(x)  # 5*2
    model = keras.Model(inputs, outputs)
    assert count_macs(model) == 8 * 8 * 108 + 16 * 36 + 16 * 24 + 10
    assert count_params(model) == model.count_params()


def test_unpruned_model_shrinks_to_itself_and_input_is_untouched():
    model = resnet_tiny()
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    same = sparsity.shrink(model)
    assert same.count_params() == model.count_params()
    pruned = pruned_once(model)
    pruned_weights = [keras.ops.convert_to_numpy(w).copy() for w in pruned.weights]
    sparsity.shrink(pruned)
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(w))
    for a, w in zip(pruned_weights, pruned.weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(w))


@pytest.mark.slow
def test_shrunk_model_converts_to_tflite_and_goes_through_qat():
    from tfmot_lite import export
    from tfmot_lite.quantization import keras as quantization

    x, y = data()
    pruned = pruned_once(mobilenet_v2_tiny())
    shrunk = sparsity.shrink(pruned)
    dense_bytes = len(export.to_tflite(mobilenet_v2_tiny()))
    flatbuffer = export.to_tflite(shrunk)
    assert len(flatbuffer) < dense_bytes
    np.testing.assert_allclose(
        export.TFLiteModel(flatbuffer).predict(x[:4]), shrunk.predict(x[:4], verbose=0),
        atol=1e-4,
    )
    qat = compile_model(quantization.quantize_model(shrunk))
    qat.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0)
    import tensorflow as tf

    int8 = export.to_tflite(
        qat, optimizations=[tf.lite.Optimize.DEFAULT], representative_data=x[:8],
        inference_input_type=tf.int8, inference_output_type=tf.int8,
    )
    assert export.TFLiteModel(int8).predict(x[:2]).shape == (2, 5)


def test_shrink_rejects_other_wrappers_and_subclassed_models():
    from tfmot_lite.quantization import keras as quantization

    with pytest.raises(ValueError, match="Shrink the channel-pruned model first"):
        sparsity.shrink(quantization.quantize_model(resnet_tiny()))

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        sparsity.shrink(Sub())


def test_sequential_conv1d_model_shrinks_exactly():
    model = keras.Sequential([
        keras.Input((20, 3)),
        keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="c1"),
        keras.layers.DepthwiseConv1D(3, padding="same", name="dw"),
        keras.layers.MaxPooling1D(name="pool"),
        keras.layers.Conv1D(6, 3, activation="gelu", name="c2"),
        keras.layers.GlobalAveragePooling1D(name="gap"),
        keras.layers.Dense(3, name="logits"),
    ])
    x, _ = data((20, 3))
    pruned = pruned_once(model, 0.5)
    shrunk = sparsity.shrink(pruned)
    assert isinstance(shrunk, keras.Sequential)
    assert layer_named(shrunk, "dw").kernel.shape == (3, 4, 1)
    assert layer_named(shrunk, "c2").kernel.shape == (3, 4, 3)
    assert layer_named(shrunk, "logits").kernel.shape == (3, 3)
    np.testing.assert_allclose(
        shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-4
    )
