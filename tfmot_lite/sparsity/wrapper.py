"""`PruneLowMagnitude`: a layer whose prunable kernels are masked.

The forward pass computes `kernel * mask`, so gradients reach only the
weights that survive. Masks change only when the pruning schedule says so;
`UpdatePruningStep` makes that decision outside the training step and calls
`update_masks`, which also zeroes the pruned weights themselves, so the
compiled step carries a single multiply per kernel.
"""

import keras
from keras import ops

from tfmot_lite.core import checks, techniques
from tfmot_lite.core.weight_wrapper import WeightTransformWrapper
from tfmot_lite.sparsity import masks as mask_lib
from tfmot_lite.sparsity.registry import classify, prunable_weights
from tfmot_lite.sparsity.schedule import ConstantSparsity, PruningSchedule


def check_pruning_params(
    pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n
):
    """The one validation of the pruning settings (`prune_low_magnitude`
    and `PruneLowMagnitude` alike); returns them normalised, or raises a
    ValueError naming the argument and a valid value."""
    if not isinstance(pruning_schedule, PruningSchedule):
        raise ValueError(
            "`pruning_schedule` must be a PruningSchedule such as "
            "ConstantSparsity(0.5, begin_step=0) or PolynomialDecay(...). "
            f"Received {pruning_schedule!r}."
        )
    checks.check_block_size(block_size)
    if block_pooling_type not in ("AVG", "MAX"):
        raise ValueError(
            "`block_pooling_type` must be 'AVG' or 'MAX'. "
            f"Received {block_pooling_type!r}."
        )
    m_by_n = checks.check_m_by_n(sparsity_m_by_n)
    if m_by_n is not None and tuple(block_size) != (1, 1):
        raise ValueError(
            "`sparsity_m_by_n` and `block_size` cannot be combined: use "
            "block_size=(1, 1) with N:M sparsity."
        )
    return dict(
        pruning_schedule=pruning_schedule,
        block_size=tuple(int(b) for b in block_size),
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=m_by_n,
    )


def weight_shape_problems(layer, weights, block_size, sparsity_m_by_n):
    """Reasons why `weights` of `layer` cannot take the requested pattern."""
    problems = []
    for weight in weights:
        shape = tuple(weight.shape)
        if tuple(block_size) != (1, 1) and mask_lib.as_2d_for_blocks(shape) is None:
            problems.append(
                f"{layer.name}: block sparsity needs a weight that is 2-D once "
                f"unit dimensions are removed; '{weight.name}' has shape {shape}"
            )
        if sparsity_m_by_n is not None and len(shape) < 2:
            problems.append(
                f"{layer.name}: N:M sparsity needs a weight of rank >= 2; "
                f"'{weight.name}' has shape {shape}"
            )
    return problems


@keras.saving.register_keras_serializable(package="tfmot_lite")
class PruneLowMagnitude(WeightTransformWrapper):
    """Wraps a layer and prunes its kernels by magnitude during training.

    Build it with `prune_low_magnitude`; train with the `UpdatePruningStep`
    callback; remove it with `strip_pruning`.

    State, saved with the model: one `mask` and one `threshold` per pruned
    weight, and `pruning_step`, the number of training steps run (-1 before
    the first; each call with `training=True` adds one, as in tfmot).
    """

    technique = techniques.PRUNING

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        **kwargs,
    ):
        if pruning_schedule is None:
            pruning_schedule = ConstantSparsity(0.5, begin_step=0)
        params = check_pruning_params(
            pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n
        )
        if classify(layer) is None:
            raise ValueError(
                f"Layer '{layer.name}' ({layer.__class__.__name__}) holds "
                "weights but tfmot_lite does not know which to prune. Make it "
                "a `tfmot_lite.sparsity.keras.PrunableLayer` and return them "
                "from `get_prunable_weights()`."
            )
        super().__init__(layer, **kwargs)
        self.pruning_schedule = params["pruning_schedule"]
        self.block_size = params["block_size"]
        self.block_pooling_type = params["block_pooling_type"]
        self.sparsity_m_by_n = params["sparsity_m_by_n"]
        # Set by UpdatePruningStep: training without it would never prune.
        self._driven_by_callback = False

    @classmethod
    def _name_prefix(cls):
        return "prune_low_magnitude"

    def target_weights(self):
        return prunable_weights(self.layer)

    def build_transform(self):
        weights = self.target_weights()
        problems = weight_shape_problems(
            self.layer, weights, self.block_size, self.sparsity_m_by_n
        )
        if problems:
            raise ValueError("; ".join(problems))
        self.pruned_weights = weights
        self.masks = []
        self.thresholds = []
        for weight in weights:
            base = weight.name
            self.masks.append(
                self.add_weight(
                    name=f"{base}_mask",
                    shape=weight.shape,
                    initializer="ones",
                    dtype=weight.dtype,
                    trainable=False,
                )
            )
            self.thresholds.append(
                self.add_weight(
                    name=f"{base}_threshold",
                    shape=(),
                    initializer="zeros",
                    dtype=weight.dtype,
                    trainable=False,
                )
            )
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int32",  # int64 is not available on JAX by default
            trainable=False,
        )

    def transformed_weights(self, training):
        if training is True:
            if self.masks and not self._driven_by_callback:
                raise ValueError(
                    f"Layer '{self.name}' is being trained without the pruning "
                    "callback, so its masks would never change. Add "
                    "`tfmot_lite.sparsity.keras.UpdatePruningStep()` to the "
                    "callbacks of `model.fit` (or call its on_train_begin / "
                    "on_train_batch_begin in a custom loop)."
                )
            # tfmot's clock: one tick per training step, inside the step, so
            # the saved step always matches the saved weights (-1 counts as 0).
            self.pruning_step.assign(ops.maximum(self.pruning_step, 0) + 1)
        return self.masked_weights()

    def masked_weights(self):
        """Every target weight times its mask (what the layer computes with)."""
        return [ops.multiply(w, m) for w, m in zip(self.pruned_weights, self.masks)]

    # -- mask updates, called from outside the training step ----------------

    def new_masks(self, sparsity):
        """`(mask, threshold)` per pruned weight at the given sparsity."""
        if self.sparsity_m_by_n is not None:
            return [
                mask_lib.m_by_n_mask(w, self.sparsity_m_by_n)
                for w in self.pruned_weights
            ]
        return [
            mask_lib.magnitude_mask(
                w, sparsity, self.block_size, self.block_pooling_type
            )
            for w in self.pruned_weights
        ]

    def apply_masks(self):
        """Sets every pruned weight to `weight * mask` (tfmot's re-mask)."""
        for weight, value in zip(self.target_weights(), self.masked_weights()):
            weight.assign(value)

    def update_masks(self, sparsity):
        """Recomputes every mask at `sparsity` and zeroes pruned weights."""
        for weight, mask, threshold, (new_mask, new_threshold) in zip(
            self.pruned_weights, self.masks, self.thresholds,
            self.new_masks(sparsity),
        ):
            mask.assign(new_mask)
            threshold.assign(new_threshold)
            weight.assign(ops.multiply(weight, new_mask))

    # -- serialization ------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(
                    self.pruning_schedule
                ),
                "block_size": list(self.block_size),
                "block_pooling_type": self.block_pooling_type,
                "sparsity_m_by_n": (
                    list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["pruning_schedule"] = keras.saving.deserialize_keras_object(
            config["pruning_schedule"], custom_objects=custom_objects
        )
        return super().from_config(config, custom_objects=custom_objects)
