"""QAT on the shared architecture: WeightTransformWrapper, graph.rewrite /
strip / core_layer, the scheme deciding, per-tensor Conv-BN folding."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_builders import dense_model

from tfmot_lite import export
from tfmot_lite.core import graph, weight_wrapper
from tfmot_lite.example_models import build_cnn
from tfmot_lite.quantization import keras as quantize

L = keras.layers


def _x(n=16, shape=(12,)):
    return np.random.default_rng(0).normal(size=(n, *shape)).astype("float32")


def test_wrapper_is_a_weight_transform_wrapper_with_slots_found_once(monkeypatch):
    qat = quantize.quantize_model(dense_model(12, head_activation="softmax"))
    wrappers = [l for l in qat.layers if isinstance(l, quantize.QuantizeWrapper)]
    assert len(wrappers) == 2
    assert all(isinstance(w, weight_wrapper.WeightTransformWrapper) for w in wrappers)
    hidden = wrappers[0]
    assert hidden._slots == [(hidden.layer, "_kernel")]
    calls = []
    real = weight_wrapper.find_weight_slots
    monkeypatch.setattr(weight_wrapper, "find_weight_slots",
                        lambda *a: calls.append(a) or real(*a))
    qat.compile(optimizer="sgd", loss="mse")
    qat.fit(_x(), np.zeros((16, 3)), epochs=1, verbose=0)
    assert calls == []  # no per-call slot search
    assert graph.core_layer(hidden) is hidden.layer


def test_softmax_activation_slot_and_restore():
    qat = quantize.quantize_model(dense_model(12, head_activation="softmax"))
    head = [l for l in qat.layers if isinstance(l, quantize.QuantizeWrapper)][-1]
    assert head._activation_slots == [(head.layer, "activation")]
    qat.predict(_x(), verbose=0)
    assert head.layer.activation is keras.activations.softmax


def test_strip_quantization_bakes_fake_quantized_weights():
    x = _x(64, (32, 32, 3))
    model = build_cnn((32, 32, 3), 10)
    qat = quantize.quantize_model(model)
    qat.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    qat.fit(x, np.zeros((64, 10)), epochs=1, verbose=0, batch_size=64)
    stripped = quantize.strip_quantization(qat)
    kinds = {type(l).__name__ for l in stripped.layers}
    assert not kinds & {"QuantizeWrapperV2", "QuantizeConvBatchNorm", "QuantizeLayer"}
    # The QAT model is untouched and both compute nearly the same thing
    # (the stripped model has no activation quantization).
    ref = qat.predict(x, verbose=0)
    assert np.abs(stripped.predict(x, verbose=0) - ref).max() < 0.1 * np.abs(ref).max()
    dense = stripped.layers[-1]
    assert len(np.unique(dense.kernel.numpy())) <= 255
    fused = [l for l in qat.layers if isinstance(l, quantize.QuantizeConvBatchNorm)][0]
    assert graph.core_layer(fused) is fused.conv
    conv = [l for l in stripped.layers if isinstance(l, L.Conv2D)][0]
    kernel = conv.kernel.numpy()
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127.0
    np.testing.assert_allclose(kernel / scale, np.round(kernel / scale), atol=1e-3)


@pytest.mark.parametrize("conv", [L.Conv2DTranspose(4, 3), L.Dense(4), L.Conv3D(4, 3)])
def test_conv_bn_refuses_a_layer_whose_channels_are_not_on_the_kernels_last_axis(conv):
    with pytest.raises(ValueError, match=f"'{conv.name}'.*cannot fold a BatchNormalization"):
        quantize.QuantizeConvBatchNorm(conv, L.BatchNormalization())


def test_per_tensor_conv_bn_trains_on_the_folded_kernel():
    conv = L.Conv2D(4, 3, use_bias=True)
    bn = L.BatchNormalization()
    fused = quantize.QuantizeConvBatchNorm(conv, bn, "relu", per_axis=False)
    x = _x(8, (6, 6, 3))
    fused.build(x.shape)
    rng = np.random.default_rng(1)
    bn.gamma.assign(rng.uniform(0.2, 3.0, 4).astype("float32"))  # unequal channel scales
    bn.beta.assign(rng.normal(size=4).astype("float32"))
    conv.bias.assign(rng.normal(size=4).astype("float32"))
    y = keras.ops.convert_to_numpy(fused(x, training=True))
    # Reference: batch statistics folded into the kernel, quantized per tensor.
    z = tf.nn.conv2d(x, conv.kernel.numpy(), 1, "VALID").numpy() + conv.bias.numpy()
    mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    s = bn.gamma.numpy() / np.sqrt(var + bn.epsilon)
    folded = conv.kernel.numpy() * s
    m = np.abs(folded).max()
    q = np.round(folded / (m / 127)) * (m / 127)
    ref = tf.nn.conv2d(x, q, 1, "VALID").numpy() + bn.beta.numpy() + (conv.bias.numpy() - mean) * s
    ref = np.maximum(ref, 0)
    out_q = fused.output_quantizer
    assert out_q is not None
    step = (ref.max() - min(ref.min(), 0)) / 255
    assert np.abs(y - ref).max() <= 1.5 * step + 1e-5


@pytest.mark.slow
def test_disable_per_axis_trained_model_matches_int8_export(digits32):
    (x, y), (x_test, _) = digits32
    keras.utils.set_random_seed(0)
    model = build_cnn((32, 32, 3), 10)
    scheme = quantize.default_8bit.Default8BitQuantizeScheme(disable_per_axis=True)
    qat = quantize.quantize_model(model, scheme)
    fused = [l for l in qat.layers if isinstance(l, quantize.QuantizeConvBatchNorm)]
    assert fused and not any(l.per_axis for l in fused)
    qat.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x[:512], y[:512], epochs=2, batch_size=32, verbose=0)
    flatbuffer = export.to_tflite(qat, optimizations=[tf.lite.Optimize.DEFAULT])
    int8 = export.TFLiteModel(flatbuffer).predict(x_test[:200])
    ref = qat.predict(x_test[:200], verbose=0)
    assert np.mean(int8.argmax(-1) == ref.argmax(-1)) >= 0.99
    assert np.abs(int8 - ref).max() <= 0.1 * np.abs(ref).max()


class _FourBitDenseRegistry(quantize.QuantizeRegistry):
    """A user's registry: Dense weights 4-bit, nothing else quantized."""

    def supports(self, layer):
        return True

    def get_quantize_config(self, layer):
        if isinstance(layer, L.Dense):
            return quantize.Default8BitQuantizeConfig(
                ["kernel"], [], True,
                quantize.quantizers.LastValueQuantizer(4, False, True, True),
            )
        return None


class _UserScheme(quantize.QuantizeScheme):
    def get_layout_transformer(self):
        return quantize.QuantizeLayoutTransform()  # rewrites nothing

    def get_quantize_registry(self):
        return _FourBitDenseRegistry()


def test_users_scheme_is_honoured():
    model = build_cnn((32, 32, 3), 10)
    qat = quantize.quantize_model(model, _UserScheme())
    kinds = [type(l).__name__ for l in qat.layers]
    # No Conv-BN folding (the user's transform), only the Dense wrapped.
    assert "QuantizeConvBatchNorm" not in kinds and "BatchNormalization" in kinds
    assert kinds.count("QuantizeWrapperV2") == 1
    dense = qat.layers[-1]
    assert isinstance(dense, quantize.QuantizeWrapper)
    qat.compile(optimizer="sgd", loss="mse")
    x = _x(8, (32, 32, 3))
    qat.fit(x, np.zeros((8, 10)), epochs=1, verbose=0)
    assert len(np.unique(keras.ops.convert_to_numpy(dense.transformed_weights(False)[0]))) <= 15


def test_scheme_bit_widths_reach_the_fused_layers():
    scheme = quantize.experimental.default_n_bit.DefaultNBitQuantizeScheme(
        num_bits_weight=4, num_bits_activation=6
    )
    qat = quantize.quantize_model(build_cnn((32, 32, 3), 10), scheme)
    fused = [l for l in qat.layers if isinstance(l, quantize.QuantizeConvBatchNorm)]
    assert {(l.num_bits_weight, l.num_bits_activation) for l in fused} == {(4, 6)}
    assert qat.layers[1].quantizer.num_bits == 6  # the input QuantizeLayer


def test_pruned_or_clustered_model_is_refused_with_the_fix():
    import tfmot_lite as tfmot

    pruned = tfmot.sparsity.keras.prune_low_magnitude(dense_model(12, head_activation="softmax"))
    with pytest.raises(ValueError, match=r"strip_pruning\(model\)"):
        quantize.quantize_model(pruned)
    clustered = tfmot.clustering.keras.cluster_weights(
        dense_model(12, head_activation="softmax"), number_of_clusters=4)
    with pytest.raises(ValueError, match=r"strip_clustering\(model\)"):
        quantize.quantize_model(clustered)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    assert quantize.quantize_model(stripped) is not None


def test_quantize_config_must_be_an_instance():
    with pytest.raises(ValueError, match="QuantizeConfig` instance"):
        quantize.QuantizeWrapperV2(L.Dense(2), {"class_name": "x"})
    with pytest.raises(ValueError, match="QuantizeConfig` instance"):
        quantize.QuantizeAnnotate(L.Dense(2), "config")


def test_config_that_does_not_assign_is_a_clear_error():
    class Lazy(quantize.Default8BitQuantizeConfig):
        def set_quantize_weights(self, layer, quantize_weights):
            pass

    dense = L.Dense(2)
    wrapper = quantize.QuantizeWrapperV2(dense, Lazy(["kernel"]))
    with pytest.raises(ValueError, match="did not assign.*set_quantize_weights|"
                       "set_quantize_weights did not assign"):
        wrapper.build((None, 3))
