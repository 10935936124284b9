"""Tiny models with the channel couplings of real networks, for the channel
pruning tests: MobileNetV2 inverted residual blocks, ResNet basic blocks,
and a nested backbone."""

import keras
import numpy as np

L = keras.layers


def randomize_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics and shifts, so that a channel that
    is not masked all the way through would show in the predictions."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.2, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    return model


def inverted_residual(x, expand, name):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project, + input."""
    channels = x.shape[-1]
    h = L.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
    h = L.BatchNormalization(name=f"{name}_expand_bn")(h)
    h = L.ReLU(6.0, name=f"{name}_expand_relu")(h)
    h = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(h)
    h = L.BatchNormalization(name=f"{name}_dw_bn")(h)
    h = L.ReLU(6.0, name=f"{name}_dw_relu")(h)
    h = L.Conv2D(channels, 1, use_bias=False, name=f"{name}_project")(h)
    h = L.BatchNormalization(name=f"{name}_project_bn")(h)
    return L.Add(name=f"{name}_add")([x, h])


def mobilenet_v2_tiny(input_shape=(16, 16, 3), classes=5):
    inputs = keras.Input(input_shape)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    x = inverted_residual(x, 24, "block1")
    x = inverted_residual(x, 24, "block2")
    x = L.Conv2D(32, 1, use_bias=False, name="head")(x)
    x = L.BatchNormalization(name="head_bn")(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(classes, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="mbv2_tiny"))


def basic_block(x, filters, stride, name):
    """ResNet's basic block, with a projection shortcut when shapes change."""
    h = L.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    h = L.BatchNormalization(name=f"{name}_bn1")(h)
    h = L.Activation("relu", name=f"{name}_relu1")(h)
    h = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    h = L.BatchNormalization(name=f"{name}_bn2")(h)
    if stride != 1 or x.shape[-1] != filters:
        x = L.Conv2D(filters, 1, strides=stride, name=f"{name}_shortcut")(x)
        x = L.BatchNormalization(name=f"{name}_shortcut_bn")(x)
    x = L.Add(name=f"{name}_add")([x, h])
    return L.Activation("relu", name=f"{name}_out")(x)


def resnet_tiny(input_shape=(16, 16, 3), classes=5):
    inputs = keras.Input(input_shape)
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    x = L.MaxPooling2D(name="stem_pool")(x)
    x = basic_block(x, 8, 1, "res1")
    x = basic_block(x, 16, 2, "res2")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(classes, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="resnet_tiny"))


def nested_model(input_shape=(16, 16, 3), classes=5):
    """A backbone sub-model inside a Functional model with a head outside."""
    backbone_in = keras.Input(input_shape)
    x = L.Conv2D(8, 3, padding="same", name="bb_conv1")(backbone_in)
    x = L.BatchNormalization(name="bb_bn1")(x)
    x = L.ReLU(name="bb_relu1")(x)
    y = L.Conv2D(6, 1, name="bb_branch_a")(x)
    z = L.Conv2D(10, 1, name="bb_branch_b")(x)
    x = L.Concatenate(name="bb_concat")([y, z])
    backbone = keras.Model(backbone_in, x, name="backbone")
    inputs = keras.Input(input_shape)
    h = backbone(inputs)
    h = L.SeparableConv2D(12, 3, padding="same", name="head_sep")(h)
    h = L.ReLU(name="head_relu")(h)
    h = L.GlobalAveragePooling2D(name="pool")(h)
    h = L.Dense(16, activation="relu", name="fc")(h)
    outputs = L.Dense(classes, name="logits")(h)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="nested"))


def data(input_shape=(16, 16, 3), classes=5, n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, classes, n).astype("int32")
    return x, y


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,  # A few steps: XLA compilation would dominate.
    )
    return model
