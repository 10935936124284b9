"""layer_kinds: one table read by pruning, clustering and quantization."""

import keras
import numpy as np
import pytest

from tfmot_lite.clustering import registry as clustering
from tfmot_lite.core import layer_kinds
from tfmot_lite.experimental.combine.schemes import (
    Default8BitClusterPreserveQuantizeRegistry,
)
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry
from tfmot_lite.sparsity import registry as pruning

L = keras.layers


def built(layer, shape, dtype="float32"):
    layer(keras.Input(shape, dtype=dtype))
    return layer


def test_every_row_is_complete_and_its_kernels_resolve():
    samples = {
        "dense": built(L.Dense(3), (4,)),
        "convolution 2D": built(L.Conv2D(2, 3), (5, 5, 2)),
        "separable convolution 2D": built(L.SeparableConv2D(2, 3), (5, 5, 2)),
        "depthwise convolution 2D": built(L.DepthwiseConv2D(3), (5, 5, 2)),
        "embedding": built(L.Embedding(10, 3), (4,), "int32"),
        "recurrent cell": L.LSTMCell(3),
    }
    samples["multi-head attention"] = L.MultiHeadAttention(2, 2)
    q = keras.Input((3, 4))
    samples["multi-head attention"](q, q)
    samples["recurrent cell"].build((None, 4))
    for row in layer_kinds.FAMILIES:
        assert (row.classes or row.names) and row.name
        for use in (row.prune, row.cluster):
            assert use.verdict in (layer_kinds.OPTIMIZE, layer_kinds.DENSE) and use.reason
        if row.name in samples:
            layer = samples[row.name]
            assert layer_kinds.family(layer) is row
            names = [name for name, _ in layer_kinds.kernels(layer, clustering.CLUSTERING)]
            assert names == [name for name, _ in row.kernels]


def test_rows_name_classes_of_libraries_not_imported():
    """KerasHub's PositionEmbedding and keras.applications' LayerScale are
    matched by package and class name, subclasses included."""
    from keras.src.applications.convnext import LayerScale

    class MyScale(LayerScale):
        pass

    assert layer_kinds.family(MyScale(1e-6, 4)).name == "layer scale"
    keras_hub = pytest.importorskip("keras_hub")
    position = keras_hub.layers.PositionEmbedding(sequence_length=8)
    assert layer_kinds.family(position).name == "position embedding"
    x = keras.Input((8, 4))
    position(x)
    assert [n for n, _ in layer_kinds.listed_kernels(position)] == ["position_embeddings"]


def test_coverage_choices_are_the_same_for_pruning_and_clustering():
    prelu = built(L.PReLU(), (4,))
    assert pruning.classify(prelu) == "keep" and pruning.prunable_weights(prelu) == []
    assert clustering.is_supported(prelu) and not clustering.has_clusterable_weights(prelu)

    td = built(L.TimeDistributed(L.Dense(3)), (2, 4))
    assert [w.name for w in pruning.prunable_weights(td)] == ["kernel"]
    assert [n for n, _ in clustering.clusterable_weights(td)] == ["kernel"]

    stacked = built(L.RNN(L.StackedRNNCells([L.GRUCell(3), L.SimpleRNNCell(2)])), (5, 4))
    assert len(pruning.prunable_weights(stacked)) == 4
    assert [n for n, _ in clustering.clusterable_weights(stacked)] == [
        "cell0_kernel", "cell0_recurrent_kernel", "cell1_kernel", "cell1_recurrent_kernel"
    ]

    depthwise = built(L.DepthwiseConv2D(3), (5, 5, 2))  # the one documented difference
    assert pruning.classify(depthwise) == "keep"
    assert [n for n, _ in clustering.clusterable_weights(depthwise)] == ["depthwise_kernel"]


class Unknown(L.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],))

    def call(self, x):
        return x * self.w

    def compute_output_shape(self, shape):
        return shape


def test_unknown_layers_are_unsupported_by_every_technique():
    layer = built(Unknown(), (4,))
    assert pruning.classify(layer) is None and pruning.prunable_weights(layer) is None
    assert not clustering.is_supported(layer)
    assert Default8BitQuantizeRegistry().kind(layer) is None
    inside = built(L.TimeDistributed(Unknown()), (2, 4))
    assert pruning.classify(inside) is None and not clustering.is_supported(inside)


@pytest.mark.parametrize(
    "layer, kind",
    [
        (L.Dense(2), "weights"),
        (L.Conv2DTranspose(2, 3), "weights"),
        (L.Conv3D(2, 3), None),
        (L.SeparableConv1D(2, 3), None),
        (L.PReLU(), "output"),
        (L.UpSampling2D(), "pass"),
        (L.UpSampling2D(interpolation="bilinear"), "pass"),  # RESIZE_BILINEAR keeps the scale
        (L.UpSampling2D(interpolation="bicubic"), "output"),
        (L.MaxPooling2D(), "pass"),
        (L.LSTM(2), "inside"),
        (L.Bidirectional(L.LSTM(2)), None),
    ],
)
def test_quantization_kind_reads_the_table(layer, kind):
    assert Default8BitQuantizeRegistry().kind(layer) == kind


def _channel_slice(shape, axis, depthwise):
    """A boolean mask of output channel 0 of a kernel of `shape`."""
    mask = np.zeros(shape, bool)
    index = [slice(None)] * len(shape)
    if depthwise:  # channel c * multiplier + m: channel 0 is (c, m) = (0, 0)
        index[-2] = index[-1] = 0
    else:
        index[axis] = 0
    mask[tuple(index)] = True
    return mask


def _quantized_elsewhere_changes(layer, quantizer, scaled):
    """Whether multiplying the `scaled` entries of the kernel by 1000 changes
    the fake-quantized values of the other entries."""
    kernel = np.random.RandomState(0).uniform(-1, 1, layer.kernel.shape).astype("float32")
    big = np.where(scaled, kernel * 1000, kernel)
    owner = L.Layer()
    outputs = []
    for values in (kernel, big):
        variables = quantizer.build(values.shape, f"k{len(outputs)}", owner)
        outputs.append(keras.ops.convert_to_numpy(quantizer(values, True, variables)))
    return not np.allclose(outputs[0][~scaled], outputs[1][~scaled])


@pytest.mark.parametrize(
    "layer, shape",
    [
        (L.Dense(4), (3,)),
        (L.Conv1D(4, 3), (6, 3)),
        (L.Conv2D(4, 3), (6, 6, 3)),
        (L.Conv2DTranspose(4, 3), (6, 6, 3)),
        (L.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 3)),
    ],
)
def test_per_channel_axis_is_where_the_registry_quantizer_keeps_ranges_apart(layer, shape):
    built(layer, shape)
    layout = layer_kinds.per_channel(layer)
    quantizer = Default8BitQuantizeRegistry().weight_quantizer(layer)
    kernel_shape = tuple(layer.kernel.shape)
    if layout is None:  # one range for the whole kernel: any channel moves it
        assert _quantized_elsewhere_changes(layer, quantizer, _channel_slice(kernel_shape, -1, False))
        return
    channel = _channel_slice(kernel_shape, layout.axis, layout.depthwise)
    assert not _quantized_elsewhere_changes(layer, quantizer, channel)
    across = _channel_slice(kernel_shape, 0, False)  # a kernel row: every channel
    assert _quantized_elsewhere_changes(layer, quantizer, across)
    per_tensor = Default8BitQuantizeRegistry(disable_per_axis=True).weight_quantizer(layer)
    assert _quantized_elsewhere_changes(layer, per_tensor, channel)


def test_per_channel_rows_are_quantized_kernels():
    for row in layer_kinds.FAMILIES:
        if row.per_channel is not None:
            assert row.quantize.verdict == "weights" and row.kernels, row.name
    candidates = [L.Conv1D(2, 3), L.Conv2D(2, 3), L.DepthwiseConv2D(3), L.Dense(2),
                  L.Conv2DTranspose(2, 3), L.SeparableConv2D(2, 3), L.Conv3D(2, 3)]
    folding = {type(layer) for layer in candidates if layer_kinds.folds_batch_norm(layer)}
    assert folding == {L.Conv1D, L.Conv2D, L.DepthwiseConv2D}


@pytest.mark.parametrize(
    "layer, shape, per_channel",
    [(L.Conv2D(3, 2), (5, 5, 2), True), (L.Conv1D(3, 2), (5, 2), True),
     (L.Dense(3), (4,), False), (L.DepthwiseConv2D(2), (5, 5, 2), False),
     (L.Conv2DTranspose(3, 2), (5, 5, 2), False)],
)
def test_cluster_preserving_qat_keeps_channels_where_the_table_quantizes_per_channel(
    layer, shape, per_channel
):
    built(layer, shape)
    # Clustered per channel: channel j of the last axis holds only +-(j + 1).
    signs = np.where(np.random.RandomState(1).rand(*layer.kernel.shape) > 0.5, 1.0, -1.0)
    layer.kernel.assign(signs * (np.arange(layer.kernel.shape[-1]) + 1))
    registry = Default8BitClusterPreserveQuantizeRegistry()
    assert registry.get_weight_transform(layer).per_channel is per_channel


PRODUCER_SAMPLES = {
    L.Dense: lambda: built(L.Dense(3), (4,)),
    L.Conv1D: lambda: built(L.Conv1D(3, 2), (5, 2)),
    L.Conv2D: lambda: built(L.Conv2D(3, 2), (5, 5, 2)),
    L.SeparableConv1D: lambda: built(L.SeparableConv1D(3, 2), (5, 2)),
    L.SeparableConv2D: lambda: built(L.SeparableConv2D(3, 2), (5, 5, 2)),
}


def test_every_channel_producer_has_one_kernel_holding_its_channels_last():
    producers = [cls for row in layer_kinds.FAMILIES
                 if row.channels == layer_kinds.PRODUCES for cls in row.classes]
    assert set(producers) == set(PRODUCER_SAMPLES)
    for cls in producers:
        layer = PRODUCER_SAMPLES[cls]()
        row = layer_kinds.family(layer)
        assert len(row.kernels) == 1 and row.width in ("units", "filters"), row.name
        ((_, kernel),) = layer_kinds.listed_kernels(layer)
        assert kernel.shape[-1] == getattr(layer, row.width) == 3


@pytest.mark.parametrize(
    "layer, role",
    [
        (L.Conv2D(2, 3), layer_kinds.PRODUCES),
        (L.Conv2DTranspose(2, 3), None),
        (L.BatchNormalization(), layer_kinds.CHANNELWISE),
        (L.DepthwiseConv1D(3), layer_kinds.CHANNELWISE),
        (L.ReLU(), layer_kinds.ACTIVATES),
        (L.Activation("relu"), layer_kinds.ACTIVATES),
        (L.Activation("softmax"), None),
        (L.Softmax(), None),
        (L.MaxPooling2D(), layer_kinds.KEEPS),
        (L.GlobalAveragePooling2D(), layer_kinds.KEEPS),
        (L.Subtract(), layer_kinds.MERGES),
        (L.Concatenate(), layer_kinds.CONCATENATES),
        (L.Flatten(), layer_kinds.MIXES),
        (L.AlphaDropout(0.1), None),
        (Unknown(), None),
    ],
)
def test_channel_role_reads_the_table(layer, role):
    assert layer_kinds.channel_role(layer) == role


def test_macs_weights_exist_on_every_counted_family():
    samples = [built(L.Conv2D(2, 3), (5, 5, 2)), built(L.SeparableConv1D(2, 3), (5, 2)),
               built(L.Conv3DTranspose(2, 2), (3, 3, 3, 2)), built(L.DepthwiseConv1D(2), (5, 2))]
    for layer in samples:
        spec = layer_kinds.macs(layer)
        assert spec.per in ("output", "input")
        assert all(len(getattr(layer, name).shape) >= 2 for name in spec.weights)
    assert layer_kinds.macs(L.Conv3DTranspose(2, 2)).per == "input"
    assert layer_kinds.macs(L.Embedding(3, 2)) is None
