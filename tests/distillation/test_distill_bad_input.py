"""Bad arguments are ValueErrors that name the argument and the fix, raised
before anything is built."""

import keras
import numpy as np
import pytest

from distill_models import dense_model
from tfmot_lite.distillation import Distiller, distill

L = keras.layers


@pytest.fixture
def pair():
    return dense_model(name="student"), dense_model(name="teacher")


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), "4", None, True])
def test_temperature_must_be_positive(pair, temperature):
    with pytest.raises(ValueError, match=r"`temperature` must be a number > 0.*default 1\)"):
        distill(*pair, temperature=temperature)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("inf"), "0.5", None, False])
def test_alpha_must_be_in_unit_interval(pair, alpha):
    with pytest.raises(ValueError, match=r"`alpha` must be a number in \[0, 1\].*0 trains on"):
        distill(*pair, alpha=alpha)


def test_models_must_be_keras_models(pair):
    student, teacher = pair
    with pytest.raises(ValueError, match="`teacher` must be a keras.Model.*trained float"):
        distill(student, lambda x: x)
    with pytest.raises(ValueError, match="`student` must be a keras.Model"):
        distill(L.Dense(4), teacher)


def test_output_shapes_must_match():
    with pytest.raises(ValueError, match=r"`teacher` and `student` outputs differ: teacher "
                       r"'teacher' \(None, 5\), student 'student' \(None, 4\).*same"):
        distill(dense_model(name="student"), dense_model(classes=5, name="teacher"))
    with pytest.raises(ValueError, match="inputs differ.*same input shape"):
        distill(dense_model(), dense_model(features=7))


def test_one_class_score_is_refused():
    with pytest.raises(ValueError, match=r"at least 2 classes.*Dense\(2\)"):
        distill(dense_model(classes=1), dense_model(classes=1))


def test_sigmoid_outputs_are_refused():
    with pytest.raises(ValueError, match=r"`teacher` \('t'\) ends in layer .* activation "
                       r"'sigmoid'.*activation=None"):
        distill(dense_model(), dense_model(activation="sigmoid", name="t"))


def test_several_outputs_are_refused():
    inputs = keras.Input((6,))
    two = keras.Model(inputs, [L.Dense(4)(inputs), L.Dense(4)(inputs)], name="two")
    with pytest.raises(ValueError, match=r"`student` \('two'\) has 2 outputs.*outputs\[k\]"):
        distill(two, dense_model())


def test_shared_weights_are_refused(pair):
    student, teacher = pair
    with pytest.raises(ValueError, match="same model.*clone_model"):
        distill(teacher, teacher)
    head = keras.Model(teacher.input, L.Dense(4)(teacher.layers[1].output), name="head")
    with pytest.raises(ValueError, match=r"shares 2 weight\(s\) with `teacher`.*clone_model"):
        distill(head, teacher)


def test_teacher_must_be_built():
    unbuilt = keras.Sequential([L.Dense(4)], name="fresh")
    with pytest.raises(ValueError, match=r"`teacher` \('fresh'\) is not built"):
        distill(dense_model(), unbuilt)


def test_nothing_is_changed_by_a_refused_call(pair):
    student, teacher = pair
    before = [np.array(w) for w in student.get_weights() + teacher.get_weights()]
    with pytest.raises(ValueError):
        Distiller(student, teacher, alpha=2)
    after = student.get_weights() + teacher.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert student.trainable and teacher.trainable
