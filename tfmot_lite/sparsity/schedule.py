"""Pruning schedules: when to update masks, and to which sparsity.

A schedule maps a training step to `(should_prune, sparsity)`. Steps count
as tfmot counts them: the k-th training step is step k (1, 2, ...), and
masks are updated before steps `begin_step, begin_step + frequency, ...`
(those >= 1) up to and including `end_step` (`end_step=-1` prunes until
training ends); with `begin_step=0, frequency=10` the first update is for
step 10. The semantics, defaults and argument names are those of
`tfmot.sparsity.keras`.

Schedules are evaluated by `UpdatePruningStep` between training steps, so
they are plain Python: no tensor op runs per step.
"""

import keras
import numpy as np

from tfmot_lite.core import checks
from tfmot_lite.core.config_equality import ConfigEquality

_PACKAGE = "tfmot_lite"


def _check_sparsity(name, value):
    checks.check_fraction(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1): the fraction of weights set to zero. "
            f"Received {name}={value}."
        )


def _check_steps(begin_step, end_step, frequency, allow_open_end):
    checks.check_ints(begin_step=begin_step, end_step=end_step, frequency=frequency)
    if begin_step < 0:
        raise ValueError(f"`begin_step` must be >= 0. Received {begin_step}.")
    if end_step == -1:
        if not allow_open_end:
            raise ValueError(
                "`end_step` must be set (>= begin_step): this schedule needs "
                "to know when the final sparsity is reached."
            )
    elif end_step < begin_step:
        raise ValueError(
            f"`end_step` ({end_step}) must be >= `begin_step` ({begin_step})"
            + (", or -1 to prune until training ends." if allow_open_end else ".")
        )
    if frequency <= 0:
        raise ValueError(
            f"`frequency` must be > 0 (steps between mask updates). "
            f"Received {frequency}."
        )


def _as_int(step):
    return int(np.asarray(keras.ops.convert_to_numpy(step)))


class PruningSchedule(ConfigEquality):
    """Base class: `schedule(step) -> (should_prune, sparsity)`.

    Subclasses implement `__call__` and `get_config`. `step` is an int (or a
    concrete scalar tensor); the result is `(bool, float)`.
    """

    def __call__(self, step):
        raise NotImplementedError

    def _update_due(self, step):
        """`(step as an int, whether masks update before it)` for schedules
        with `begin_step`, `end_step` and `frequency`."""
        step = _as_int(step)
        return step, self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        in_range = begin_step <= step and (end_step == -1 or step <= end_step)
        return in_range and (step - begin_step) % frequency == 0

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.__class__.__name__}({args})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """Prunes to `target_sparsity` at every update step.

    Args:
      target_sparsity: fraction of weights set to zero, in [0, 1).
      begin_step: first step at which masks are updated.
      end_step: last step at which masks may be updated, or -1 for no end.
      frequency: steps between mask updates.
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        _check_sparsity("target_sparsity", target_sparsity)
        _check_steps(begin_step, end_step, frequency, allow_open_end=True)
        self.target_sparsity = float(target_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step):
        step, should_prune = self._update_due(step)
        return should_prune, self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(PruningSchedule):
    """Sparsity grows from `initial_sparsity` to `final_sparsity`.

    With `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`:

        sparsity(step) = final + (initial - final) * (1 - p) ** power

    so pruning is fast early, when many small weights are redundant, and slows
    as the target nears (Zhu & Gupta, "To prune, or not to prune", 2017).

    Args:
      initial_sparsity: sparsity at `begin_step`, in [0, 1).
      final_sparsity: sparsity from `end_step` on, in [0, 1).
      begin_step: first step at which masks are updated.
      end_step: step at which `final_sparsity` is reached.
      power: exponent of the decay (3 by default).
      frequency: steps between mask updates.
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        _check_sparsity("initial_sparsity", initial_sparsity)
        _check_sparsity("final_sparsity", final_sparsity)
        _check_steps(begin_step, end_step, frequency, allow_open_end=False)
        checks.check_positive("power", power)
        if power <= 0:
            raise ValueError(f"`power` must be > 0. Received {power}.")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.power = power
        self.frequency = int(frequency)

    def __call__(self, step):
        step, should_prune = self._update_due(step)
        span = max(self.end_step - self.begin_step, 1)
        progress = min(max((step - self.begin_step) / span, 0.0), 1.0)
        sparsity = self.final_sparsity + (
            self.initial_sparsity - self.final_sparsity
        ) * (1.0 - progress) ** self.power
        return should_prune, sparsity

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }
