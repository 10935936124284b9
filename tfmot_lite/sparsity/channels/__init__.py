"""Structured (channel) pruning: prune whole output channels, then shrink.

* `roles.py`: how each Keras layer treats channels (the layer table's
  `channels` column, and what a layer's configuration adds);
* `coupling.py`: which channels must be pruned together, and which stay
  (`analyze`, `channel_report`);
* `diagnostics.py`: `ChannelReport` and the errors for models the analysis
  refuses;
* `wrapper.py`: `PruneChannels`, the per-channel mask wrapper, and
  `ChannelPlan`, which decides the masks of coupled wrappers together;
* `prune.py`: `prune_channels`, the entry point;
* `shrink.py`: `shrink`, which removes the pruned channels for good;
* `summary.py`: `ShrinkSummary`, parameter and MAC counts.

Deploy path: `prune_channels` -> fit with `UpdatePruningStep` -> `shrink` ->
(optionally) `quantize_model` -> TFLite.
"""

from tfmot_lite.sparsity.channels.coupling import channel_report
from tfmot_lite.sparsity.channels.diagnostics import ChannelReport
from tfmot_lite.sparsity.channels.prune import prune_channels
from tfmot_lite.sparsity.channels.shrink import shrink
from tfmot_lite.sparsity.channels.summary import ShrinkSummary, count_macs, count_params
from tfmot_lite.sparsity.channels.wrapper import PruneChannels, link_channel_plans

__all__ = [
    "ChannelReport",
    "PruneChannels",
    "ShrinkSummary",
    "channel_report",
    "count_macs",
    "count_params",
    "link_channel_plans",
    "prune_channels",
    "shrink",
]
