"""weight_stats: zeros, unique values and storage of .tflite weight tensors,
checked against the Keras weights (numpy) and LiteRT's own tensor reads."""

import keras
import numpy as np
import pytest

from tfmot_lite import export

L = keras.layers


def small_model():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, name="stem")(inputs)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.Conv2D(32, 1, name="pw")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10, name="head")(x))


def tflite_layout(layer):
    """The Keras kernel in TFLite's layout, as numpy."""
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    if isinstance(layer, L.DepthwiseConv2D):  # (h, w, in, 1) -> (1, h, w, in)
        return kernel.transpose(3, 0, 1, 2)
    if isinstance(layer, L.Conv2D):  # (h, w, in, out) -> (out, h, w, in)
        return kernel.transpose(3, 0, 1, 2)
    return kernel.T  # Dense: (in, out) -> (out, in)


def litert_constants(flatbuffer):
    """name -> value of every tensor LiteRT can read, DENSIFY outputs
    included (after one run without delegates)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=bytes(flatbuffer),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    values = {}
    for op in interpreter._get_ops_details():
        for i in op["inputs"]:
            if i >= 0:
                try:
                    values[i] = interpreter.get_tensor(i)
                except ValueError:
                    pass
    densified = {
        op["inputs"][0]: interpreter.get_tensor(op["outputs"][0])
        for op in interpreter._get_ops_details() if op["op_name"] == "DENSIFY"
    }
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    out = {names[i]: v for i, v in values.items()}
    out.update({names[i]: v for i, v in densified.items()})
    return out


def expected(values, axis):
    per_channel = max(
        len(np.unique(np.take(values, c, axis=axis))) for c in range(values.shape[axis])
    )
    return (values == 0).mean(), len(np.unique(values)), per_channel


def test_sparse_float_export_matches_the_keras_weights():
    model = small_model()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            layer.kernel.assign(kernel * (rng.random(kernel.shape) > 0.8))
    flatbuffer = export.to_sparse_tflite(model)
    stats = export.weight_stats(flatbuffer)
    assert [s.op_type for s in stats] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    litert = litert_constants(flatbuffer)
    for s, name in zip(stats, ("stem", "dw", "pw", "head")):
        values = tflite_layout(model.get_layer(name))
        assert s.shape == values.shape and s.dtype == "float32"
        assert s.sparse and s.quantized_axis is None
        zeros, unique, per_channel = expected(values, s.channel_axis)
        assert s.zero_fraction == pytest.approx(zeros)
        assert s.unique_values == unique
        assert s.max_unique_per_channel == per_channel
        # LiteRT's DENSIFY produces the same dense tensor we decoded.
        np.testing.assert_array_equal(litert[s.name], values)


def test_int8_per_channel_codes_match_litert_and_keep_few_values():
    model = small_model()
    rng = np.random.default_rng(1)
    for name in ("stem", "pw", "head"):  # 3 distinct values per output channel.
        layer = model.get_layer(name)
        values = tflite_layout(layer)
        levels = rng.normal(size=(values.shape[0], 3)).astype("float32")
        pick = rng.integers(0, 3, size=values.shape)
        channel = np.arange(values.shape[0]).reshape((-1,) + (1,) * (values.ndim - 1))
        clustered = levels[channel, pick]
        if isinstance(layer, L.Dense):
            layer.kernel.assign(clustered.T)
        else:
            layer.kernel.assign(clustered.transpose(1, 2, 3, 0))
    data = rng.random((16, 16, 16, 3)).astype("float32")
    flatbuffer = export.quantize_post_training(model, "int8", data)
    stats = {s.op_type + str(s.shape): s for s in export.weight_stats(flatbuffer)}
    litert = litert_constants(flatbuffer)
    for s in stats.values():
        assert s.dtype == "int8" and not s.sparse
        assert s.quantized_axis == (3 if s.op_type == "DEPTHWISE_CONV_2D" else 0)
        codes = litert[s.name]
        zeros, unique, per_channel = expected(codes, s.quantized_axis)
        assert (s.zero_fraction, s.unique_values, s.max_unique_per_channel) == (
            pytest.approx(zeros), unique, per_channel)
    for key in ("CONV_2D(8, 3, 3, 3)", "CONV_2D(32, 1, 1, 8)", "FULLY_CONNECTED(10, 32)"):
        assert stats[key].max_unique_per_channel <= 3
        assert stats[key].unique_values > 3


def test_float16_weights_are_followed_through_dequantize():
    model = small_model()
    flatbuffer = export.quantize_post_training(model, "float16")
    stats = export.weight_stats(flatbuffer)
    assert len(stats) == 4 and {s.dtype for s in stats} == {"float16"}
    head = tflite_layout(model.get_layer("head")).astype("float16")
    assert stats[-1].unique_values == len(np.unique(head))
    assert "FULLY_CONNECTED" in export.format_weight_stats(stats)


@pytest.mark.parametrize("bad, message", [
    (None, "None"), (b"", "empty"), (b"not a flatbuffer at all", "not a .tflite"),
    ("/nonexistent/m.tflite", "no such file"),
])
def test_bad_input_is_a_value_error_naming_it(bad, message):
    with pytest.raises(ValueError, match=message):
        export.weight_stats(bad)
