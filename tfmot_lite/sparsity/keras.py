"""Public pruning API, with the names and signatures of `tfmot.sparsity.keras`.

```python
import tfmot_lite as tfmot

pruned = tfmot.sparsity.keras.prune_low_magnitude(
    model,
    pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(0.25, 0.75, 0, 1000),
)
pruned.compile(...)
pruned.fit(x, y, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
plain = tfmot.sparsity.keras.strip_pruning(pruned)
```
"""

from tfmot_lite.sparsity.channels import ChannelReport, PruneChannels, ShrinkSummary, channel_report, link_channel_plans, prune_channels, shrink  # noqa: E501
from tfmot_lite.sparsity.callbacks import PruningSummaries, UpdatePruningStep
from tfmot_lite.sparsity.masks import is_pruned_m_by_n
from tfmot_lite.sparsity.policy import PruningPolicy
from tfmot_lite.sparsity.prune import prune_low_magnitude, prune_scope, strip_pruning
from tfmot_lite.sparsity.registry import PrunableLayer
from tfmot_lite.sparsity.schedule import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfmot_lite.sparsity.wrapper import PruneLowMagnitude
from tfmot_lite.sparsity.xnnpack import PruneForLatencyOnXNNPack
from tfmot_lite.sparsity.xnnpack_report import XNNPackSparsityReport, xnnpack_sparsity_report

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruneForLatencyOnXNNPack",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "XNNPackSparsityReport",
    "is_pruned_m_by_n",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
    "xnnpack_sparsity_report",
]
__all__ += ["ChannelReport", "PruneChannels", "ShrinkSummary", "channel_report", "link_channel_plans", "prune_channels", "shrink"]  # noqa: E501
