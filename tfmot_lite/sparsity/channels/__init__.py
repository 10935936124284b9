"""Structured (channel) pruning: prune whole output channels, then shrink.

* `layers.py`: how each Keras layer treats channels (one table);
* `coupling.py`: which channels must be pruned together, and which stay
  (`analyze`, `channel_report`);
* `wrapper.py`: `PruneChannels`, the per-channel mask wrapper, and
  `ChannelPlan`, which decides the masks of coupled wrappers together;
* `prune.py`: `prune_channels`, the entry point;
* `shrink.py`: `shrink`, which removes the pruned channels for good;
* `summary.py`: `ShrinkSummary`, parameter and MAC counts.

Deploy path: `prune_channels` -> fit with `UpdatePruningStep` -> `shrink` ->
(optionally) `quantize_model` -> TFLite.
"""

from tfmot_lite.sparsity.channels.coupling import ChannelReport, channel_report
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
