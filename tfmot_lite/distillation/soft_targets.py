"""The distillation term: KL divergence between temperature-softened
teacher and student distributions, scaled by T^2 (Hinton et al., 2015).

Everything is `keras.ops`, so it runs on every backend. Probabilities are
turned back into logits with `log` (softmax ignores a constant shift, so
`log p` is a valid logit vector), which lets a model ending in softmax be a
teacher or a student.
"""

from keras import ops

# Probabilities below this are floored before `log`: an exact 0 (a fake-
# quantized softmax output) would give -inf logits and NaN gradients.
_PROBABILITY_FLOOR = 1e-7


def as_logits(outputs, probabilities):
    """`outputs` as float32 logits; `probabilities`: they are softmax outputs."""
    outputs = ops.cast(outputs, "float32")
    if probabilities:
        return ops.log(ops.maximum(outputs, _PROBABILITY_FLOOR))
    return outputs


def soft_target_loss(teacher_logits, student_logits, temperature, sample_weight=None):
    """`T^2 * KL(softmax(t / T) || softmax(s / T))`, averaged over the batch.

    The KL divergence is summed over the last (class) axis and averaged over
    every other position, weighted by `sample_weight` as Keras' losses do
    ("sum over batch size"). The `T^2` factor keeps the gradient of this term
    on the scale of the hard-label loss whatever the temperature, so that
    the mixing weight means the same at every `T`.
    """
    teacher_logits = ops.stop_gradient(teacher_logits)
    log_teacher = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_student = ops.log_softmax(student_logits / temperature, axis=-1)
    per_example = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
    if sample_weight is not None:
        weight = ops.cast(sample_weight, per_example.dtype)
        while len(weight.shape) > len(per_example.shape):
            weight = ops.squeeze(weight, axis=-1)
        per_example = per_example * weight
    return (temperature ** 2) * ops.mean(per_example)


__all__ = ["as_logits", "soft_target_loss"]
