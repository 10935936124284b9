"""tfmot guide `pruning/pruning_with_sparsity_2_by_4`, with `import tfmot_lite as tfmot`.

A Sequential whose first layer, a pruned Conv2D, is given `input_shape=`;
one Conv2D and one Dense pruned 2:4 (`sparsity_m_by_n=(2, 4)`), the first
Conv2D to 50% unstructured; train, strip, convert to TFLite and check the
2:4 pattern in the converted weights. Changed: digits at 16x16, narrower
layers, `frequency=5` for the 50% layer (the guide's 100 needs MNIST's
steps).
"""

import keras
import numpy as np
import pytest
from guide_helpers import digits_28x28_stand_in, to_tflite, total_params, zero_fraction

import tfmot_lite as tfmot

pytestmark = pytest.mark.slow


def test_pruning_with_sparsity_2_by_4_guide():
    pytest.importorskip("tensorflow")
    (train_images, train_labels), (test_images, test_labels) = digits_28x28_stand_in()
    train_images, test_images = train_images[..., None], test_images[..., None]

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params_2_by_4 = {"sparsity_m_by_n": (2, 4)}
    pruning_params_sparsity_0_5 = {
        "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
            target_sparsity=0.5, begin_step=0, frequency=5),
    }
    model = keras.Sequential([
        prune_low_magnitude(
            keras.layers.Conv2D(8, 5, padding="same", activation="relu",
                                input_shape=(16, 16, 1), name="pruning_sparsity_0_5"),
            **pruning_params_sparsity_0_5),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        keras.layers.BatchNormalization(),
        prune_low_magnitude(keras.layers.Conv2D(16, 5, padding="same", name="structural_pruning"),
                            **pruning_params_2_by_4),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        keras.layers.Flatten(),
        prune_low_magnitude(keras.layers.Dense(64, activation="relu", name="structural_pruning_dense"),
                            **pruning_params_2_by_4),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(10),
    ])
    assert model.built and total_params(model) > 0

    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_images, train_labels, batch_size=64, epochs=3, validation_split=0.1,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=0)
    _, pruned_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    assert pruned_model_accuracy > 0.6  # from scratch, 60 steps; chance is 0.1

    model = tfmot.sparsity.keras.strip_pruning(model)
    layers = {layer.name: layer for layer in model.layers}
    assert zero_fraction(layers["pruning_sparsity_0_5"].kernel) == pytest.approx(0.5, abs=0.01)
    for name in ("structural_pruning", "structural_pruning_dense"):
        assert tfmot.sparsity.keras.is_pruned_m_by_n(layers[name].kernel, (2, 4)), name

    # In the .tflite file, FULLY_CONNECTED weights are (out, in): every 4
    # consecutive input weights of each output hold at least 2 zeros.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=to_tflite(model))
    interpreter.allocate_tensors()
    in_features = layers["structural_pruning_dense"].kernel.shape[0]
    found = 0
    for detail in interpreter.get_tensor_details():
        if tuple(detail["shape"]) == (64, in_features):
            weights = interpreter.get_tensor(detail["index"])
            groups = weights.reshape(64, -1, 4)
            assert ((groups == 0).sum(axis=-1) >= 2).all()
            found += 1
    assert found == 1
    assert np.isfinite(model.predict(test_images[:4], verbose=0)).all()
