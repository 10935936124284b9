"""A ReLU that TFLite fuses into the op before it rounds once, in QAT too.

The converter folds a ReLU/ReLU6 into CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, ADD, SUB and MUL (their `fused_activation_function`): the
op computes `relu(x)` and rounds it into the ReLU's range. A QAT model that
also rounds `x` into a range of its own rounds twice and lands a step away
on a sizeable share of the elements (14-27% in these models before the
layout fused them).
"""

import keras
import numpy as np
import pytest
from tflite_helpers import output_steps

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization.conv_bn_folding import QuantizeBatchNorm

L = keras.layers
quantize_model = tfmot.quantization.keras.quantize_model


def _two_branches(merge):
    def build(x):
        a = L.Conv2D(8, 3, padding="same", name="a")(x)
        b = L.Conv2D(8, 1, name="b")(x)
        return merge([a, b])
    return build


# name -> (builds the layers before the ReLU, the layer whose output range goes)
PRODUCERS = {
    "conv": (lambda x: L.Conv2D(8, 3, padding="same", name="p")(x), "p"),
    "depthwise": (lambda x: L.DepthwiseConv2D(3, padding="same", name="p")(x), "p"),
    "dense": (lambda x: L.Dense(8, name="p")(L.Flatten(name="flat")(x)), "p"),
    "add": (_two_branches(L.Add(name="p")), "p"),
    "subtract": (_two_branches(L.Subtract(name="p")), "p"),
    "multiply": (_two_branches(L.Multiply(name="p")), "p"),
    "batch_norm": (lambda x: L.BatchNormalization(name="p")(
        L.MaxPooling2D(1, name="pool")(L.Conv2D(8, 1, name="c")(x))), "p"),
}


def _model(producer, relu):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    build, _ = PRODUCERS[producer]
    return keras.Model(inputs, relu(build(inputs)))


def _trained(model, x):
    qat = quantize_model(model)
    for k in range(0, len(x), 16):
        qat(x[k:k + 16], training=True)  # the ranges follow the batches
    return qat


def _wrapper(qat, name):
    return next(layer for layer in qat.layers if getattr(layer, "layer", layer).name == name
                or layer.name == f"quant_{name}")


def _output_ranges(layer):
    return [v.path for v in layer.weights if v.path.split("/")[-1].startswith("output_min")]


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_fused_relu_rounds_once_where_tflite_does(producer, tmp_path):
    """The producer keeps no output range; the ReLU's is the op's. The
    Keras outputs are the integers the .tflite computes (XNNPACK), every
    one but for rare ties."""
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    relu = L.ReLU(6.0, name="act") if producer == "depthwise" else L.ReLU(name="act")
    qat = _trained(_model(producer, relu), x)
    _, name = PRODUCERS[producer]
    assert _output_ranges(_wrapper(qat, name)) == []
    assert len(_output_ranges(qat.get_layer("quant_act"))) == 1

    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    ops = _op_names(path.read_bytes())
    assert "RELU" not in ops and "RELU6" not in ops, ops  # fused into the op
    steps = output_steps(qat, path, x)
    assert np.mean(steps > 0.5) <= 0.002 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())
    # layer_fidelity pairs the fused op's tensor with the ReLU (whatever
    # order the converter names the two in: 'dense/MatMul;act/Relu') and
    # lists the producer as folded into it.
    fidelity = export.layer_fidelity(qat, path, x, examples=2)
    assert fidelity.row("quant_act").match == "name", str(fidelity)
    assert fidelity.row("quant_act").local_share <= 0.01, str(fidelity)
    assert fidelity.row(_wrapper(qat, name).name).match == "folded", str(fidelity)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["conv_bn", "conv"])
def test_equal_relus_of_one_tensor_round_once(batch_norm, tmp_path):
    """NASNet's stem: two branches each apply their own ReLU to one
    Conv(-BN) output. The converter merges the equal ReLUs and fuses the one
    left into the convolution, which writes the ReLU's range directly, so
    the producer keeps no range of its own (before: its range, then the
    ReLU's, 23-25% of the ReLU outputs a step off, 48% of the logits)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, use_bias=not batch_norm, name="p")(inputs)
    if batch_norm:
        x = L.BatchNormalization(name="bn")(x)
    a = L.Conv2D(8, 1, name="a")(L.Activation("relu", name="relu_a")(x))
    b = L.DepthwiseConv2D(3, padding="same", name="b")(L.Activation("relu", name="relu_b")(x))
    model = keras.Model(inputs, L.Dense(4)(L.GlobalAveragePooling2D()(L.Add()([a, b]))))
    x = np.random.default_rng(0).normal(size=(64, 16, 16, 3)).astype("float32")
    qat = _trained(model, x)
    assert _output_ranges(_wrapper(qat, "p")) == []

    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    ops = _op_names(path.read_bytes())
    assert "RELU" not in ops, ops  # merged, then fused into the convolution
    steps = output_steps(qat, path, x)
    # As for a concatenation: the requantization of the shared branch
    # into the join's scale ties on a few percent of its values.
    assert np.mean(steps > 0.5) <= 0.02 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())
    fidelity = export.layer_fidelity(qat, path, x, examples=4)
    for relu in ("quant_relu_a", "quant_relu_b"):
        row = fidelity.row(relu)
        assert row.match == "folded" or row.local_share <= 0.01, str(fidelity)


def _op_names(flatbuffer):
    from tfmot_lite.export.flatbuffer import Subgraph

    return list(Subgraph(flatbuffer).types)


def test_separable_conv_batch_norm_relu_folds_into_the_pointwise_conv():
    """SeparableConv2D -> BatchNorm -> ReLU (Xception's block): the
    converter's 1x1 CONV_2D takes the folded BatchNorm and the ReLU, so the
    layout folds them into it (one QuantizeConvBatchNorm) and leaves
    Identity layers behind; the two halves are layers of the graph itself.
    The stripped model computes the same."""
    from tfmot_lite.quantization.conv_bn_folding import QuantizeConvBatchNorm

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.SeparableConv2D(8, 3, padding="same", use_bias=False, name="sep")(inputs)
    x = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(x))
    model = keras.Model(inputs, x)
    x = np.random.default_rng(1).normal(size=(32, 8, 8, 3)).astype("float32")
    qat = _trained(model, x)
    assert [type(layer).__name__ for layer in qat.layers[2:4]] == [
        "QuantizeWrapperV2", "QuantizeConvBatchNorm"]
    assert qat.layers[2].layer.name == "sep_depthwise"
    fused = qat.layers[3]
    assert isinstance(fused, QuantizeConvBatchNorm) and fused.activation == "relu"
    assert isinstance(qat.get_layer("bn"), L.Identity)
    assert isinstance(qat.get_layer("relu"), L.Identity)
    assert fused.layer.name == "sep_pointwise"
    stripped = tfmot.quantization.keras.strip_quantization(qat)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), qat.predict(x, verbose=0),
                               atol=0.05 * float(np.max(qat.predict(x, verbose=0))))


def test_relu_stays_apart_where_tflite_keeps_it_apart():
    """No fusion where the converter cannot fuse: the producer's output is
    also read elsewhere, or is a Conv1D's (a RESHAPE comes between), or a
    concatenation (TFLite's CONCATENATION fuses nothing here)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    shared = L.Conv2D(8, 1, name="shared")(inputs)
    a = L.ReLU(name="relu_a")(shared)
    b = L.Conv2D(8, 1, name="reads_shared")(shared)
    cat = L.Concatenate(name="cat")([a, b])
    c = L.ReLU(name="relu_cat")(cat)
    seq = keras.Input((6, 4))
    d = L.ReLU(name="relu_1d")(L.Conv1D(4, 3, name="conv1d")(seq))
    model = keras.Model([inputs, seq], [c, d])
    qat = quantize_model(model)
    for name in ("shared", "cat", "conv1d"):
        assert len(_output_ranges(qat.get_layer(f"quant_{name}"))) == 1, name


def test_annotated_model_fuses_only_annotated_pairs():
    """`quantize_apply`: a producer loses its range only when the ReLU after
    it is annotated too (the ReLU then holds the range); an annotated
    producer before a float ReLU keeps its own."""
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = annotate(L.Conv2D(8, 3, name="both"))(inputs)
    x = annotate(L.ReLU(name="relu_both"))(x)
    x = annotate(L.Conv2D(8, 3, name="alone"))(x)
    x = L.ReLU(name="float_relu")(x)
    qat = tfmot.quantization.keras.quantize_apply(keras.Model(inputs, x))
    assert _output_ranges(qat.get_layer("quant_both")) == []
    assert len(_output_ranges(qat.get_layer("quant_relu_both"))) == 1
    assert len(_output_ranges(qat.get_layer("quant_alone"))) == 1
    assert isinstance(qat.get_layer("float_relu"), L.ReLU)
    # Nothing requantizes the conv's output before its ReLU.
    assert [type(layer).__name__ for layer in qat.layers].count("QuantizeLayer") == 1


def test_fused_model_round_trips_through_keras_file(tmp_path):
    x = np.random.default_rng(2).normal(size=(32, 8, 8, 3)).astype("float32")
    qat = _trained(_model("batch_norm", L.ReLU(name="act")), x)
    assert isinstance(qat.get_layer("quant_p"), QuantizeBatchNorm)
    assert not qat.get_layer("quant_p").quantize_output
    qat.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert not loaded.get_layer("quant_p").quantize_output
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0),
                               atol=1e-6)


def _dense_block(inputs):
    """DenseNet's and Inception's pattern: branches concatenated, one input
    (`stem`) also read by the next branch."""
    stem = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.ReLU(name="pre_relu")(L.BatchNormalization(name="pre_bn")(stem))
    conv = L.Conv2D(8, 3, padding="same", name="conv")(x)
    folded = L.Conv2D(8, 1, name="folded")(stem)
    folded = L.ReLU(name="folded_relu")(L.BatchNormalization(name="folded_bn")(folded))
    relu = L.ReLU(name="relu")(L.Conv2D(8, 1, name="conv_relu")(inputs))
    return L.Concatenate(name="cat")([stem, conv, folded, relu])


def test_concatenation_sets_the_range_of_what_it_alone_reads(tmp_path):
    """int8 CONCATENATION keeps one scale: the converter writes an op read
    only by the concatenation in the concatenation's scale, and requantizes
    one read elsewhere too. The QAT model rounds each branch as the .tflite
    does: the convolution, the folded Conv-BN-ReLU and the Conv->ReLU read
    only by the concatenation keep no range of their own; the stem keeps
    its own. The Keras outputs are XNNPACK's integers."""
    from tfmot_lite.quantization.conv_bn_folding import QuantizeConvBatchNorm

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = np.random.default_rng(3).normal(size=(64, 8, 8, 3)).astype("float32")
    qat = _trained(keras.Model(inputs, _dense_block(inputs)), x)
    assert len(_output_ranges(qat.get_layer("quant_stem"))) == 1
    for name in ("quant_conv", "quant_conv_relu", "quant_relu"):
        assert _output_ranges(qat.get_layer(name)) == [], name
    folded = qat.get_layer("quant_folded")
    assert isinstance(folded, QuantizeConvBatchNorm) and not folded.quantize_output
    assert folded.activation == "relu" and _output_ranges(folded) == []

    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    steps = output_steps(qat, path, x)
    # The stem's requantization into the concatenation's scale ties on a
    # few percent of its quarter of the output.
    assert np.mean(steps > 0.5) <= 0.02 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())
    fidelity = export.layer_fidelity(qat, path, x, examples=4)
    assert fidelity.first_departure is None, str(fidelity)
    for name in ("quant_stem", "quant_pre_relu", "quant_folded"):
        row = fidelity.row(name)
        assert row.local_share <= 0.01, row
    # Inputs beyond what training saw: the concatenation's range clips the
    # branches read only by it, in the .tflite's tensors as in the Keras
    # model; layer_fidelity compares the convolution's unclipped float
    # output as its tensor can hold it.
    wide = export.layer_fidelity(qat, path, 4 * x, examples=2)
    assert wide.row("quant_conv").local_lsb <= 1.01, wide.row("quant_conv")


@pytest.mark.parametrize("join", [L.Maximum, L.Minimum])
def test_maximum_and_minimum_set_the_range_of_what_they_alone_read(join, tmp_path):
    """int8 MAXIMUM and MINIMUM keep one scale as CONCATENATION does: a
    convolution only the join reads keeps no range of its own (the
    converter writes it in the join's scale); one read elsewhere too keeps
    its range and is requantized. With a range each, 29% of the outputs
    had been a step or more off XNNPACK's."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    alone = L.Conv2D(8, 3, padding="same", name="alone")(inputs)
    shared = L.Conv2D(8, 3, padding="same", name="shared")(inputs)
    joined = join(name="join")([alone, shared])
    model = keras.Model(inputs, L.Add()([joined, L.Conv2D(8, 1, name="other")(shared)]))
    x = np.random.default_rng(3).normal(size=(64, 8, 8, 3)).astype("float32")
    qat = _trained(model, x)
    assert _output_ranges(qat.get_layer("quant_alone")) == []
    assert len(_output_ranges(qat.get_layer("quant_shared"))) == 1

    path = tmp_path / "m.tflite"
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    steps = output_steps(qat, path, x)
    # As for a concatenation: the requantization of the shared branch
    # into the join's scale ties on a few percent of its values.
    assert np.mean(steps > 0.5) <= 0.02 and steps.max() < 1.01, (
        np.mean(steps > 0.5), steps.max())
