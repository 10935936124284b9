"""The teacher is only called: never trained, never changed, not even its
`trainable` flags; the student is the model `fit` trains, in place."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from distill_models import LOSS, images, same_weights, snapshot, trained_teacher


@pytest.mark.slow
def test_teacher_is_frozen_without_being_touched_and_the_student_trains():
    teacher = trained_teacher()
    flags = [layer.trainable for layer in teacher.layers]
    saved = snapshot(teacher)  # BatchNorm moving statistics included
    student = tfmot.quantization.keras.quantize_model(teacher)
    student_before = snapshot(student)
    distiller = tfmot.distillation.distill(student, teacher)

    teacher_ids = {id(v) for v in teacher.weights}
    assert [id(v) for v in distiller.trainable_variables] == [
        id(v) for v in student.trainable_variables]
    assert not teacher_ids & {id(v) for v in distiller.trainable_weights}
    assert teacher_ids <= {id(v) for v in distiller.non_trainable_variables}
    assert teacher_ids <= {id(v) for v in distiller.non_trainable_weights}

    distiller.compile(keras.optimizers.Adam(1e-2), LOSS)
    x, y = images()
    distiller.fit(x, y, epochs=2, batch_size=8, verbose=0)

    assert same_weights(teacher, saved)
    assert teacher.trainable and [layer.trainable for layer in teacher.layers] == flags
    assert not same_weights(student, student_before)
    # No optimizer slots for the teacher: Adam holds its iteration count and
    # learning rate, and two slots per student weight.
    assert len(distiller.optimizer.variables) == 2 + 2 * len(student.trainable_variables)
    # `call` is the student's forward pass.
    np.testing.assert_allclose(distiller.predict(x, verbose=0), student.predict(x, verbose=0),
                               atol=1e-6)
