"""tfmot guide `pruning/pruning_with_keras`, with `import tfmot_lite as tfmot`.

Train the MNIST CNN, prune it 50% -> 80% with PolynomialDecay while
fine-tuning (UpdatePruningStep + PruningSummaries), strip, and see the
gzipped Keras and TFLite files shrink; quantize the pruned model
post-training and keep its accuracy. Changed: digits at 16x16 instead of
MNIST, and `frequency=2` because 22 steps never reach tfmot's default of 100.
"""

import keras
import numpy as np
import pytest
from guide_helpers import (
    compile_for_digits,
    digits_28x28_stand_in,
    gzipped_bytes_size,
    gzipped_keras_size,
    tflite_accuracy,
    to_tflite,
    total_params,
    zero_fraction,
)
from model_builders import mnist_cnn

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow


def test_pruning_with_keras_guide(tmp_path):
    tf = pytest.importorskip("tensorflow")
    (train_images, train_labels), (test_images, test_labels) = digits_28x28_stand_in()

    model = compile_for_digits(mnist_cnn())
    model.fit(train_images, train_labels, epochs=4, validation_split=0.1, verbose=0)
    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    batch_size = 128
    epochs = 2
    validation_split = 0.1
    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step,
            frequency=2),
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # The summary counts the model's weights plus masks, thresholds and steps.
    assert total_params(model_for_pruning) == 2 * 5880 + 2 * 108 + 12 + 10 + 4 > 0

    logdir = str(tmp_path / "logs")
    callbacks = [
        tfmot.sparsity.keras.UpdatePruningStep(),
        tfmot.sparsity.keras.PruningSummaries(log_dir=logdir),
    ]
    model_for_pruning.fit(train_images, train_labels, batch_size=batch_size, epochs=epochs,
                          validation_split=validation_split, callbacks=callbacks, verbose=0)
    _, model_for_pruning_accuracy = model_for_pruning.evaluate(test_images, test_labels, verbose=0)
    assert model_for_pruning_accuracy >= baseline_model_accuracy - 0.1
    assert any(p.name.startswith("events") for p in (tmp_path / "logs" / "metrics").iterdir())

    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    for layer in model_for_export.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            assert zero_fraction(layer.kernel) == pytest.approx(0.8, abs=0.01), layer.name

    baseline_gz = gzipped_keras_size(model, tmp_path, "baseline")
    pruned_gz = gzipped_keras_size(model_for_export, tmp_path, "pruned")
    pruned_tflite = to_tflite(model_for_export)
    pruned_tflite_gz = gzipped_bytes_size(pruned_tflite, tmp_path, "pruned")
    assert pruned_gz < 0.7 * baseline_gz, (pruned_gz, baseline_gz)
    assert pruned_tflite_gz < pruned_gz

    quantized_and_pruned = to_tflite(model_for_export, [tf.lite.Optimize.DEFAULT])
    quantized_gz = gzipped_bytes_size(quantized_and_pruned, tmp_path, "quantized_and_pruned")
    assert quantized_gz < 0.5 * pruned_tflite_gz, (quantized_gz, pruned_tflite_gz)
    test_accuracy = tflite_accuracy(quantized_and_pruned, test_images, test_labels)
    assert test_accuracy >= model_for_pruning_accuracy - 0.02
