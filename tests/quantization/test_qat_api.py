"""API surface, save/load, errors, annotation, nesting, schemes."""

import keras
import numpy as np
import pytest
from tfmot_lite.example_models import build_cnn as small_cnn

import tfmot_lite as tfmot
from tfmot_lite.quantization import keras as quantize

L = keras.layers


def test_tfmot_names_and_paths():
    qk = tfmot.quantization.keras
    for name in [
        "quantize_model", "quantize_annotate_layer", "quantize_annotate_model",
        "quantize_apply", "quantize_scope", "QuantizeConfig", "QuantizeWrapper",
        "QuantizeWrapperV2", "QuantizeRegistry", "QuantizeScheme",
        "QuantizeLayoutTransform",
    ]:
        assert hasattr(qk, name), name
    for name in ["Quantizer", "LastValueQuantizer", "MovingAverageQuantizer",
                 "AllValuesQuantizer", "FixedQuantizer"]:
        assert hasattr(qk.quantizers, name), name
    from tfmot_lite.quantization.keras.default_8bit import Default8BitQuantizeScheme
    from tfmot_lite.quantization.keras.experimental.default_n_bit import (
        DefaultNBitQuantizeScheme,
    )

    assert isinstance(Default8BitQuantizeScheme(), qk.QuantizeScheme)
    scheme = qk.experimental.default_n_bit.DefaultNBitQuantizeScheme(
        num_bits_weight=4, num_bits_activation=8
    )
    assert isinstance(scheme, DefaultNBitQuantizeScheme)


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def test_input_model_not_mutated_and_layers_mapped():
    model = small_cnn()
    before = _weights(model)
    names = [l.name for l in model.layers]
    nodes = [len(l._inbound_nodes) for l in model.layers]
    qat = quantize.quantize_model(model)
    assert [l.name for l in model.layers] == names
    assert [len(l._inbound_nodes) for l in model.layers] == nodes
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)
    kinds = [type(l).__name__ for l in qat.layers]
    assert kinds[1] == "QuantizeLayer"
    assert kinds.count("QuantizeConvBatchNorm") == 3
    assert kinds[-1] == "QuantizeWrapperV2"
    # Folded BatchNorm and ReLU layers become identities in place.
    assert kinds.count("Identity") == 6


def test_inference_matches_float_model_closely(digits32):
    (x, _), _ = digits32
    model = small_cnn()
    qat = quantize.quantize_model(model)
    for layer in qat.layers:
        if isinstance(layer, quantize.QuantizeConvBatchNorm):
            # Frozen BatchNorm: training uses the folded moving statistics.
            layer.batch_norm.trainable = False
    qat.compile(optimizer="sgd", loss="mse")
    # One pass in training mode (lr 0) calibrates the activation ranges.
    qat.optimizer.learning_rate = 0.0
    qat.fit(x[:64], np.zeros((64, 10)), epochs=1, verbose=0, batch_size=64)
    ref = model.predict(x[:64], verbose=0)
    out = qat.predict(x[:64], verbose=0)
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() < 0.1 * scale


@pytest.mark.slow
def test_save_and_load_keras_format(tmp_path, digits32):
    (x, y), _ = digits32
    inner = keras.Sequential(
        [keras.Input((8, 8, 16)), L.DepthwiseConv2D(3, padding="same"),
         L.BatchNormalization(), L.ReLU(6.0)], name="inner",
    )
    norm = L.Normalization()
    norm.adapt(x[:64])
    inp = keras.Input((32, 32, 3))
    h = L.Rescaling(2.0, offset=-1.0)(inp)
    h = norm(h)
    h = L.Conv2D(16, 3, strides=4, padding="same")(h)
    h = L.BatchNormalization()(L.Activation("relu")(h))
    h = inner(h)
    h = L.SeparableConv2D(8, 3, activation="relu")(h)
    h = L.Add()([h, h * 0.5])
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(10, activation="softmax")(h)
    model = keras.Model(inp, out)
    qat = quantize.quantize_model(model)
    kinds = {type(l).__name__ for l in qat.layers}
    assert {"QuantizeBatchNorm", "QuantizeOperation", "Sequential"} <= kinds
    qat.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    qat.fit(x[:64], y[:64], epochs=1, verbose=0)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x[:16], verbose=0), qat.predict(x[:16], verbose=0), atol=1e-6
    )
    # Loaded models keep training.
    loaded.fit(x[:32], y[:32], epochs=1, verbose=0)


def test_unsupported_layers_listed_in_one_error():
    inp = keras.Input((10, 8))
    h = L.GroupNormalization(groups=2)(inp)
    h = L.Bidirectional(L.LSTM(4), name="both_ways")(h)
    out = L.Dense(2)(h)
    model = keras.Model(inp, out)
    with pytest.raises(ValueError) as err:
        quantize.quantize_model(model)
    message = str(err.value)
    assert "group_normalization (GroupNormalization)" in message
    assert "both_ways (Bidirectional)" in message
    assert "QuantizeConfig" in message and "quantize_annotate_layer" in message
    assert "dense" not in message.split("\n", 1)[1].split("Either")[0]


def test_rejects_subclassed_unbuilt_and_requantization():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Subclassed|subclassed|Sequential or Functional"):
        quantize.quantize_model(Net())
    with pytest.raises(ValueError, match="not built"):
        quantize.quantize_model(keras.Sequential([L.Dense(2)]))
    qat = quantize.quantize_model(small_cnn())
    with pytest.raises(ValueError, match="already quantized"):
        quantize.quantize_model(qat)


def test_annotate_some_layers_rest_stays_float(digits32):
    (x, _), _ = digits32
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3, strides=2)(inp)
    h = L.Flatten()(h)
    h = quantize.quantize_annotate_layer(L.Dense(16, activation="relu"))(h)
    out = L.Dense(10)(h)
    model = keras.Model(inp, out)
    qat = quantize.quantize_apply(model)
    kinds = [type(l).__name__ for l in qat.layers]
    assert kinds.count("QuantizeWrapperV2") == 1
    assert "Conv2D" in kinds and kinds[-1] == "Dense"
    # The annotated Dense gets its float input quantized first.
    assert "QuantizeLayer" in kinds and kinds.index("QuantizeLayer") > kinds.index("Flatten")
    assert qat.predict(x[:4], verbose=0).shape == (4, 10)


class Scale(L.Layer):
    """A custom layer the registry does not know."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


@keras.saving.register_keras_serializable(package="tfmot_lite_tests")
class ScaleQuantizeConfig(quantize.QuantizeConfig):
    def get_weights_and_quantizers(self, layer):
        return [(layer.w, quantize.quantizers.LastValueQuantizer(8, False, True, True))]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        layer.w = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quantize.quantizers.MovingAverageQuantizer(8, False, False, False)]

    def get_config(self):
        return {}


def test_custom_layer_with_quantize_config(tmp_path):
    inp = keras.Input((6,))
    h = L.Dense(6)(inp)
    h = quantize.quantize_annotate_layer(Scale(), ScaleQuantizeConfig())(h)
    out = L.Dense(2)(h)
    model = quantize.quantize_annotate_model(keras.Model(inp, out))
    qat = quantize.quantize_apply(model)
    wrapper = [l for l in qat.layers if isinstance(l, quantize.QuantizeWrapper)
               and isinstance(l.layer, Scale)][0]
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    qat.compile(optimizer="sgd", loss="mse")
    qat.fit(x, np.zeros((8, 2)), epochs=1, verbose=0)
    # The variable is back in place after every call.
    assert isinstance(wrapper.layer.w, keras.Variable)
    with quantize.quantize_scope({"Scale": Scale}):
        path = tmp_path / "custom.keras"
        qat.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0),
                               atol=1e-6)


def test_quantize_apply_needs_annotations():
    with pytest.raises(ValueError, match="no annotated layers"):
        quantize.quantize_apply(small_cnn())


def test_n_bit_scheme_uses_fewer_weight_levels(digits32):
    (x, _), _ = digits32
    scheme = quantize.experimental.default_n_bit.DefaultNBitQuantizeScheme(
        num_bits_weight=4, num_bits_activation=8
    )
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3)(inp)
    h = L.Flatten()(h)
    out = L.Dense(10)(h)
    qat = quantize.quantize_model(keras.Model(inp, out), scheme)
    qat.compile(optimizer="sgd", loss="mse")
    qat.fit(x[:16], np.zeros((16, 10)), epochs=1, verbose=0)
    dense = qat.layers[-1]
    q = keras.ops.convert_to_numpy(dense.transformed_weights(False)[0])
    assert len(np.unique(q)) <= 15  # 4-bit narrow range: -7..7
    conv = [l for l in qat.layers if isinstance(l, quantize.QuantizeWrapper)][0]
    q = keras.ops.convert_to_numpy(conv.transformed_weights(False)[0])
    for c in range(q.shape[-1]):
        assert len(np.unique(q[..., c])) <= 15
    with pytest.raises(ValueError, match="between 2 and 8"):
        quantize.experimental.default_n_bit.DefaultNBitQuantizeScheme(num_bits_weight=9)


def test_annotating_a_squeeze_excite_block_with_raw_scaling():
    """MobileNetV3's squeeze-excite: `x * (1/6)` (a raw Multiply with a
    number, which Keras 3 marks sparse) feeds a Multiply layer, then a
    convolution. Annotating and applying keeps every tensor dense."""
    inputs = keras.Input((8, 8, 4))
    gate = L.GlobalAveragePooling2D(keepdims=True)(inputs)
    gate = L.ReLU(6.0)(gate + 3.0) * (1.0 / 6.0)
    x = L.Conv2D(4, 1)(L.Multiply()([inputs, gate]))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    qat = quantize.quantize_apply(quantize.quantize_annotate_model(model))
    x = np.random.default_rng(0).random((2, 8, 8, 4)).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(qat(x))).all()


@pytest.mark.slow  # over 5 s in the fast tier
def test_annotated_model_quantizes_raw_residual_adds_between_int8_tensors(tmp_path):
    """ConvNeXt's residual stream is a chain of raw `x + y` operations,
    which cannot be annotated. Between int8 tensors `quantize_apply`
    quantizes them as `quantize_model` does, so the annotated model (PQAT's
    path) exports fully integer; it used to leave every ADD of the chain
    float."""
    from tfmot_lite.export import export_model, float_operators
    from tfmot_lite.quantization.wrapper import QuantizeOperation

    inputs = keras.Input((8, 8, 3))
    h = L.Conv2D(8, 3, padding="same")(inputs)
    for _ in range(2):
        h = h + L.Dense(8)(L.LayerNormalization(epsilon=1e-6)(h))
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    qat = quantize.quantize_apply(quantize.quantize_annotate_model(model))
    assert sum(isinstance(layer, QuantizeOperation) for layer in qat.layers) == 2
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    qat(x, training=True)
    path = tmp_path / "m.tflite"
    report = export_model(qat, "int8", path=path, data=x)
    assert float_operators(path) == [] and report.agreement >= 0.99
