"""`distill(student, teacher)`: fine-tune a student with `model.fit` while a
frozen float teacher supplies soft targets (knowledge distillation).

Every technique here is a fine-tune of a trained float model, and that model
is the natural teacher: the student (pruned, channel-pruned, clustered,
quantization-aware, or a collaborative scheme) learns the teacher's whole
output distribution, not only the label, and recovers more of the accuracy
the optimization cost. The `Distiller` is a `keras.Model` around the
student, so `compile`, `fit`, callbacks and `BackupAndRestore` work as
usual; afterwards `distiller.student` is the trained model to strip and
export (`export_model(distiller)` exports the student too).
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.distillation import outputs
from tfmot_lite.distillation.soft_targets import as_logits, soft_target_loss

# Measured on the bundled digits (README "Distillation"), each technique at
# the demo's epochs, three seeds: T=1, alpha=0.5 lost least against plain
# fine-tuning (mean -1.1 to +0.4 points per technique), while the usual
# literature setting T=4, alpha=0.9 lost up to 4 points and T=2-4 with
# alpha=0.5 up to 2.5. The reason is the teacher: a float model trained at a
# constant learning rate is weaker on its own training data than the student
# becomes when fine-tuned at a lower rate, so a high temperature and weight
# pull the student towards the teacher's mistakes and the ranking of its wrong
# classes. T=1, alpha=0.5 trains towards the average of the label and the
# teacher's prediction: the teacher guides without overriding the labels.
# With a teacher clearly better than its students (longer trained, larger),
# raise both (T=2-4, alpha=0.7-0.9, as Hinton et al. 2015 did). With the
# demo's float model trained at a decaying rate (a steadier, stronger
# teacher) the ranking held on two seeds: T=2, alpha=0.7 lost 0.3 points more
# than the defaults on average over pruned 75%, PQAT and clustered 16, and
# T=4, alpha=0.9 0.6-0.9 more on every technique (one seed).
DEFAULT_TEMPERATURE = 1.0
DEFAULT_ALPHA = 0.5


def student_of(model):
    """The model that training updates: the `student` of a distillation
    model (tfmot-lite's `Distiller`, or any model holding a Keras model as
    `.student`, such as `keras.distillation.Distiller`), else `model`.

    Callbacks that act on optimization wrappers (`UpdatePruningStep`,
    `PruningSummaries`, `ClusteringSummaries`) look there, so they reach the
    student's layers and never the teacher's."""
    student = getattr(model, "student", None)
    return student if isinstance(student, keras.Model) else model


def _check_model(argument, model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`{argument}` must be a keras.Model; received {type(model).__name__}. "
            + ("Pass the trained float model the student came from."
               if argument == "teacher" else
               "Pass the model to fine-tune (pruned, clustered, quantization-aware ...).")
        )


def _check_temperature(temperature):
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number))
            or not np.isfinite(temperature) or temperature <= 0):
        raise ValueError(
            f"`temperature` must be a number > 0; received temperature={temperature!r}. "
            "It divides the logits before the softmax: 1 keeps the teacher's "
            f"distribution, larger values soften it (default {DEFAULT_TEMPERATURE:g})."
        )
    return float(temperature)


def _check_alpha(alpha):
    if (isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number))
            or not np.isfinite(alpha) or not 0.0 <= alpha <= 1.0):
        raise ValueError(
            f"`alpha` must be a number in [0, 1]; received alpha={alpha!r}. It "
            "weighs the teacher's soft targets against the task loss: 0 trains on "
            f"the labels only, 1 on the teacher only (default {DEFAULT_ALPHA:g})."
        )
    return float(alpha)


def _check_not_shared(student, teacher):
    """The teacher is frozen through its variables: a weight it shares with
    the student would be frozen in the student too."""
    if student is teacher:
        raise ValueError(
            "`student` and `teacher` are the same model. Distill into an optimized "
            "copy (prune_low_magnitude, cluster_weights, quantize_model ... return "
            "new models), or clone it: keras.models.clone_model(teacher)."
        )
    teacher_ids = {id(v) for v in teacher.weights}
    shared = [v.path for v in student.weights if id(v) in teacher_ids]
    if shared:
        raise ValueError(
            f"`student` ('{student.name}') shares {len(shared)} weight(s) with "
            f"`teacher` ('{teacher.name}'), e.g. '{shared[0]}': the teacher is "
            "never trained, so those weights would be frozen in the student. "
            "Build the student from a copy (keras.models.clone_model) or optimize "
            "it with a tfmot-lite entry point, which copies."
        )


@keras.saving.register_keras_serializable(package="tfmot_lite")
class Distiller(keras.Model):
    """A student trained against the task labels and a frozen teacher.

    The training loss is

        (1 - alpha) * task_loss(y, s)
        + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
        + regularization

    where `task_loss` is the loss given to `compile` (with its sample
    weights), `s` the student's and `t` the teacher's logits on the same
    batch, and `regularization` the student's `add_loss` and weight
    regularizer terms at their full weight. `evaluate` and validation report
    `task_loss` alone (the student's own quality; the teacher is not run).

    The teacher runs in inference mode (`training=False`: BatchNorm moving
    statistics, no dropout) and is never trained or changed: its weights are
    held as non-trainable by this model (the teacher's own `trainable` flag
    is left alone), get no gradient, no optimizer slots, and BatchNorm
    statistics are not updated. The student runs with `training=True`, so its
    wrappers tick as in a plain `fit`. `call` returns the student's output.

    Outputs: logits are assumed; a model whose last layer applies softmax is
    read as probabilities (`log p` serves as its logits), per model. A model
    ending in sigmoid, a teacher and a student whose output shapes differ, or
    a model with several outputs are refused (ValueError).

    Args:
      student: the model to train (any tfmot-lite technique, or plain Keras).
      teacher: the trained model whose predictions are the soft targets,
        usually the float model the student was made from.
      temperature: `T` > 0; softens both distributions (default 1: see
        `DEFAULT_TEMPERATURE` for the measurements behind the defaults).
      alpha: weight in [0, 1] of the soft targets against the task loss
        (default 0.5).
    """

    def __init__(self, student, teacher, temperature=DEFAULT_TEMPERATURE,
                 alpha=DEFAULT_ALPHA, name=None, **kwargs):
        _check_model("student", student)
        _check_model("teacher", teacher)
        temperature = _check_temperature(temperature)
        alpha = _check_alpha(alpha)
        if not teacher.built:
            raise ValueError(
                f"`teacher` ('{teacher.name}') is not built: it must be a trained "
                "model. Train it (or call it once on a batch) first."
            )
        _check_not_shared(student, teacher)
        student_kind = outputs.output_kind(student, "student")
        teacher_kind = outputs.output_kind(teacher, "teacher")
        outputs.check_same_outputs(student, teacher)
        super().__init__(name=name or f"distilled_{student.name}", **kwargs)
        self.student = student
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.student_outputs = student_kind
        self.teacher_outputs = teacher_kind
        if student.built:
            self.built = True

    # -- the teacher is frozen here, not by flipping its `trainable` flag --

    def _split(self, variables):
        """`(student's, teacher's)` of `variables`, in their order."""
        frozen = {id(v) for v in self.teacher.weights}
        mine = [v for v in variables if id(v) not in frozen]
        return mine, [v for v in variables if id(v) in frozen]

    @property
    def trainable_weights(self):
        return self._split(super().trainable_weights)[0]

    @property
    def non_trainable_weights(self):
        return super().non_trainable_weights + self._split(super().trainable_weights)[1]

    @property
    def trainable_variables(self):
        return self._split(super().trainable_variables)[0]

    @property
    def non_trainable_variables(self):
        return (super().non_trainable_variables
                + self._split(super().trainable_variables)[1])

    # -- training ----------------------------------------------------------

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        task = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if not training or self.alpha == 0.0:
            return task
        # Read before the teacher runs: only the student's terms belong here.
        additional = [ops.sum(ops.cast(loss, keras.backend.floatx())) for loss in self.losses]
        teacher_pred = self.teacher(x, training=False)
        outputs.check_shapes_match(teacher_pred.shape, y_pred.shape)
        soft = soft_target_loss(
            as_logits(teacher_pred, self.teacher_outputs == outputs.PROBABILITIES),
            as_logits(y_pred, self.student_outputs == outputs.PROBABILITIES),
            self.temperature,
            sample_weight,
        )
        # `task` holds the regularization terms too; give them back the share
        # (1 - alpha) took, so they keep their full weight.
        total = (1.0 - self.alpha) * task + self.alpha * ops.cast(soft, task.dtype)
        if additional:
            total = total + self.alpha * ops.sum(ops.stack(additional))
        return total

    # -- saving ----------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "temperature": self.temperature,
            "alpha": self.alpha,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def distill(student, teacher, temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA):
    """`student` wrapped for training against `teacher`'s soft targets.

    ```python
    pruned = tfmot.sparsity.keras.prune_low_magnitude(float_model, ...)
    distiller = tfmot.distillation.distill(pruned, teacher=float_model)
    distiller.compile(optimizer, loss=SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    distiller.fit(x, y, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    final = tfmot.sparsity.keras.strip_pruning(distiller.student)
    ```

    Returns a `Distiller` (see it for the loss, the defaults and what is
    checked). Neither model is copied or changed: the student is trained in
    place, as `fit` on it would, and the teacher is only called in inference
    mode.
    """
    return Distiller(student, teacher, temperature=temperature, alpha=alpha)


__all__ = ["DEFAULT_ALPHA", "DEFAULT_TEMPERATURE", "Distiller", "distill", "student_of"]
