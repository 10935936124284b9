"""The Proof on the bundled digits: PQAT, CQAT and PCQAT keep zeros and
clusters in the exported int8 kernels, and the int8 models are accurate and
agree with their Keras models."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tflite_helpers import kernel_stats

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.example_models import build_cnn

pytestmark = pytest.mark.slow

qk = tfmot.quantization.keras
combine = tfmot.experimental.combine


def _fit(model, x, y, lr, epochs, callbacks=()):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return model


@pytest.fixture(scope="module")
def results(digits32):
    (x, y), (xt, yt) = digits32
    keras.utils.set_random_seed(0)
    sparsity, clustering = tfmot.sparsity.keras, tfmot.clustering.keras
    # The digits CNN with a 1x1 Conv-BN-ReLU stage before the pooling.
    float_model = _fit(build_cnn(pointwise_filters=64), x, y, 3e-3, 6)
    float_acc = float(float_model.evaluate(xt, yt, verbose=0)[1])

    pruned = sparsity.prune_low_magnitude(
        float_model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=10))
    _fit(pruned, x, y, 1e-3, 2, [sparsity.UpdatePruningStep()])
    pruned = sparsity.strip_pruning(pruned)

    clustered = clustering.strip_clustering(
        _fit(clustering.cluster_weights(float_model, 8), x, y, 1e-3, 1))
    sparse_clustered = clustering.strip_clustering(_fit(
        clustering.cluster_weights(pruned, 8, preserve_sparsity=True), x, y, 1e-3, 1))

    variants = {
        "pqat": (pruned, combine.Default8BitPrunePreserveQuantizeScheme()),
        "cqat": (clustered, combine.Default8BitClusterPreserveQuantizeScheme(False)),
        "pcqat": (sparse_clustered, combine.Default8BitClusterPreserveQuantizeScheme(True)),
    }
    out = {"float_acc": float_acc}
    for name, (source, scheme) in variants.items():
        model = qk.quantize_apply(qk.quantize_annotate_model(source), scheme)
        _fit(model, x, y, 1e-4, 1)
        flatbuffer = export.to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT])
        int8_pred = export.TFLiteModel(flatbuffer).predict(xt).argmax(-1)
        keras_pred = model.predict(xt, verbose=0).argmax(-1)
        out[name] = {
            "stats": kernel_stats(flatbuffer),
            "accuracy": float(np.mean(int8_pred == yt)),
            "agreement": float(np.mean(int8_pred == keras_pred)),
        }
        print(f"\n{name}: int8 acc {out[name]['accuracy']:.4f} (float {float_acc:.4f}), "
              f"agreement {out[name]['agreement']:.4f}")
    return out


def _check_model_quality(result, float_acc):
    assert result["accuracy"] >= float_acc - 0.02
    assert result["agreement"] >= 0.99


def test_pqat_keeps_pruned_zeros_in_int8_kernels(results):
    stats = results["pqat"]["stats"]
    assert [s.shape[1:3] for s in stats[:4]] == [(3, 3), (3, 3), (3, 3), (1, 1)]
    for s in stats:  # every conv (the 1x1 included) and the Dense kernel
        assert s.dtype == "int8"
        assert s.zero_fraction >= 0.49, s
    _check_model_quality(results["pqat"], results["float_acc"])


def test_cqat_keeps_at_most_8_int8_values_per_kernel(results):
    for s in results["cqat"]["stats"]:
        # Convolutions are quantized per output channel: <= 8 codes per
        # channel; the Dense kernel per tensor: <= 8 codes in all.
        assert s.max_unique_per_channel <= 8, s
        if s.op_type == "FULLY_CONNECTED":
            assert s.unique_values <= 8, s
    _check_model_quality(results["cqat"], results["float_acc"])


def test_pcqat_keeps_zeros_and_clusters(results):
    for s in results["pcqat"]["stats"]:
        assert s.zero_fraction >= 0.49, s
        assert s.max_unique_per_channel <= 8, s
        if s.op_type == "FULLY_CONNECTED":
            assert s.unique_values <= 8, s
    _check_model_quality(results["pcqat"], results["float_acc"])
