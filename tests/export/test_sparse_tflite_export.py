"""to_sparse_tflite: strip + EXPERIMENTAL_SPARSITY conversion."""

import contextlib
import io

import keras
import numpy as np

import tfmot_lite as tfmot
from tfmot_lite import export

sk = tfmot.sparsity.keras
L = keras.layers


def pruned_cnn(digits):
    (x, y), _ = digits
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        L.ZeroPadding2D(1),
        L.Conv2D(8, 3, strides=2),
        L.ReLU(),
        L.Conv2D(32, 1, name="pw"),
        L.ReLU(),
        L.GlobalAveragePooling2D(keepdims=True),
        L.Flatten(),
        L.Dense(10),
    ])
    pruned = sk.prune_low_magnitude(
        model,
        pruning_schedule=sk.ConstantSparsity(0.8, begin_step=0, frequency=1),
        pruning_policy=sk.PruneForLatencyOnXNNPack(),
    )
    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pruned.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0,
               callbacks=[sk.UpdatePruningStep()])
    return pruned, x[:16]


def test_sparse_export_runs_like_the_pruned_model(digits32, tmp_path):
    pruned, sample = pruned_cnn(digits32)
    path = tmp_path / "pruned.tflite"
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = export.to_sparse_tflite(pruned, path=str(path))
        plain = export.to_tflite(sk.strip_pruning(pruned))
    assert path.read_bytes() == flatbuffer
    # The pruned model keeps its wrappers: stripping worked on a copy.
    assert any(isinstance(layer, sk.PruneLowMagnitude) for layer in pruned.layers)

    sparse_report = export.inspect_tflite(flatbuffer)
    assert sparse_report.densify_count == 1
    assert [op.sparse_storage for op in sparse_report.by_type("CONV_2D")] == [False, True]
    assert export.inspect_tflite(plain).densify_count == 0

    expected = keras.ops.convert_to_numpy(pruned(sample, training=False))
    got = export.TFLiteModel(flatbuffer).predict(sample)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_stripped_models_export_as_they_are(digits32):
    pruned, _ = pruned_cnn(digits32)
    stripped = sk.strip_pruning(pruned)
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = export.to_sparse_tflite(stripped)
    report = export.inspect_tflite(flatbuffer)
    (pointwise,) = [op for op in report.by_type("CONV_2D") if op.sparse_storage]
    assert pointwise.zero_fraction >= 0.79
    assert report.sparse_ready, report.reasons
