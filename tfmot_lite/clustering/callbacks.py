"""TensorBoard summaries of clustering progress."""

import keras
import numpy as np
from keras import ops

from tfmot_lite.core import techniques
from tfmot_lite.distillation.distiller import student_of
from tfmot_lite.sparsity.callbacks import require_tensorboard


def clustering_wrappers(model):
    """Every `ClusterWeights` in `model`, nested models included (in the
    student of a distillation model, never in its teacher)."""
    return techniques.layers_in(student_of(model), techniques.CLUSTERING)


def clustering_metrics(wrappers):
    """Per clustered weight: `{'clustering/<layer>/<weight>/<metric>': value}`.

    * `centroids`: the centroids as the layer uses them (an array, for a
      histogram);
    * `clusters_in_use`: how many centroids at least one weight is assigned
      to (averaged over channels in per-channel mode);
    * `largest_cluster`: the fraction of weights in the most populated
      cluster.
    """
    metrics = {}
    for wrapper in wrappers:
        for i, (name, indices) in enumerate(
            zip(wrapper.weight_names, wrapper.pulling_indices())
        ):
            prefix = f"clustering/{wrapper.layer.name}/{name}"
            k = wrapper.number_of_clusters
            if wrapper.cluster_per_channel:
                per_channel = indices.reshape(-1, indices.shape[-1]).T
                counts = np.stack([np.bincount(c, minlength=k) for c in per_channel])
            else:
                counts = np.bincount(indices.reshape(-1), minlength=k)[None]
            metrics[f"{prefix}/centroids"] = ops.convert_to_numpy(
                wrapper.sorted_centroids(i)
            ).reshape(-1)
            metrics[f"{prefix}/clusters_in_use"] = float(np.mean((counts > 0).sum(axis=1)))
            metrics[f"{prefix}/largest_cluster"] = float(
                np.mean(counts.max(axis=1) / counts.sum(axis=1))
            )
    return metrics


class ClusteringSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logging with clustering histograms and scalars.

    Writes the usual TensorBoard summaries plus, for each clustered weight,
    a histogram of its centroids and the scalars `clusters_in_use` and
    `largest_cluster` (see `clustering_metrics`), under
    `clustering/<layer>/<weight>/`.

    Args:
      log_dir: directory for the event files.
      cluster_update_freq: 'epoch', 'batch' or a number of batches between
        clustering summaries.
      **kwargs: passed to `keras.callbacks.TensorBoard`.
    """

    def __init__(self, log_dir="logs", cluster_update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(f"`log_dir` must be a directory path. Received {log_dir!r}.")
        if cluster_update_freq == "batch":
            cluster_update_freq = 1
        if cluster_update_freq != "epoch" and (
            not isinstance(cluster_update_freq, int) or cluster_update_freq < 1
        ):
            raise ValueError(
                "`cluster_update_freq` must be 'epoch', 'batch' or a positive "
                f"number of batches. Received {cluster_update_freq!r}."
            )
        require_tensorboard("ClusteringSummaries")
        super().__init__(log_dir=log_dir, **kwargs)
        self.cluster_update_freq = cluster_update_freq
        self._batches_seen = 0
        self._wrappers = []

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._wrappers = clustering_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                "ClusteringSummaries found no clustered layer in the model. "
                "Cluster it first with `tfmot_lite.clustering.keras.cluster_weights`."
            )

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._batches_seen += 1
        freq = self.cluster_update_freq
        if freq != "epoch" and self._batches_seen % freq == 0:
            self._log_clustering(step=self._batches_seen)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.cluster_update_freq == "epoch":
            self._log_clustering(step=epoch)

    def _log_clustering(self, step):
        self.model  # noqa: B018 -- syncs the JAX training state.
        with self._train_writer.as_default():
            for name, value in clustering_metrics(self._wrappers).items():
                if isinstance(value, np.ndarray):
                    self.summary.histogram(name, value, step=step)
                else:
                    self.summary.scalar(name, value, step=step)
        self._train_writer.flush()
