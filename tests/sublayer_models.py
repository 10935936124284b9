"""Models whose stock layers sit inside subclassed layers: a user's own
residual block and KerasHub models built from config with random weights
(no download). Each builder returns `(model, inputs)` with 8 examples."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tfmot_lite_tests")
class ResidualBlock(keras.layers.Layer):
    """Conv-BN-ReLU-Conv-BN plus the input, held in a list and a dict; its
    output Dense sits in a nested subclassed layer."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.convs = [keras.layers.Conv2D(filters, 3, padding="same") for _ in range(2)]
        self.norms = {"a": keras.layers.BatchNormalization(),
                      "b": keras.layers.BatchNormalization()}
        self.act = keras.layers.ReLU()
        self.head = Projection(filters)

    def build(self, input_shape):
        shape = input_shape
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        for norm in self.norms.values():
            norm.build(shape)
        self.head.build(shape)

    def call(self, x, training=None):
        y = self.act(self.norms["a"](self.convs[0](x), training=training))
        y = self.norms["b"](self.convs[1](y), training=training)
        return self.head(self.act(x + y))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="tfmot_lite_tests")
class Projection(keras.layers.Layer):
    """A Dense in an attribute, with a scale of the layer's own."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return self.dense(x) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _rng():
    return np.random.default_rng(0)


def user_block():
    inputs = keras.Input((16, 16, 8))
    x = ResidualBlock(8)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    return model, _rng().normal(size=(8, 16, 16, 8)).astype("float32")


def bert_classifier():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=500, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=32,
        dropout=0.0)  # Keras does not save dropout's random state
    inputs = {k: keras.Input((32,), dtype="int32", name=k)
              for k in ("token_ids", "padding_mask", "segment_ids")}
    model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)["pooled_output"]))
    rng = _rng()
    x = {"token_ids": rng.integers(0, 500, (8, 32)).astype("int32"),
         "padding_mask": np.ones((8, 32), "int32"),
         "segment_ids": np.zeros((8, 32), "int32")}
    return model, x


def vit_classifier():
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
        hidden_dim=64, mlp_dim=128, dropout_rate=0.0, attention_dropout=0.0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    return model, _rng().random((8, 32, 32, 3)).astype("float32")


def resnet_classifier():
    """A KerasHub image classifier (task model) on a small ResNet backbone."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(32, 32, 3))
    model = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=3)
    return model, _rng().random((8, 32, 32, 3)).astype("float32")


BUILDERS = {
    "user_block": user_block,
    "bert": bert_classifier,
    "vit": vit_classifier,
    "resnet": resnet_classifier,
}
