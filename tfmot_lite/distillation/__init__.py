"""Knowledge distillation from the float model during fine-tuning.

`distill(student, teacher, temperature=1, alpha=0.5)` wraps any optimized
model (pruned, channel-pruned, clustered, QAT, PQAT/CQAT/PCQAT) so that
`model.fit` trains it on the labels and on the float teacher's softened
predictions. See `distiller.py`.
"""

from tfmot_lite.distillation.distiller import (  # noqa: F401
    DEFAULT_ALPHA,
    DEFAULT_TEMPERATURE,
    Distiller,
    distill,
    student_of,
)
from tfmot_lite.distillation.soft_targets import soft_target_loss  # noqa: F401

__all__ = ["DEFAULT_ALPHA", "DEFAULT_TEMPERATURE", "Distiller", "distill",
           "soft_target_loss", "student_of"]
