"""What a teacher or student outputs, read from its graph, and whether the
two can be distilled: one tensor of class scores each, of the same shape.

A Functional or Sequential model's output is traced back to the layer that
made it (through nested models and optimization wrappers: a QAT, pruning or
clustering wrapper holds the original layer). If that layer applies softmax
(`Dense(..., activation="softmax")`, `Softmax`, `Activation("softmax")`),
the model outputs probabilities; otherwise it is taken to output logits.
A model ending in sigmoid is refused: its per-class probabilities are not
one softmax over classes (log-softmax or unbounded scores are logits). A subclassed model has no
graph to read and is taken to output logits.
"""

import keras

from tfmot_lite.core import graph
from tfmot_lite.core.layer_kinds import activation_name

LOGITS, PROBABILITIES = "logits", "probabilities"
# Per-class probabilities that are not one softmax over the last axis.
_NOT_LOGITS = {"sigmoid", "hard_sigmoid"}


def _output_tensors(model):
    outputs = getattr(model, "outputs", None)
    try:
        return list(outputs) if outputs is not None else None
    except TypeError:
        return None


def _producing_layer(model):
    """The leaf layer that computes `model`'s single output, or None when
    the model has no graph (subclassed)."""
    tensors = _output_tensors(model)
    if not tensors:
        return None
    layer = tensors[0]._keras_history.operation
    while graph.is_graph_model(layer):
        inner = _output_tensors(layer)
        if not inner:
            return None
        layer = inner[0]._keras_history.operation
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    return layer


def output_kind(model, argument):
    """`LOGITS` or `PROBABILITIES` for `model` (passed as `argument`).

    Raises:
      ValueError: the model has several outputs, or ends in an activation
        other than softmax that squashes its scores.
    """
    tensors = _output_tensors(model)
    if tensors is not None and len(tensors) != 1:
        raise ValueError(
            f"`{argument}` ('{model.name}') has {len(tensors)} outputs; distillation "
            "needs one output of class scores. Distill a model built on the "
            "output you train (keras.Model(inputs, outputs[k]))."
        )
    layer = _producing_layer(model)
    if layer is None:
        return LOGITS
    if isinstance(layer, keras.layers.Softmax):
        return PROBABILITIES
    name = activation_name(getattr(layer, "activation", None))
    if name == "softmax":
        return PROBABILITIES
    if name in _NOT_LOGITS:
        raise ValueError(
            f"`{argument}` ('{model.name}') ends in layer '{layer.name}' with "
            f"activation '{name}': distillation matches softmax distributions over "
            "the last axis, so the model must output logits (no activation) or "
            "softmax probabilities. Rebuild its last layer with activation=None."
        )
    return LOGITS


def check_same_outputs(student, teacher):
    """ValueError unless `teacher` and `student` take inputs and give outputs
    of the same shapes (where their graphs say; unknown sizes pass)."""
    for what in ("inputs", "outputs"):
        s_tensors = _output_tensors(student) if what == "outputs" else getattr(
            student, "inputs", None)
        t_tensors = _output_tensors(teacher) if what == "outputs" else getattr(
            teacher, "inputs", None)
        if not s_tensors or not t_tensors:
            continue
        s_shapes = [tuple(t.shape) for t in s_tensors]
        t_shapes = [tuple(t.shape) for t in t_tensors]
        if len(s_shapes) != len(t_shapes) or not all(
            _compatible(a, b) for a, b in zip(s_shapes, t_shapes)
        ):
            raise ValueError(
                f"`teacher` and `student` {what} differ: teacher '{teacher.name}' "
                f"{_shapes(t_shapes)}, student '{student.name}' {_shapes(s_shapes)}. "
                + ("The teacher's soft targets must score the same classes as the "
                   "student: give a teacher with the student's output shape."
                   if what == "outputs" else
                   "Both models see the same batch: give them the same input shape.")
            )
    if _output_tensors(student) and _output_tensors(teacher):
        classes = _output_tensors(student)[0].shape[-1]
        if classes is not None and classes < 2:
            raise ValueError(
                f"`student` ('{student.name}') outputs {classes} score per example: "
                "distillation matches softmax distributions over at least 2 classes. "
                "For a binary task output 2 logits (Dense(2))."
            )


def check_shapes_match(teacher_shape, student_shape):
    """The same check on the traced tensors (models without a graph)."""
    if not _compatible(tuple(teacher_shape), tuple(student_shape)):
        raise ValueError(
            f"`teacher` outputs shape {tuple(teacher_shape)} but `student` outputs "
            f"{tuple(student_shape)}: give a teacher with the student's output shape."
        )


def _compatible(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _shapes(shapes):
    return shapes[0] if len(shapes) == 1 else shapes


__all__ = ["LOGITS", "PROBABILITIES", "check_same_outputs", "check_shapes_match",
           "output_kind"]
