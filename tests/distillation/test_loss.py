"""The distillation loss is the documented formula, on hand computations."""

import keras
import numpy as np
import pytest

from tfmot_lite.distillation import distill, outputs, soft_target_loss
from distill_models import LOSS, dense_model


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _soft(teacher, student, temperature, weight=None):
    log_t = _log_softmax(teacher / temperature)
    log_s = _log_softmax(student / temperature)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(-1)
    if weight is not None:
        kl = kl * weight
    return temperature ** 2 * kl.mean()


def _cross_entropy(y, logits, weight=None):
    per_example = -_log_softmax(logits)[np.arange(len(y)), y]
    if weight is not None:
        per_example = per_example * weight
    return per_example.mean()


def test_soft_target_loss_is_t_squared_kl():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(2, 5, 7)).astype("float32") * 3
    weight = rng.uniform(size=5).astype("float32")
    for temperature in (1.0, 2.5, 8.0):
        got = float(soft_target_loss(teacher, student, temperature))
        assert got == pytest.approx(_soft(teacher, student, temperature), rel=1e-5)
        got = float(soft_target_loss(teacher, student, temperature, weight))
        assert got == pytest.approx(_soft(teacher, student, temperature, weight), rel=1e-5)
    # Identical distributions: nothing to learn.
    assert float(soft_target_loss(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 4, size=n)


def test_training_loss_mixes_task_soft_targets_and_full_regularization():
    x, y = _data()
    weight = np.linspace(0.5, 1.5, len(x)).astype("float32")
    student = dense_model(regularizer=keras.regularizers.L2(0.01), name="student")
    teacher = dense_model(name="teacher")
    distiller = distill(student, teacher, temperature=3.0, alpha=0.7)
    distiller.compile("sgd", LOSS)
    y_pred = distiller(x, training=True)  # collects the regularization term
    s = np.asarray(y_pred)
    t = np.asarray(teacher(x, training=False))
    kernel = np.asarray(student.layers[1].kernel)
    regularization = 0.01 * np.sum(kernel ** 2)

    got = float(distiller.compute_loss(x, y, y_pred, sample_weight=weight, training=True))
    want = (0.3 * _cross_entropy(y, s, weight) + 0.7 * _soft(t, s, 3.0, weight)
            + regularization)
    assert got == pytest.approx(want, rel=1e-5)

    # Evaluation: the task loss (and regularization) alone; no teacher.
    got = float(distiller.compute_loss(x, y, y_pred, sample_weight=weight, training=False))
    assert got == pytest.approx(_cross_entropy(y, s, weight) + regularization, rel=1e-5)


def test_alpha_zero_is_plain_training_and_alpha_one_ignores_labels():
    x, y = _data()
    student, teacher = dense_model(), dense_model()
    y_pred = student(x)
    s, t = np.asarray(y_pred), np.asarray(teacher(x))
    for alpha, want in ((0.0, _cross_entropy(y, s)), (1.0, _soft(t, s, 2.0))):
        distiller = distill(student, teacher, temperature=2.0, alpha=alpha)
        distiller.compile("sgd", LOSS)
        got = float(distiller.compute_loss(x, y, y_pred, training=True))
        assert got == pytest.approx(want, rel=1e-5)


def test_softmax_outputs_are_read_as_log_probabilities():
    """A student (or teacher) ending in softmax gives the soft loss its
    logits twin gives: log p is its logits up to a constant."""
    x, y = _data()
    teacher = dense_model(activation="softmax")
    logits_student = dense_model()
    softmax_student = dense_model(activation="softmax")
    softmax_student.set_weights(logits_student.get_weights())
    losses = []
    for student in (logits_student, softmax_student):
        distiller = distill(student, teacher, temperature=2.0, alpha=1.0)
        distiller.compile("sgd", keras.losses.SparseCategoricalCrossentropy())
        assert distiller.student_outputs == (
            outputs.PROBABILITIES if student is softmax_student else outputs.LOGITS)
        assert distiller.teacher_outputs == outputs.PROBABILITIES
        losses.append(float(distiller.compute_loss(x, y, student(x), training=True)))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    t = np.log(np.asarray(teacher(x)))
    assert losses[0] == pytest.approx(_soft(t, np.asarray(logits_student(x)), 2.0), rel=1e-4)


def test_output_kind_is_read_through_optimization_wrappers():
    import tfmot_lite as tfmot

    model = dense_model(activation="softmax")
    sk = tfmot.sparsity.keras
    pruned = sk.prune_low_magnitude(model, pruning_schedule=sk.ConstantSparsity(0.5, 0))
    qat = tfmot.quantization.keras.quantize_model(model)
    nested = keras.Sequential([keras.Input((6,)), model])
    for wrapped in (pruned, qat, nested):
        assert outputs.output_kind(wrapped, "student") == outputs.PROBABILITIES
    assert outputs.output_kind(dense_model(), "student") == outputs.LOGITS
