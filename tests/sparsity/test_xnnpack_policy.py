"""PruneForLatencyOnXNNPack and xnnpack_sparsity_report."""

import re

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot

sk = tfmot.sparsity.keras
L = keras.layers


def guide_model(keepdims, head=None):
    """The XNNPACK guide's CNN, with explicit layer names."""
    layers = [
        keras.Input((32, 32, 3)),
        L.ZeroPadding2D(1, name="pad0"),
        L.Conv2D(8, 3, strides=2, padding="valid", name="stem"),
        L.BatchNormalization(name="bn0"),
        L.ReLU(name="relu0"),
        L.DepthwiseConv2D(3, padding="same", name="dw1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(name="relu1"),
        L.Conv2D(16, 1, name="pw1"),
        L.BatchNormalization(name="bn2"),
        L.ReLU(name="relu2"),
        L.ZeroPadding2D(1, name="pad2"),
        L.DepthwiseConv2D(3, strides=2, padding="valid", name="dw2"),
        L.BatchNormalization(name="bn3"),
        L.ReLU(name="relu3"),
        L.Conv2D(32, 1, name="pw2"),
        L.BatchNormalization(name="bn4"),
        L.ReLU(name="relu4"),
        L.GlobalAveragePooling2D(keepdims=keepdims, name="global_average_pooling2d"),
    ]
    layers += head or [L.Flatten(name="flatten"), L.Dense(10, name="logits")]
    return keras.Sequential(layers, name="guide")


def schedule():
    return sk.PolynomialDecay(0.25, 0.75, begin_step=0, end_step=4, frequency=2)


def prune(model):
    return sk.prune_low_magnitude(
        model, pruning_schedule=schedule(), pruning_policy=sk.PruneForLatencyOnXNNPack()
    )


def test_guide_model_with_flat_mean_is_rejected_naming_the_layer():
    model = guide_model(keepdims=False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError) as info:
        prune(model)
    message = str(info.value)
    assert (
        "layer 'global_average_pooling2d': GlobalAveragePooling2D needs keepdims=True"
        in message
    )
    assert "Fix: use GlobalAveragePooling2D(keepdims=True)" in message
    assert message.count("\n  - ") == 1  # Only the real problem is listed.
    # Nothing half-applied: the model is untouched.
    assert not any(isinstance(layer, sk.PruneLowMagnitude) for layer in model.layers)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_report_lists_the_same_findings_without_raising():
    report = sk.xnnpack_sparsity_report(guide_model(keepdims=False))
    assert not report.supported
    assert [f.path for f in report.findings] == ["global_average_pooling2d"]
    assert "cannot use XNNPACK sparse inference (1 problem)" in str(report)
    assert str(report.findings[0]) in str(report.error())


def test_every_problem_is_listed_in_one_error():
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", name="same_stem")(inputs)
    x = L.Conv2D(16, 1, name="pw")(x)
    x = L.MaxPooling2D(name="maxpool")(x)
    y = L.UpSampling2D(name="nearest_up")(x)
    x = L.GlobalAveragePooling2D(name="flat_mean")(y)
    model = keras.Model(inputs, L.Dense(3, name="head")(x), name="many")
    report = sk.xnnpack_sparsity_report(model)
    paths = [f.path for f in report.findings]
    assert paths == ["same_stem", "maxpool", "flat_mean"]
    assert "padding top/bottom/left/right (0, 1, 0, 1)" in str(report)
    fix = "ZeroPadding2D(1) then Conv2D(filters, 3, strides=2, padding='valid')"
    assert fix in str(report)
    with pytest.raises(ValueError) as info:
        prune(model)
    for path in paths:
        assert f"layer '{path}'" in str(info.value)
    assert "nearest_up" not in str(info.value)  # Downstream of a blocker.


def test_3x3_conv_inside_a_nested_block_is_rejected_by_name():
    inputs = keras.Input((32, 32, 3))
    x = L.ZeroPadding2D(1)(inputs)
    x = L.Conv2D(8, 3, strides=2, name="stem")(x)
    block = keras.Sequential(
        [
            L.Conv2D(8, 3, padding="same", name="conv3x3"),
            L.ReLU(),
            L.Conv2D(8, 1, name="pw"),
        ],
        name="block",
    )
    x = L.Add(name="residual")([x, block(x)])
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    outputs = L.Dense(4)(L.Flatten()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError) as info:
        prune(model)
    message = str(info.value)
    assert re.search(
        r"layer 'block/conv3x3': a Conv2D inside the sparse subgraph must be 1x1 .*"
        r"kernel \(3, 3\).* Fix: replace it with DepthwiseConv2D then Conv2D 1x1",
        message,
    )
    assert message.count("\n  - ") == 1


def test_depthwise_padding_rules():
    def model_with(*middle):
        inputs = keras.Input((32, 32, 3))
        x = L.Conv2D(8, 3, strides=2)(L.ZeroPadding2D(1)(inputs))
        for layer in middle:
            x = layer(x)
        x = L.Conv2D(8, 1)(x)
        x = L.GlobalAveragePooling2D(keepdims=True)(x)
        return keras.Model(inputs, L.Flatten()(x))

    ok = model_with(
        L.ZeroPadding2D(2),
        L.DepthwiseConv2D(5, strides=2),
        L.DepthwiseConv2D(5, padding="same"),
    )
    assert sk.xnnpack_sparsity_report(ok).supported
    bad = model_with(L.DepthwiseConv2D(3, strides=2, padding="same", name="dw_same_s2"))
    (finding,) = sk.xnnpack_sparsity_report(bad).findings
    assert finding.path == "dw_same_s2"
    assert "padding top/bottom/left/right (0, 1, 0, 1)" in finding.rule
    assert "ZeroPadding2D(kernel // 2)" in finding.fix
    short = model_with(L.ZeroPadding2D(1), L.DepthwiseConv2D(5, strides=2, name="dw5"))
    assert [f.path for f in sk.xnnpack_sparsity_report(short).findings] == ["dw5"]


def test_mobilenet_v3_style_block_is_supported():
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, strides=2, activation="hard_silu")(L.ZeroPadding2D(1)(inputs))
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.Activation("swish")(y)
    se = L.GlobalAveragePooling2D(keepdims=True)(y)
    se = L.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(se)
    y = L.Multiply()([y, se])
    y = L.Conv2D(16, 1, name="project")(y)
    y = L.Dropout(0.2)(y)
    x = L.Add()([x, y])
    x = L.UpSampling2D(interpolation="bilinear")(x)
    x = L.GlobalAveragePooling2D(keepdims=True, name="end")(x)
    model = keras.Model(inputs, L.Dense(10)(L.Flatten()(x)))
    report = sk.xnnpack_sparsity_report(model)
    assert report.supported, str(report)
    assert report.end_layers == ["end"]
    assert sorted(report.pruned_layers) == ["project", "se_expand", "se_reduce"]
    assert "fits XNNPACK sparse inference" in str(report)


def test_fixed_model_prunes_only_its_1x1_convs_to_the_target(digits32):
    (x, y), _ = digits32
    # A 1x1 Conv2D classifier after the spatial mean runs dense: not pruned.
    head = [L.Conv2D(10, 1, name="conv_head"), L.Flatten(name="flatten")]
    dense = guide_model(keepdims=True, head=head)
    pruned = prune(dense)
    wrapped = [
        layer.layer.name for layer in pruned.layers
        if isinstance(layer, sk.PruneLowMagnitude)
    ]
    assert wrapped == ["pw1", "pw2"]
    assert not any(isinstance(layer, sk.PruneLowMagnitude) for layer in dense.layers)

    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pruned.fit(x[:320], y[:320], batch_size=64, epochs=1, verbose=0,
               callbacks=[sk.UpdatePruningStep()])
    stripped = sk.strip_pruning(pruned)
    for layer in stripped.layers:
        if not layer.weights:
            continue
        kernel = keras.ops.convert_to_numpy(layer.weights[0])
        zeros = float(np.mean(kernel == 0))
        if layer.name in ("pw1", "pw2"):
            assert zeros == pytest.approx(0.75, abs=0.01), layer.name
        else:
            assert zeros == 0.0, layer.name


def test_report_sees_through_pruning_wrappers():
    pruned = prune(guide_model(keepdims=True))
    report = sk.xnnpack_sparsity_report(pruned)
    assert report.supported
    assert report.pruned_names == {"pw1", "pw2"}
    assert report.start_layers == ["stem"]


def test_allow_pruning_and_serialization():
    policy = sk.PruneForLatencyOnXNNPack()
    assert policy.allow_pruning(L.Conv2D(4, 1))
    assert not policy.allow_pruning(L.Conv2D(4, 3))
    assert not policy.allow_pruning(L.Conv2D(4, 1, strides=2))
    assert not policy.allow_pruning(L.DepthwiseConv2D(3))
    assert not policy.allow_pruning(L.Dense(4))
    config = keras.saving.serialize_keras_object(policy)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, sk.PruneForLatencyOnXNNPack)


def test_models_that_cannot_be_checked_are_reported():
    unbuilt = keras.Sequential([L.Conv2D(4, 1)], name="unbuilt")
    (finding,) = sk.xnnpack_sparsity_report(unbuilt).findings
    assert "model 'unbuilt' is not built" in str(finding)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    report = sk.xnnpack_sparsity_report(Subclassed(name="sub"))
    assert "not a Sequential or Functional model" in str(report)
