"""Callbacks that drive pruning during `model.fit`."""

import keras
from keras import ops

from tfmot_lite import graph
from tfmot_lite.sparsity.wrapper import PruneLowMagnitude


def pruning_wrappers(model):
    """Every `PruneLowMagnitude` in `model`, nested models included."""
    return [
        layer for _, layer in graph.iter_layers(model)
        if isinstance(layer, PruneLowMagnitude)
    ]


def _stored_step(wrappers):
    return max(
        (int(ops.convert_to_numpy(w.pruning_step)) for w in wrappers), default=-1
    )


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning step and updates masks when schedules say so.

    Add it to `model.fit(..., callbacks=[UpdatePruningStep()])`. The step
    count resumes from the model: a pruned model saved mid-schedule and loaded
    again continues where it stopped, even with a fresh optimizer.

    The schedule is evaluated here, once per distinct schedule per batch, and
    masks are recomputed only on update steps, so the compiled training step
    itself does no pruning bookkeeping.
    """

    def __init__(self):
        super().__init__()
        self.step = None
        self._wrappers = []

    def on_train_begin(self, logs=None):
        self._wrappers = pruning_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                "UpdatePruningStep found no pruned layer in the model. Prune "
                "it first with `tfmot_lite.sparsity.keras.prune_low_magnitude`."
            )
        for wrapper in self._wrappers:
            wrapper._driven_by_callback = True
            if hasattr(wrapper, "link_model"):  # Channel pruning: coupled masks.
                wrapper.link_model(self.model)
        # The schedule's clock lives in the model, not in the optimizer: a
        # reloaded or recompiled model resumes where it stopped.
        self.step = _stored_step(self._wrappers) + 1

    def on_train_batch_begin(self, batch, logs=None):
        decisions = {}
        due = []
        for wrapper in self._wrappers:
            schedule = wrapper.pruning_schedule
            if schedule not in decisions:
                decisions[schedule] = schedule(self.step)
            should_prune, sparsity = decisions[schedule]
            if should_prune:
                due.append((wrapper, sparsity))
        if due:
            self.model  # On JAX, pulls the training state into the variables.
            for wrapper, sparsity in due:
                wrapper.update_masks(sparsity)
            self._store_step(self.step)
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        self.model  # noqa: B018 -- see on_train_batch_begin.
        self._store_step(self.step - 1)

    def on_train_end(self, logs=None):
        self.model  # noqa: B018
        self._store_step(self.step - 1)

    def _store_step(self, step):
        """Records `step`, the last step run, in every wrapper."""
        for wrapper in self._wrappers:
            wrapper.pruning_step.assign(step)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logging with per-layer sparsity and threshold.

    Writes the usual TensorBoard summaries plus, for each pruned weight,
    `pruning/<layer>/<weight>/sparsity` (fraction of zeros in the mask) and
    `pruning/<layer>/<weight>/threshold` at the end of every epoch (or every
    `update_freq` batches when it is an integer).

    Args:
      log_dir: directory for the event files.
      update_freq: 'epoch' or a number of batches.
      **kwargs: passed to `keras.callbacks.TensorBoard`.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(f"`log_dir` must be a directory path. Received {log_dir!r}.")
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._batches_seen = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._wrappers = pruning_wrappers(self.model)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._log_pruning(step=epoch)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._batches_seen += 1
        if isinstance(self.update_freq, int) and self._batches_seen % self.update_freq == 0:
            self._log_pruning(step=self._batches_seen)

    def _log_pruning(self, step):
        self.model  # noqa: B018 -- syncs the JAX training state.
        with self._train_writer.as_default():
            for name, value in pruning_metrics(self._wrappers).items():
                self.summary.scalar(name, value, step=step)
        self._train_writer.flush()


def pruning_metrics(wrappers):
    """`{'pruning/<layer>/<weight>/sparsity' | .../threshold: float}`."""
    metrics = {}
    for wrapper in wrappers:
        for weight, mask, threshold in zip(
            wrapper.pruned_weights, wrapper.masks, wrapper.thresholds
        ):
            mask = ops.convert_to_numpy(mask)
            prefix = f"pruning/{wrapper.layer.name}/{weight.name}"
            metrics[f"{prefix}/sparsity"] = float(1.0 - mask.mean())
            metrics[f"{prefix}/threshold"] = float(ops.convert_to_numpy(threshold))
    return metrics
