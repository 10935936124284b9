"""tfmot guide `pruning/pruning_for_on_device_inference` (XNNPACK), with
`import tfmot_lite as tfmot`.

The guide's CNN (explicit padding, 3x3 stride-2 start convolution, depthwise
and 1x1 convolutions, a spatial mean with `keepdims=True`), pruned 25% -> 75%
with `PruneForLatencyOnXNNPack`, stripped and converted with
`Optimize.EXPERIMENTAL_SPARSITY`: only the 1x1 convolutions are pruned and
the file stores them sparse for XNNPACK. Changed: digits at 32x32x3 instead
of CIFAR-10, one epoch of 8 steps and `frequency=2`.
"""

import keras
import numpy as np
import pytest
from guide_helpers import summary_text, total_params, zero_fraction

import tfmot_lite as tfmot
from tfmot_lite import data
from tfmot_lite.export import inspect_tflite

pytestmark = pytest.mark.slow


def guide_model():
    return keras.Sequential([
        keras.layers.InputLayer(input_shape=(32, 32, 3)),
        keras.layers.ZeroPadding2D(padding=1),
        keras.layers.Conv2D(filters=8, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(filters=16, kernel_size=(1, 1)),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.ZeroPadding2D(padding=1),
        keras.layers.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(filters=32, kernel_size=(1, 1)),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(keepdims=True),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])


def test_pruning_for_on_device_inference_with_xnnpack_guide():
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tflite")
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=32)
    x_train, y_train = x_train[:256], y_train[:256]

    model = guide_model()
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=1, verbose=0)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    batch_size, epochs = 32, 1
    end_step = int(np.ceil(len(x_train) / batch_size)) * epochs  # 8
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.25, final_sparsity=0.75, begin_step=0, end_step=end_step,
            frequency=2),
        "pruning_policy": tfmot.sparsity.keras.PruneForLatencyOnXNNPack(),
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    assert "0 (unbuilt)" not in summary_text(model_for_pruning) and total_params(model_for_pruning) > 0
    pruned = [l for l in model_for_pruning.layers if isinstance(l, tfmot.sparsity.keras.PruneLowMagnitude)]
    assert [l.layer.kernel_size for l in pruned] == [(1, 1), (1, 1)]  # the policy's choice

    model_for_pruning.compile(optimizer="adam",
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
    model_for_pruning.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=0)

    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    for layer in model_for_export.layers:
        if type(layer) is keras.layers.Conv2D:
            expected = 0.75 if layer.kernel_size == (1, 1) else 0.0
            assert zero_fraction(layer.kernel) == pytest.approx(expected, abs=0.01), layer.name

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    pruned_tflite_model = converter.convert()
    report = inspect_tflite(pruned_tflite_model)
    sparse = [op for op in report.operators if op.sparse_storage]
    assert len(sparse) == 2 and all(op.weight_shape[1:3] == (1, 1) for op in sparse), report.table()
    assert report.sparse_ready, report.reasons()

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=pruned_tflite_model)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    expected = model_for_export.predict(x_test[:8], verbose=0)
    for image, want in zip(x_test[:8], expected):
        interpreter.set_tensor(inp, image[None].astype(np.float32))
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(out)[0], want, atol=1e-4)
