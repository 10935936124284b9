"""xnnpack_rules: the rules alone, and the two front ends that apply them
(the Keras-graph policy and the .tflite inspector) agreeing on models."""

import contextlib
import io

import keras
import pytest

from tfmot_lite import export
from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.sparsity import keras as sk

L = keras.layers


def test_same_padding_is_asymmetric_on_even_inputs_at_stride_2():
    assert rules.same_padding(32, 3, 2) == (0, 1)
    assert rules.same_padding(33, 3, 2) == (1, 1)
    assert rules.same_padding(16, 5, 1) == (2, 2)
    assert rules.conv_pads(True, (32, 32), (3, 3), (2, 2)) == (0, 1, 0, 1)
    assert rules.conv_pads(True, (None, 32), (3, 3), (2, 2)) is None
    assert rules.conv_pads(False, (32, 32), (3, 3), (2, 2), (1, 1, 1, 1)) == (1, 1, 1, 1)


def test_start_rule_lists_every_problem():
    good = rules.Op(rules.CONV, "Conv2D", kernel=(3, 3), strides=(2, 2), in_channels=3,
                    pads=(1, 1, 1, 1))
    assert rules.start_problems(good) == []
    bad = rules.Op(rules.CONV, "Conv2D", kernel=(3, 3), strides=(2, 2), in_channels=1,
                   pads=(0, 1, 0, 1))
    assert rules.start_problems(bad) == [
        "padding top/bottom/left/right (0, 1, 0, 1)", "1 input channels"
    ]


@pytest.mark.parametrize(
    "operands, ok",
    [
        ((((1, 8, 8, 4), False), ((1, 8, 8, 4), False)), True),
        ((((1, 8, 8, 4), False), ((4,), True)), True),  # BatchNormalization
        ((((1, 8, 8, 4), False), ((1, 1, 1, 4), True)), True),
        ((((1, 8, 8, 4), False), ((1, 8, 1, 1), True)), False),  # not per channel
        ((((1, 8, 8, 4), False), ((1, 4), False)), False),  # a flat vector
    ],
)
def test_add_and_mul_operands(operands, ok):
    op = rules.Op(rules.BINARY, "MUL", operands=operands)
    assert (rules.inside_problem(op) is None) == ok


def test_one_activation_set_for_fused_and_unary_operators():
    for name in ("relu", "relu6", "sigmoid", "hard_swish", "swish", "leaky_relu"):
        assert rules.inside_problem(rules.Op(rules.ACTIVATION, "x", activation=name)) is None
    rule, _ = rules.inside_problem(rules.Op(rules.CONV, "CONV_2D", activation="tanh"))
    assert "activation 'tanh'" in rule


# -- the two front ends agree ------------------------------------------------------


def _stem(inputs, padding="valid"):
    x = L.ZeroPadding2D(1)(inputs) if padding == "valid" else inputs
    return L.Conv2D(8, 3, strides=2, padding=padding)(x)


def _head(x, keepdims=True):
    x = L.GlobalAveragePooling2D(keepdims=keepdims)(x)
    return L.Dense(4)(L.Flatten()(x) if keepdims else x)


def _model(middle, stem_padding="valid", keepdims=True):
    inputs = keras.Input((16, 16, 3))
    x = _stem(inputs, stem_padding)
    x = middle(x)
    return keras.Model(inputs, _head(x, keepdims))


def _separable(x):
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(5, strides=2)(L.ZeroPadding2D(2)(x))
    return L.Conv2D(16, 1)(x)


def _residual_swish(x):
    y = L.Conv2D(8, 1)(x)
    y = L.Activation("swish")(L.BatchNormalization()(y))
    return L.Add()([x, y])


MODELS = {
    "separable": (lambda: _model(_separable), True),
    "residual_swish": (lambda: _model(_residual_swish), True),
    "flat_mean": (lambda: _model(_separable, keepdims=False), False),
    "same_stem": (lambda: _model(_separable, stem_padding="same"), False),
    "max_pool": (lambda: _model(lambda x: L.Conv2D(8, 1)(L.MaxPooling2D()(x))), False),
    "tanh": (lambda: _model(lambda x: L.Conv2D(8, 1, activation="tanh")(x)), False),
    # XNNPACK folds a pad only into a depthwise convolution that pads nothing.
    "pad_before_same_depthwise": (
        lambda: _model(lambda x: L.Conv2D(8, 1)(L.DepthwiseConv2D(3, padding="same")(
            L.ZeroPadding2D(1)(x)))),
        False,
    ),
    "depthwise_same_stride_2": (
        lambda: _model(lambda x: L.Conv2D(8, 1)(L.DepthwiseConv2D(3, 2, padding="same")(x))),
        False,
    ),
}


def _file_verdict(model):
    with contextlib.redirect_stdout(io.StringIO()):
        report = export.inspect_tflite(export.to_tflite(model))
    structural = [c for c in report.checks if c.name in ("start", "end", "operators")]
    pointwise = [op for op in report.operators if op.role == "1x1"]
    return all(c.passed for c in structural), len(pointwise), report


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras_graph_and_tflite_file_give_the_same_verdict(name):
    build, expected = MODELS[name]
    model = build()
    keras_report = sk.xnnpack_sparsity_report(model)
    file_ok, file_pointwise, file_report = _file_verdict(model)
    assert keras_report.supported == expected, str(keras_report)
    assert file_ok == expected, str(file_report)
    if expected:
        assert file_pointwise == len(keras_report.pruned_layers)


# -- the policy is stateless -----------------------------------------------------------


def test_policy_answers_do_not_depend_on_call_order():
    def build():
        inputs = keras.Input((16, 16, 3))
        x = _separable(_stem(inputs))
        x = L.GlobalAveragePooling2D(keepdims=True)(x)
        x = L.Conv2D(4, 1, name="conv_head")(x)  # one pixel: stays dense
        return keras.Model(inputs, L.Flatten()(x))

    model, unsupported = build(), _model(_separable, keepdims=False)
    layers = [layer for layer in model.layers]

    fresh = sk.PruneForLatencyOnXNNPack()
    before = [fresh.allow_pruning(layer) for layer in layers]
    fresh.ensure_model_supports_pruning(model)
    with pytest.raises(ValueError):
        fresh.ensure_model_supports_pruning(unsupported)
    after = [fresh.allow_pruning(layer) for layer in layers]
    assert before == after
    assert [layer.name for layer, ok in zip(layers, after) if ok] == [
        layer.name for layer in layers
        if isinstance(layer, L.Conv2D) and layer.kernel_size == (1, 1)
        and layer.name != "conv_head"
    ]
    assert sum(after) == 2
    # The same instance prunes two models alike, in either order.
    schedule = sk.ConstantSparsity(0.75, 0)
    first = sk.prune_low_magnitude(model, schedule, pruning_policy=fresh)
    second = sk.prune_low_magnitude(build(), schedule, pruning_policy=fresh)
    wrapped = [
        [type(layer.layer).__name__ for layer in m.layers if isinstance(layer, sk.PruneLowMagnitude)]
        for m in (first, second)
    ]
    assert wrapped == [["Conv2D", "Conv2D"]] * 2
    assert vars(fresh) == {}
