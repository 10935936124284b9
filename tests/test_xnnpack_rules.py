"""xnnpack_rules and xnnpack_walk: the rules alone, the one walk over
neutral ops, and its two adapters (the Keras-graph policy and the .tflite
inspector) agreeing on models."""

import contextlib
import io

import keras
import pytest

from tfmot_lite import export
from tfmot_lite.core import xnnpack_rules as rules
from tfmot_lite.core import xnnpack_walk
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


# -- the walk over neutral ops -------------------------------------------------------


def _chain(*ops):
    """An OpGraph of `ops` one after the other: op k reads tensor k."""
    nodes = {f"{i}:{op.name}": op for i, op in enumerate(ops)}
    return xnnpack_walk.OpGraph(
        nodes,
        inputs={node: [i] for i, node in enumerate(nodes)},
        outputs={node: [i + 1] for i, node in enumerate(nodes)},
        model_inputs=[0],
        model_outputs=[len(ops)],
    )


def _stem_ops():
    return (
        rules.Op(rules.PAD, "pad", pads=(1, 1, 1, 1)),
        rules.Op(rules.CONV, "stem", kernel=(3, 3), strides=(2, 2), in_channels=3,
                 input_hw=(18, 18)),
    )


def test_a_pad_is_folded_once_into_the_convolution_it_alone_feeds():
    graph = _chain(
        *_stem_ops(),
        rules.Op(rules.PAD, "pad2", pads=(2, 2, 2, 2)),
        rules.Op(rules.DEPTHWISE, "dw", kernel=(5, 5), input_hw=(12, 12)),
        rules.Op(rules.DEPTHWISE, "dw_same", kernel=(3, 3), same_padding=True,
                 input_hw=(8, 8)),
    )
    ops = list(graph.ops.values())
    assert ops[1].pads == (1, 1, 1, 1)  # folded into the start convolution
    assert ops[3].pads == (2, 2, 2, 2)
    assert ops[4].pads == (1, 1, 1, 1)  # its own SAME padding
    assert [ops[0].feeds_valid_depthwise, ops[2].feeds_valid_depthwise] == [False, True]


def test_the_walk_goes_past_a_problem_and_marks_what_follows_it():
    found = xnnpack_walk.walk(_chain(
        *_stem_ops(),
        rules.Op(rules.CONV, "pw1"),
        rules.Op(rules.OTHER, "pool"),
        rules.Op(rules.CONV, "pw2"),
        rules.Op(rules.MEAN, "mean", keepdims=True),
        rules.Op(rules.OTHER, "head"),
    ))
    assert found.starts == ["1:stem"] and found.rejected == []
    assert found.ends == ["5:mean"] and found.open_outputs == []
    assert found.with_role(xnnpack_walk.PROBLEM) == ["3:pool"]
    assert found.pointwise() == ["2:pw1", "4:pw2"]
    assert found.pointwise(clean_only=True) == ["2:pw1"]
    assert "6:head" not in found.visits  # after the end: runs dense


def test_a_mean_before_the_end_is_inside_and_a_flat_one_is_an_open_output():
    squeeze = xnnpack_walk.walk(_chain(
        *_stem_ops(),
        rules.Op(rules.MEAN, "squeeze", keepdims=True),
        rules.Op(rules.CONV, "pw", input_hw=(1, 1)),
        rules.Op(rules.MEAN, "mean", keepdims=True),
    ))
    assert squeeze.ends == ["4:mean"]
    assert squeeze.with_role(xnnpack_walk.INSIDE) == ["2:squeeze", "3:pw"]
    flat = xnnpack_walk.walk(_chain(
        *_stem_ops(), rules.Op(rules.CONV, "pw"), rules.Op(rules.MEAN, "mean", keepdims=False),
    ))
    assert flat.ends == [] and flat.open_outputs == [("3:mean", ["3:mean"])]
    assert flat.flat_means() == ["3:mean"]


def test_the_first_convolution_on_every_path_must_start():
    found = xnnpack_walk.walk(_chain(
        rules.Op(rules.CONV, "pw0", in_channels=3, input_hw=(16, 16)),
        *_stem_ops(),
        rules.Op(rules.MEAN, "mean", keepdims=True),
    ))
    assert found.starts == []
    ((node, problems),) = found.rejected
    assert node == "0:pw0" and problems[0] == "kernel (1, 1)"
    bypass = xnnpack_walk.walk(_chain(rules.Op(rules.OTHER, "flatten")))
    assert bypass.unstarted == ["0:flatten"] and bypass.open_outputs


# -- the two adapters agree ---------------------------------------------------------


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


def _squeeze_excite(x):
    y = L.DepthwiseConv2D(3, padding="same")(x)
    se = L.GlobalAveragePooling2D(keepdims=True)(y)
    se = L.Conv2D(4, 1, activation="relu")(se)
    se = L.Conv2D(8, 1, activation="sigmoid")(se)
    return L.Conv2D(16, 1)(L.Multiply()([y, se]))


def _two_stems(second_padding):
    inputs = [keras.Input((16, 16, 3)), keras.Input((16, 16, 3))]
    x = L.Add()([_stem(inputs[0]), _stem(inputs[1], second_padding)])
    return keras.Model(inputs, _head(L.Conv2D(8, 1)(x)))


def _bypass():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 1)(_stem(inputs))
    return keras.Model(inputs, [_head(x), L.Dense(2)(L.Flatten()(inputs))])


def _late_stem():
    inputs = keras.Input((16, 16, 3))
    x = _stem(L.Conv2D(3, 1)(inputs))
    return keras.Model(inputs, _head(L.Conv2D(8, 1)(x)))


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
    # A squeeze-and-excite mean is inside; only the last mean ends.
    "squeeze_excite": (lambda: _model(_squeeze_excite), True),
    "two_stems": (lambda: _two_stems("valid"), True),
    "second_stem_same": (lambda: _two_stems("same"), False),
    "input_bypasses_the_convolutions": (_bypass, False),
    "stem_after_a_convolution": (_late_stem, False),
}


def _file_verdict(model):
    with contextlib.redirect_stdout(io.StringIO()):
        report = export.inspect_tflite(export.to_tflite(model))
    structural = [c for c in report.checks if c.name in ("start", "end", "operators")]
    # CONV_2D filters are (out, 1, 1, in): the (in, out) of each 1x1 convolution.
    pointwise = sorted(
        (op.weight_shape[3], op.weight_shape[0]) for op in report.operators if op.role == "1x1"
    )
    return all(c.passed for c in structural), pointwise, report


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras_graph_and_tflite_file_give_the_same_verdict(name):
    build, expected = MODELS[name]
    model = build()
    keras_report = sk.xnnpack_sparsity_report(model)
    file_ok, file_pointwise, file_report = _file_verdict(model)
    assert keras_report.supported == expected, str(keras_report)
    assert file_ok == expected, str(file_report)
    if expected:  # The same 1x1 convolutions run sparse, by their channels.
        kernels = [model.get_layer(path).kernel.shape for path in keras_report.pruned_layers]
        assert file_pointwise == sorted((k[2], k[3]) for k in kernels), str(file_report)
        assert file_pointwise


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
