"""Callbacks that drive pruning: `UpdatePruningStep` and `PruningSummaries`.

The clock is tfmot's. Each `PruneLowMagnitude` holds `pruning_step`, the
number of training steps it has run (-1 before the first). A training step
ticks it inside the step itself (`PruneLowMagnitude.call` with
`training=True`), so the value saved with the weights, by `model.save`,
`ModelCheckpoint` or `BackupAndRestore`, always matches them. Before training
step `s` (1, 2, ...) `UpdatePruningStep` asks the schedule about `s` and, on
an update step, recomputes the masks from the current weights, so step `s`
trains with them. With `frequency=10` masks first change for the 10th step.
N:M masks (`sparsity_m_by_n`) are set once, at step 1, as in tfmot.

Both callbacks accept tfmot's custom-training-loop call patterns:
`set_model(m)`, `on_train_begin()`, `on_train_batch_begin(batch=...)`,
`on_epoch_begin(epoch=...)`, `on_epoch_end(batch=...)`.
"""

import os
import warnings

import keras
import numpy as np
from keras import ops

from tfmot_lite.core import techniques
from tfmot_lite.distillation.distiller import student_of
from tfmot_lite.fast.first_step import build_optimizer


def pruning_wrappers(model):
    """Every `PruneLowMagnitude` in `model`, nested models included (in the
    student of a distillation model, never in its teacher)."""
    return techniques.layers_in(student_of(model), techniques.PRUNING)


def _steps_run(wrapper):
    """The training steps `wrapper` has run (its `pruning_step`, -1 -> 0)."""
    return max(int(ops.convert_to_numpy(wrapper.pruning_step)), 0)


def _model(callback):
    model = callback.model  # On JAX, pulls the training state into the variables.
    if model is None:
        raise ValueError(
            f"{type(callback).__name__} has no model. In a custom training "
            "loop call `callback.set_model(model)` first."
        )
    return model


_LOOK_AHEAD = 1_000_000  # steps searched for a schedule's next update


def _not_yet_pruned(wrappers):
    """`[(wrapper, steps run)]` for the built wrappers whose masks are
    still all ones and whose schedule has not asked for an update yet."""
    waiting = []
    for wrapper in wrappers:
        if not wrapper.built or wrapper.sparsity_m_by_n is not None or not wrapper.masks:
            continue
        if any(not np.all(ops.convert_to_numpy(mask)) for mask in wrapper.masks):
            continue
        run = _steps_run(wrapper)
        schedule = wrapper.pruning_schedule
        if any(bool(np.asarray(schedule(s)[0])) for s in range(1, run + 1)):
            continue  # Updated at a sparsity that pruned nothing: as asked.
        waiting.append((wrapper, run))
    return waiting


def _next_update(schedule, run):
    """The first step after `run` at which `schedule` updates the masks, or
    None: searched up to its `end_step` where it has one (a schedule call
    is a few microseconds; a million of them for each layer had made the
    warning take minutes), else `_LOOK_AHEAD` steps."""
    end = getattr(schedule, "end_step", -1)
    stop = run + _LOOK_AHEAD
    if isinstance(end, int) and end >= 0:
        stop = min(stop, end + 1)
    return next((s for s in range(run + 1, stop) if bool(np.asarray(schedule(s)[0]))), None)


def _not_yet_pruned_message(waiting):
    names = ", ".join(f"'{w.name}'" for w, _ in waiting[:5])
    more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
    first, run = waiting[0]
    upcoming = _next_update(first.pruning_schedule, run)
    when = (
        f"its first mask update is due at step {upcoming}" if upcoming
        else "it asks for no mask update"
    )
    return (
        f"Training ended after {run} steps with {names}{more} not pruned at "
        f"all: the pruning schedule ({waiting[0][0].pruning_schedule!r}) "
        f"has not updated a mask yet; {when}. Train for more steps, or pass "
        "a schedule that starts within your training, e.g. "
        "`ConstantSparsity(0.5, begin_step=0, frequency=10)` or "
        "`PolynomialDecay(0.0, 0.5, begin_step=0, end_step=<steps>)`."
    )


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates pruning masks when the schedules say so (tfmot's callback).

    Add it to `model.fit(..., callbacks=[UpdatePruningStep()])`, or drive it
    by hand in a custom training loop:

    ```python
    step_callback = UpdatePruningStep()
    step_callback.set_model(pruned)
    step_callback.on_train_begin()
    for epoch in range(epochs):
        for x, y in batches:
            step_callback.on_train_batch_begin(batch=-1)
            with tf.GradientTape() as tape:
                loss = loss_fn(y, pruned(x, training=True))
            ...  # apply the gradients
        step_callback.on_epoch_end(batch=-1)
    ```

    The step count comes from the model, not from the optimizer: a pruned
    model saved mid-schedule, or restored by `BackupAndRestore` (in either
    callback order), continues where it stopped. The count is read at the
    first batch, after every callback's `on_train_begin` has run, and then
    kept in step with the model's own tick.

    Masks are recomputed only on update steps, outside the compiled
    training step; at the end of every epoch the pruned weights are set to
    `weight * mask` (as tfmot does), so a saved model holds sparse kernels.

    In `fit` on TensorFlow it also builds the optimizer when training
    begins, as Keras' `BackupAndRestore` does, so that the first `fit`
    traces its step once, not twice (`tfmot_lite.fast.first_step`).
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []
        self._last_step = {}  # id(wrapper) -> last step run; filled lazily

    def on_train_begin(self, logs=None):
        self._wrappers = pruning_wrappers(_model(self))
        if not self._wrappers:
            raise ValueError(
                "UpdatePruningStep found no pruned layer in the model. Prune "
                "it first with `tfmot_lite.sparsity.keras.prune_low_magnitude`."
            )
        for wrapper in self._wrappers:
            wrapper._driven_by_callback = True
            if hasattr(wrapper, "link_model"):  # Channel pruning: coupled masks.
                wrapper.link_model(student_of(_model(self)))
        # Read lazily, at the first batch: a callback later in the list
        # (BackupAndRestore) may still restore the weights in on_train_begin.
        self._last_step = {}
        # In `fit` on TensorFlow: the training step traced once, not twice.
        build_optimizer(self.model)

    def on_train_batch_begin(self, batch=None, logs=None):
        if not self._wrappers:
            self.on_train_begin()
        pending = [
            w for w in self._wrappers if w.built and id(w) not in self._last_step
        ]
        if pending:
            _model(self)
            for wrapper in pending:
                self._last_step[id(wrapper)] = _steps_run(wrapper)
                wrapper.apply_masks()
        decisions = {}
        due = []
        for wrapper in self._wrappers:
            if not wrapper.built:
                # Built by its first training step (a model with no input);
                # its clock starts there.
                continue
            step = self._last_step[id(wrapper)] + 1
            self._last_step[id(wrapper)] = step
            if wrapper.sparsity_m_by_n is not None:
                # As tfmot: N:M masks are set once, at step 1, then kept.
                if step == 1:
                    due.append((wrapper, None))
                continue
            key = (wrapper.pruning_schedule, step)
            if key not in decisions:
                decisions[key] = wrapper.pruning_schedule(step)
            should_prune, sparsity = decisions[key]
            if bool(np.asarray(should_prune)):
                due.append((wrapper, float(np.asarray(sparsity))))
        if due:
            _model(self)
            for wrapper, sparsity in due:
                wrapper.update_masks(sparsity)

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        """Sets every pruned weight to `weight * mask` (tfmot's re-mask).

        `batch` is accepted for tfmot's custom-loop call
        `on_epoch_end(batch=...)`.
        """
        if not self._wrappers:
            return
        _model(self)
        for wrapper in self._wrappers:
            if wrapper.built:
                wrapper.apply_masks()

    def on_train_end(self, logs=None):
        """Warns when training ended before any mask changed: the schedule's
        first update lies beyond the steps run (the default
        `ConstantSparsity(0.5, 0)` updates every 100 steps), so the model
        is not pruned at all, which a user would otherwise not notice."""
        waiting = _not_yet_pruned(self._wrappers)
        if waiting:
            warnings.warn(_not_yet_pruned_message(waiting), stacklevel=2)


def require_tensorboard(callback_name, extra="tensorboard"):
    """Raises an ImportError naming the pip extra when TensorBoard's summary
    ops are missing (TensorFlow 2.21 no longer installs `tensorboard`)."""
    try:
        import tensorboard  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"{callback_name} writes TensorBoard summaries and needs the "
            f"`tensorflow` and `tensorboard` packages ({e}). Install them "
            f'with `pip install "tfmot-lite[{extra}]"` (the `[tf]` and `[cpu]` '
            "extras include it too)."
        ) from e


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logging of per-weight sparsity and threshold (tfmot's).

    Besides the usual TensorBoard logs, writes for every pruned weight, at
    step `optimizer.iterations`:

    * tfmot's tags, in `<log_dir>/metrics`: `<mask>/sparsity` (fraction of
      zeros in the mask) and `<threshold>/threshold`, named after the mask
      and threshold variables (`prune_low_magnitude_dense/kernel_mask`);
    * the same values grouped under `pruning/<layer>/<weight>/sparsity` and
      `.../threshold` in `<log_dir>/train`.

    They are written at the start of every epoch (as tfmot does), at the end
    of training, and every `update_freq` batches when it is an integer. All
    use one step axis, the optimizer's iteration count.

    Needs `tensorboard` (`pip install "tfmot-lite[tensorboard]"`).

    Args:
      log_dir: directory for the event files.
      update_freq: 'epoch' or a number of batches.
      **kwargs: passed to `keras.callbacks.TensorBoard`.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                f"`log_dir` must be a directory path. Received {log_dir!r}."
            )
        require_tensorboard("PruningSummaries")
        super().__init__(log_dir=str(log_dir), update_freq=update_freq, **kwargs)
        self._metrics_writer = None
        self._last_logged = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._last_logged = None

    def on_epoch_begin(self, epoch=None, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._log_pruning()

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        """`batch` is accepted for tfmot's custom-loop call."""
        super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if isinstance(self.update_freq, int) and self._global_train_batch % self.update_freq == 0:
            self._log_pruning()

    def on_train_end(self, logs=None):
        self._log_pruning()
        super().on_train_end(logs)

    def _log_pruning(self):
        model = _model(self)
        optimizer = getattr(model, "optimizer", None)
        step = int(ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else 0
        if step == self._last_logged:
            return
        self._last_logged = step
        tfmot_tags, grouped = pruning_metrics(pruning_wrappers(model), both=True)
        if self._metrics_writer is None:
            self._metrics_writer = self.summary.create_file_writer(
                os.path.join(self.log_dir, "metrics")
            )
        writers = [(self._metrics_writer, tfmot_tags)]
        if getattr(self, "_train_dir", None) is not None:  # set_model was called
            writers.append((self._train_writer, grouped))
        # TensorBoard's own batch-frequency filter (record_if) must not drop
        # the epoch and end-of-training points.
        with self.summary.record_if(True):
            for writer, values in writers:
                with writer.as_default():
                    for name, value in values.items():
                        self.summary.scalar(name, value, step=step)
                writer.flush()


def pruning_metrics(wrappers, both=False):
    """Sparsity and threshold of every pruned weight.

    Returns `{'pruning/<layer>/<weight>/sparsity' | .../threshold: float}`;
    with `both=True`, `(tfmot_tags, that_dict)` where tfmot's tags are
    `<mask variable path>/sparsity` and `<threshold variable path>/threshold`.
    """
    grouped, tfmot_tags = {}, {}
    for wrapper in wrappers:
        if not wrapper.built:
            continue
        for weight, mask, threshold in zip(
            wrapper.pruned_weights, wrapper.masks, wrapper.thresholds
        ):
            sparsity = float(1.0 - ops.convert_to_numpy(mask).mean())
            value = float(ops.convert_to_numpy(threshold))
            prefix = f"pruning/{wrapper.layer.name}/{weight.name}"
            grouped[f"{prefix}/sparsity"] = sparsity
            grouped[f"{prefix}/threshold"] = value
            tfmot_tags[f"{mask.path}/sparsity"] = sparsity
            tfmot_tags[f"{threshold.path}/threshold"] = value
    return (tfmot_tags, grouped) if both else grouped
