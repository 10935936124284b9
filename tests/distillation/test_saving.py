"""A distiller round-trips through `.keras` with no custom_objects and
resumes training; `student_of` is the hook callbacks and export use."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from distill_models import LOSS, dense_model
from tfmot_lite.distillation import Distiller, student_of


def test_distiller_saves_and_loads_with_its_settings(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 4, size=32)
    teacher = dense_model(name="teacher")
    sk = tfmot.sparsity.keras
    student = sk.prune_low_magnitude(
        dense_model(name="student"), pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
    distiller = tfmot.distillation.distill(student, teacher, temperature=2.5, alpha=0.6)
    distiller.compile(keras.optimizers.Adam(1e-2), LOSS)
    distiller.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[sk.UpdatePruningStep()])
    distiller.save(tmp_path / "distiller.keras")

    loaded = keras.models.load_model(tmp_path / "distiller.keras")
    assert isinstance(loaded, Distiller)
    assert (loaded.temperature, loaded.alpha) == (2.5, 0.6)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0),
                               atol=1e-6)
    np.testing.assert_array_equal(loaded.teacher.get_weights()[0], teacher.get_weights()[0])
    assert len(loaded.trainable_variables) == len(student.trainable_variables)
    # It resumes: the optimizer state came back and training goes on.
    assert int(loaded.optimizer.iterations) == int(distiller.optimizer.iterations)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[sk.UpdatePruningStep()])
    assert int(loaded.optimizer.iterations) == 2 * int(distiller.optimizer.iterations)


def test_student_of():
    student, teacher = dense_model(), dense_model()
    assert student_of(Distiller(student, teacher)) is student
    assert student_of(student) is student

    class Holder(keras.Model):  # anything with a Keras `.student`, like keras.distillation
        pass

    holder = Holder()
    holder.student = student
    assert student_of(holder) is student


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_bounds_of_alpha_are_accepted(alpha):
    assert Distiller(dense_model(), dense_model(), alpha=alpha).alpha == alpha
