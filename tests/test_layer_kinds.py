"""layer_kinds: one table read by pruning, clustering and quantization."""

import keras
import pytest

from tfmot_lite.core import layer_kinds
from tfmot_lite.clustering import registry as clustering
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry
from tfmot_lite.sparsity import registry as pruning

L = keras.layers


def built(layer, shape, dtype="float32"):
    layer(keras.Input(shape, dtype=dtype))
    return layer


def test_every_row_is_complete_and_its_kernels_resolve():
    samples = {
        "dense": built(L.Dense(3), (4,)),
        "convolution": built(L.Conv2D(2, 3), (5, 5, 2)),
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
        assert row.classes and row.name
        for use in (row.prune, row.cluster):
            assert use.verdict in (layer_kinds.OPTIMIZE, layer_kinds.DENSE) and use.reason
        if row.name in samples:
            layer = samples[row.name]
            assert layer_kinds.family(layer) is row
            names = [name for name, _ in layer_kinds.kernels(layer, clustering.CLUSTERING)]
            assert names == [name for name, _ in row.kernels]


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
        (L.UpSampling2D(interpolation="bilinear"), "output"),
        (L.MaxPooling2D(), "pass"),
        (L.LSTM(2), None),
    ],
)
def test_quantization_kind_reads_the_table(layer, kind):
    assert Default8BitQuantizeRegistry().kind(layer) == kind
