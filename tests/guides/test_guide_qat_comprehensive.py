"""The code patterns of tfmot's "Quantization aware training comprehensive
guide" (g3doc/guide/quantization/training_comprehensive_guide), with
`import tfmot_lite as tfmot`, `import keras` and the bundled digits (8x8
images, flattened: 64 features) in place of random data.

The four "Experiment with quantization" cells define QuantizeConfigs
exactly as the guide writes them: unregistered classes, `layer.kernel =
quantize_weights[0]` on Keras 3's read-only `Dense.kernel`, annotation
outside `quantize_scope` and application inside it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmot_lite as tfmot
from tfmot_lite import data
from tfmot_lite.export import TFLiteModel

pytestmark = pytest.mark.slow

input_shape = [64]

LastValueQuantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer
MovingAverageQuantizer = tfmot.quantization.keras.quantizers.MovingAverageQuantizer
quantize_annotate_layer = tfmot.quantization.keras.quantize_annotate_layer
quantize_annotate_model = tfmot.quantization.keras.quantize_annotate_model
quantize_scope = tfmot.quantization.keras.quantize_scope
qz = tfmot.quantization.keras.quantizers


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=8, channels=1)
    return x_train.reshape(-1, 64), y_train, x_test.reshape(-1, 64), y_test


def setup_model():
    return keras.Sequential([
        keras.layers.Dense(20, input_shape=input_shape),
        keras.layers.Flatten(),
    ])


@pytest.fixture(scope="module")
def pretrained_weights(digits, tmp_path_factory):
    x_train, y_train, _, _ = digits
    model = setup_model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3, verbose=0)
    path = str(tmp_path_factory.mktemp("weights") / "pretrained.weights.h5")
    model.save_weights(path)
    return path


def _train(model, digits, epochs=1):
    x_train, y_train, _, _ = digits
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer="adam", metrics=["accuracy"])
    return model.fit(x_train, y_train, epochs=epochs, verbose=0)


def test_quantize_whole_model_and_deploy(digits, pretrained_weights, tmp_path):
    _, _, x_test, y_test = digits
    base_model = setup_model()
    assert base_model.built  # `input_shape=` on the first layer
    base_model.load_weights(pretrained_weights)
    quant_aware_model = tfmot.quantization.keras.quantize_model(base_model)
    quant_aware_model.summary()
    _train(quant_aware_model, digits)

    # Checkpoint and deserialize (the .keras format; the scope is harmless).
    path = tmp_path / "qat.keras"
    quant_aware_model.save(path)
    with tfmot.quantization.keras.quantize_scope():
        loaded_model = keras.models.load_model(path)
    np.testing.assert_allclose(loaded_model.predict(x_test, verbose=0),
                               quant_aware_model.predict(x_test, verbose=0), atol=1e-6)

    # Create and deploy the quantized model: int8 agrees with Keras.
    converter = tf.lite.TFLiteConverter.from_keras_model(quant_aware_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_tflite_model = converter.convert()
    int8 = TFLiteModel(quantized_tflite_model).predict(x_test).argmax(-1)
    keras_pred = quant_aware_model.predict(x_test, verbose=0).argmax(-1)
    assert np.mean(int8 == keras_pred) >= 0.99
    _, keras_accuracy = quant_aware_model.evaluate(x_test, y_test, verbose=0)
    assert abs(np.mean(int8 == y_test) - keras_accuracy) <= 0.01
    assert keras_accuracy > 0.5  # 10 digits, one Dense layer, a few epochs


def test_quantize_some_layers(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)

    def apply_quantization_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return quantize_annotate_layer(layer)
        return layer

    annotated_model = keras.models.clone_model(
        base_model, clone_function=apply_quantization_to_dense
    )
    quant_aware_model = tfmot.quantization.keras.quantize_apply(annotated_model)
    kinds = [type(layer).__name__ for layer in quant_aware_model.layers]
    assert kinds == ["QuantizeLayer", "QuantizeWrapperV2", "Flatten"]
    assert base_model.layers[0].name in [l.layer.name for l in quant_aware_model.layers
                                         if hasattr(l, "layer")]

    # Functional example.
    i = keras.Input(shape=(64,))
    x = quantize_annotate_layer(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    annotated_model = keras.Model(inputs=i, outputs=o)
    quant_aware_model = tfmot.quantization.keras.quantize_apply(annotated_model)
    assert "QuantizeLayer" in [type(l).__name__ for l in quant_aware_model.layers]

    # Sequential example: the annotated first layer carries `input_shape`.
    annotated_model = keras.Sequential([
        quantize_annotate_layer(keras.layers.Dense(20, input_shape=input_shape)),
        keras.layers.Flatten(),
    ])
    assert annotated_model.built
    quant_aware_model = tfmot.quantization.keras.quantize_apply(annotated_model)
    assert quant_aware_model.count_params() > 0


class DefaultDenseQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    # Configure how to quantize weights.
    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, LastValueQuantizer(num_bits=8, symmetric=True,
                                                  narrow_range=False, per_axis=False))]

    # Configure how to quantize activations.
    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, MovingAverageQuantizer(num_bits=8, symmetric=False,
                                                          narrow_range=False,
                                                          per_axis=False))]

    def set_quantize_weights(self, layer, quantize_weights):
        # One line for each item returned in `get_weights_and_quantizers`.
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        # One line for each item returned in `get_activations_and_quantizers`.
        layer.activation = quantize_activations[0]

    # Configure how to quantize outputs (may be equivalent to activations).
    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class CustomLayer(keras.layers.Dense):
    pass


def _wrapper(model, layer_class=keras.layers.Dense):
    return [l for l in model.layers if isinstance(l, tfmot.quantization.keras.QuantizeWrapper)
            and isinstance(l.layer, layer_class)][0]


def _used_kernel(wrapper):
    """The kernel the layer computes with at inference (fake-quantized)."""
    return keras.ops.convert_to_numpy(wrapper.transformed_weights(False)[0])


def test_quantize_custom_keras_layer(digits, tmp_path):
    model = quantize_annotate_model(keras.Sequential([
        quantize_annotate_layer(CustomLayer(20, input_shape=(64,)), DefaultDenseQuantizeConfig()),
        keras.layers.Flatten(),
    ]))
    # `quantize_apply` mentions the config and the custom layer in a scope.
    with quantize_scope({"DefaultDenseQuantizeConfig": DefaultDenseQuantizeConfig,
                         "CustomLayer": CustomLayer}):
        quant_aware_model = tfmot.quantization.keras.quantize_apply(model)
    quant_aware_model.summary()
    wrapper = _wrapper(quant_aware_model, CustomLayer)
    assert isinstance(wrapper.quantize_config, DefaultDenseQuantizeConfig)
    history = _train(quant_aware_model, digits)
    assert np.isfinite(history.history["loss"]).all()
    # The variable and the activation are back after every call.
    assert isinstance(wrapper.layer._kernel, keras.Variable)
    assert wrapper.layer.activation is keras.activations.linear
    # The layer computes with the quantized kernel and a quantized activation.
    x = digits[2][:16]
    kernel = _used_kernel(wrapper)
    levels = np.unique(kernel)
    assert 16 < len(levels) <= 256
    # Linear activation, then its quantizer with the range learned in training.
    post_activation = wrapper._activation_vars[0][0]
    expected = qz.fake_quant(
        x @ kernel + keras.ops.convert_to_numpy(wrapper.layer.bias),
        post_activation["min_var"], post_activation["max_var"],
    )
    out = keras.ops.convert_to_numpy(wrapper(x))
    step = float(post_activation["max_var"] - post_activation["min_var"]) / 255
    # Equal up to a rounding tie flipped by float summation order.
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(expected), atol=step * 1.01)
    # Saving and loading with the scope, as the guide says for custom objects.
    with quantize_scope({"DefaultDenseQuantizeConfig": DefaultDenseQuantizeConfig,
                         "CustomLayer": CustomLayer}):
        quant_aware_model.save(tmp_path / "custom.keras")
        loaded = keras.models.load_model(tmp_path / "custom.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               quant_aware_model.predict(x, verbose=0), atol=1e-6)


def test_custom_config_works_without_a_scope(digits):
    """tfmot allows annotation outside the scope; tfmot-lite also applies."""
    model = quantize_annotate_model(keras.Sequential([
        quantize_annotate_layer(CustomLayer(20, input_shape=(64,)), DefaultDenseQuantizeConfig()),
        keras.layers.Flatten(),
    ]))
    quant_aware_model = tfmot.quantization.keras.quantize_apply(model)
    assert isinstance(_wrapper(quant_aware_model, CustomLayer).quantize_config,
                      DefaultDenseQuantizeConfig)
    _train(quant_aware_model, digits)


def test_modify_quantization_parameters_4_bit(digits):
    class ModifiedDenseQuantizeConfig(DefaultDenseQuantizeConfig):
        # Configure weights to quantize with 4-bit instead of 8-bits.
        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, LastValueQuantizer(num_bits=4, symmetric=True,
                                                      narrow_range=False, per_axis=False))]

    model = quantize_annotate_model(keras.Sequential([
        # Pass in modified `QuantizeConfig` to modify this Dense layer.
        quantize_annotate_layer(keras.layers.Dense(20, input_shape=(64,)),
                                ModifiedDenseQuantizeConfig()),
        keras.layers.Flatten(),
    ]))
    with quantize_scope({"ModifiedDenseQuantizeConfig": ModifiedDenseQuantizeConfig}):
        quant_aware_model = tfmot.quantization.keras.quantize_apply(model)
    _train(quant_aware_model, digits)
    assert len(np.unique(_used_kernel(_wrapper(quant_aware_model)))) <= 16


def test_modify_parts_of_layer_to_quantize(digits):
    class ModifiedDenseQuantizeConfig(DefaultDenseQuantizeConfig):
        def get_activations_and_quantizers(self, layer):
            # Skip quantizing activations.
            return []

        def set_quantize_activations(self, layer, quantize_activations):
            # Empty since `get_activations_and_quantizers` returns an empty list.
            return

    model = quantize_annotate_model(keras.Sequential([
        quantize_annotate_layer(keras.layers.Dense(20, input_shape=(64,)),
                                ModifiedDenseQuantizeConfig()),
        keras.layers.Flatten(),
    ]))
    with quantize_scope({"ModifiedDenseQuantizeConfig": ModifiedDenseQuantizeConfig}):
        quant_aware_model = tfmot.quantization.keras.quantize_apply(model)
    _train(quant_aware_model, digits)
    wrapper = _wrapper(quant_aware_model)
    # No activation quantizer: the output is the float matmul of the
    # quantized kernel.
    assert not [w for w in wrapper.weights if "activation" in w.name]
    x = digits[2][:16]
    expected = x @ _used_kernel(wrapper) + keras.ops.convert_to_numpy(wrapper.layer.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(wrapper(x)), expected,
                               rtol=1e-5, atol=1e-5)


def test_use_custom_quantization_algorithm(digits):
    class FixedRangeQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
        """Quantizer which forces outputs to be between -1 and 1."""

        def build(self, tensor_shape, name, layer):
            # Not needed. No new variables needed.
            return {}

        def __call__(self, inputs, training, weights, **kwargs):
            return keras.ops.clip(inputs, -1.0, 1.0)

        def get_config(self):
            # Not needed. No __init__ parameters to serialize.
            return {}

    class ModifiedDenseQuantizeConfig(DefaultDenseQuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            # Use the custom algorithm instead of the default Quantizer.
            return [(layer.kernel, FixedRangeQuantizer())]

    model = quantize_annotate_model(keras.Sequential([
        quantize_annotate_layer(keras.layers.Dense(20, input_shape=(64,)),
                                ModifiedDenseQuantizeConfig()),
        keras.layers.Flatten(),
    ]))
    with quantize_scope({"ModifiedDenseQuantizeConfig": ModifiedDenseQuantizeConfig}):
        quant_aware_model = tfmot.quantization.keras.quantize_apply(model)
    wrapper = _wrapper(quant_aware_model)
    wrapper.layer.kernel.assign(np.full((64, 20), 3.0, "float32"))
    np.testing.assert_array_equal(_used_kernel(wrapper), np.ones((64, 20), "float32"))
    _train(quant_aware_model, digits)
