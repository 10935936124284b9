"""Every registered quantization object round-trips get_config -> from_config
-> equal; nested objects are rebuilt in from_config; argument checks."""

import keras
import pytest

from tfmot_lite.quantization import keras as quantize
from tfmot_lite.quantization.keras import quantizers as qz

L = keras.layers


def _objects():
    """One instance of every registered, non-layer quantization class."""
    return [
        qz.LastValueQuantizer(4, True, True, True),
        qz.MovingAverageQuantizer(6, False, False, False, decay=0.99),
        qz.AllValuesQuantizer(8, False, True, False),
        qz.FixedQuantizer(8, -1.0, 2.0, True),
        qz.DepthwiseKernelQuantizer(8, True, True, True),
        qz.ChannelKernelQuantizer(5, channel_axis=-2),
        quantize.Default8BitQuantizeConfig(
            ["kernel"], ["activation"], False,
            qz.LastValueQuantizer(4, False, True, True), qz.MovingAverageQuantizer(7),
        ),
        quantize.OutputQuantizeConfig(qz.MovingAverageQuantizer(5)),
        quantize.NoOpQuantizeConfig(),
        quantize.Default8BitQuantizeRegistry(4, 6, True),
        quantize.Default8BitQuantizeLayoutTransform(4, 6, True),
        quantize.QuantizeLayoutTransform(),
        quantize.Default8BitQuantizeScheme(disable_per_axis=True),
        quantize.experimental.default_n_bit.DefaultNBitQuantizeScheme(True, 4, 5),
    ]


@pytest.mark.parametrize("obj", _objects(), ids=lambda o: type(o).__name__)
def test_object_round_trips(obj):
    config = obj.get_config()
    assert type(obj).from_config(config) == obj
    # And through Keras' own (de)serialization, with no custom objects.
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(again) is type(obj) and again == obj


def _add_operation():
    """The raw `Add` operation a Functional graph records for `x + 3.0`."""
    inp = keras.Input((2,))
    return (inp + 3.0)._keras_history.operation


def _layers():
    dense = L.Dense(3, name="d")
    conv = L.Conv2D(4, 3, name="c")
    return [
        quantize.QuantizeWrapperV2(dense, quantize.OutputQuantizeConfig()),
        quantize.QuantizeWrapper(L.Dense(3), quantize.Default8BitQuantizeConfig(["kernel"])),
        quantize.QuantizeAnnotate(L.Dense(2), quantize.NoOpQuantizeConfig()),
        quantize.QuantizeAnnotate(L.Dense(2)),
        quantize.QuantizeLayer(qz.AllValuesQuantizer(6)),
        quantize.QuantizeConvBatchNorm(conv, L.BatchNormalization(), "relu6", 4, 6, False),
        quantize.QuantizeBatchNorm(L.BatchNormalization(), 5),
        quantize.QuantizeOperation(_add_operation(), qz.MovingAverageQuantizer(7), [[1, 3.0]]),
        quantize.QuantizeOperation(_add_operation(), constants=[[1, 3.0]], quantize_output=False),
    ]


@pytest.mark.parametrize("layer", _layers(), ids=lambda l: type(l).__name__)
def test_layer_config_round_trips(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config


def test_nested_objects_are_rebuilt_in_from_config_not_init():
    with pytest.raises(Exception):
        quantize.QuantizeLayer(quantizer={"class_name": "MovingAverageQuantizer"})(
            keras.ops.ones((1, 2))
        )
    config = quantize.Default8BitQuantizeConfig(
        ["kernel"], weight_quantizer=qz.LastValueQuantizer(3, False, True, True)
    ).get_config()
    rebuilt = quantize.Default8BitQuantizeConfig.from_config(config)
    assert isinstance(rebuilt.weight_quantizer, qz.LastValueQuantizer)
    assert rebuilt.weight_quantizer.num_bits == 3


def test_channel_kernel_quantizer_rejects_other_layouts():
    for kwargs in ({"per_axis": False}, {"symmetric": False}, {"narrow_range": False}):
        with pytest.raises(ValueError, match="per-axis, symmetric and narrow-range"):
            qz.ChannelKernelQuantizer(8, **kwargs)


def test_output_quantize_config_rejects_unknown_arguments():
    with pytest.raises(TypeError):
        quantize.OutputQuantizeConfig(weight_attrs=["kernel"])
