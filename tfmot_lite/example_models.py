"""The small models the demo, tutorials, benchmarks and tests train.

One definition each, so that a number the README quotes from the demo, a
tutorial's table and a test's threshold all speak of the same network:

* `build_cnn`: a Conv-BatchNorm-ReLU CNN (three stride-2 stages, a spatial
  mean, a Dense head) for 32x32x3 digits. The tests' everyday model; the
  post-training, QAT (`use_bias=False`), channel-pruning and
  collaborative-optimization tutorials' model (the last, and the combine
  digits test, with a 1x1 stage: `pointwise_filters=64`).
* `build_xnnpack_cnn`: the TensorFlow XNNPACK pruning guide's CNN, twice as
  wide. Every convolution fits XNNPACK's sparse-inference subgraph, so its
  1x1 convolutions can be pruned for sparse inference; the demo's model.
* `mobilenet_v2`: MobileNetV2 at 96x96x3 with 10 logits and random weights,
  the benchmarks' application-sized model (`applications=tf_keras.applications`
  builds the same network for the tfmot reference runs; `blocks` keeps
  its first blocks only, for smoke runs).

Only Keras: importing this module imports no TensorFlow.
"""

import keras

L = keras.layers


def build_cnn(input_shape=(32, 32, 3), classes=10, use_bias=True, pointwise_filters=None):
    """A small Conv-BN-ReLU CNN: three 3x3 stride-2 stages (16, 32, 64
    filters), then, with `pointwise_filters`, a 1x1 Conv-BN-ReLU stage, a
    global average pooling and a Dense head with `classes` logits.

    `use_bias=False` leaves the bias to the BatchNormalization after each
    convolution (as QAT's Conv-BN folding sees it in most real networks)."""
    stages = [(16, 3, 2), (32, 3, 2), (64, 3, 2)]
    if pointwise_filters:
        stages.append((pointwise_filters, 1, 1))
    inputs = keras.Input(input_shape)
    x = inputs
    for filters, size, stride in stages:
        x = L.Conv2D(filters, size, strides=stride, padding="same", use_bias=use_bias)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def build_xnnpack_cnn(input_shape=(32, 32, 3), classes=10):
    """The TensorFlow XNNPACK pruning guide's CNN, twice as wide: a 3x3
    stride-2 stem on a padded input, depthwise + 1x1 blocks, a spatial mean
    with keepdims. Every convolution fits XNNPACK's sparse subgraph, so its
    1x1 convolutions can be pruned for sparse inference."""
    def bn_relu(x):
        return L.ReLU()(L.BatchNormalization(momentum=0.9)(x))

    inputs = keras.Input(input_shape)
    x = L.ZeroPadding2D(1)(inputs)
    x = bn_relu(L.Conv2D(16, 3, strides=2, padding="valid")(x))
    x = bn_relu(L.DepthwiseConv2D(3, padding="same")(x))
    x = bn_relu(L.Conv2D(32, 1)(x))
    x = L.ZeroPadding2D(1)(x)
    x = bn_relu(L.DepthwiseConv2D(3, strides=2, padding="valid")(x))
    x = bn_relu(L.Conv2D(64, 1)(x))
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    outputs = L.Dense(classes)(L.Flatten()(x))
    return keras.Model(inputs, outputs, name="xnnpack_cnn")


def mobilenet_v2(alpha=0.35, applications=None, blocks=None):
    """MobileNetV2 for 96x96x3 inputs, 10 logits, untrained (`weights=None`:
    nothing to download). `applications` is the module that builds it
    (default `keras.applications`; `tf_keras.applications` for tfmot).

    `blocks`: only the stem and the first `blocks` of its 17 inverted
    residual blocks (block 2 is the first with a residual Add), then a
    spatial mean and the 10 logits: the same layers at a fraction of the
    trace, for the benchmarks' smoke runs (Keras 3's applications only)."""
    if blocks is not None and applications not in (None, keras.applications):
        raise ValueError("`blocks` cuts a Keras 3 MobileNetV2; leave `applications` unset "
                         "with it.")
    applications = applications or keras.applications
    model = applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=alpha, weights=None, classes=10,
        classifier_activation=None,
    )
    if blocks is None:
        return model
    if not 1 <= blocks <= 17:
        raise ValueError(f"`blocks` must be 1 to 17 (MobileNetV2's inverted residual blocks); "
                         f"got {blocks!r}.")
    names = {layer.name for layer in model.layers}
    last = "expanded_conv_project_BN" if blocks == 1 else next(
        name for name in (f"block_{blocks - 1}_add", f"block_{blocks - 1}_project_BN")
        if name in names)
    x = model.get_layer(last).output
    outputs = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return keras.Model(model.inputs, outputs, name=f"{model.name}_{blocks}_blocks")
