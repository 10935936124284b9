"""The code pattern of tfmot's "Sparsity preserving quantization aware
training (PQAT) Keras example" (g3doc/guide/combine/pqat_example), with
`import tfmot_lite as tfmot`, `import keras` and the bundled digits (16x16,
one channel) in place of MNIST.

What the guide shows: pruning to 50%, QAT loses the sparsity, PQAT keeps
it; the PQAT .tflite is smaller gzipped than the QAT one and keeps the
Keras accuracy; post-training quantization of the pruned model converts.
"""

import keras
import numpy as np
import pytest
from combine_guide_helpers import (
    eval_model,
    guide_model,
    gzipped_size,
    interpreter_for,
    load_digits,
    model_weights_sparsity,
    to_tflite,
)

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_pqat_example(digits):
    train_images, train_labels, test_images, test_labels = digits
    keras.utils.set_random_seed(0)
    model = guide_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, validation_split=0.1, epochs=4, verbose=0)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
            0.5, begin_step=0, frequency=100),
    }
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    pruned_model = prune_low_magnitude(model, **pruning_params)
    pruned_model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         optimizer=keras.optimizers.Adam(learning_rate=1e-5),
                         metrics=["accuracy"])
    pruned_model.fit(train_images, train_labels, epochs=3, validation_split=0.1,
                     callbacks=callbacks, verbose=0)

    stripped_pruned_model = tfmot.sparsity.keras.strip_pruning(pruned_model)
    for value in model_weights_sparsity(stripped_pruned_model).values():
        assert value == pytest.approx(0.5, abs=0.01)
    _, pruned_model_accuracy = pruned_model.evaluate(test_images, test_labels, verbose=0)

    # QAT
    qat_model = tfmot.quantization.keras.quantize_model(stripped_pruned_model)
    qat_model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    qat_model.fit(train_images, train_labels, batch_size=128, epochs=1,
                  validation_split=0.1, verbose=0)

    # PQAT
    quant_aware_annotate_model = tfmot.quantization.keras.quantize_annotate_model(
        stripped_pruned_model)
    pqat_model = tfmot.quantization.keras.quantize_apply(
        quant_aware_annotate_model,
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    pqat_model.compile(optimizer="adam",
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    pqat_model.fit(train_images, train_labels, batch_size=128, epochs=1,
                   validation_split=0.1, verbose=0)

    qat_sparsity = model_weights_sparsity(qat_model)
    pqat_sparsity = model_weights_sparsity(pqat_model)
    assert len(qat_sparsity) == len(pqat_sparsity) == 2  # conv and dense kernels
    assert all(value < 0.1 for value in qat_sparsity.values())  # QAT lost it
    assert all(value == pytest.approx(0.5, abs=0.01) for value in pqat_sparsity.values())

    qat_tflite_model = to_tflite(qat_model)
    pqat_tflite_model = to_tflite(pqat_model)
    print("QAT / PQAT gzipped bytes:", gzipped_size(qat_tflite_model),
          gzipped_size(pqat_tflite_model))
    assert gzipped_size(pqat_tflite_model) < gzipped_size(qat_tflite_model)

    pqat_test_accuracy = eval_model(interpreter_for(pqat_tflite_model), test_images,
                                    test_labels)
    print("Pruned and quantized TFLite test accuracy:", pqat_test_accuracy,
          "pruned TF test accuracy:", pruned_model_accuracy)
    assert pqat_test_accuracy >= pruned_model_accuracy - 0.02

    def representative_data_gen():
        for image in train_images[:200]:
            yield [np.expand_dims(image, axis=0).astype(np.float32)]

    post_training_tflite_model = to_tflite(stripped_pruned_model, representative_data_gen)
    post_training_test_accuracy = eval_model(
        interpreter_for(post_training_tflite_model), test_images, test_labels)
    print("Post-training quantization TFLite test accuracy:", post_training_test_accuracy)
    assert post_training_test_accuracy >= pruned_model_accuracy - 0.05
