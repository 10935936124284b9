"""What channel pruning tells the user: the `ChannelReport` of a model's
groups of coupled channels, and the errors for models it cannot analyze.

The analysis itself (which channels are tied) is `coupling.py`; this module
holds what it hands back to the user and the checks with their advice.
"""

import dataclasses



@dataclasses.dataclass
class GroupInfo:
    """Channels that are pruned together (one line of `ChannelReport`)."""

    layers: list
    channels: int
    reason: str = None

    @property
    def prunable(self):
        return self.reason is None


@dataclasses.dataclass
class ChannelReport:
    """What `prune_channels` can prune in a model, and why the rest stays.

    `groups`: one `GroupInfo` per group of coupled channels: the layers whose
    output channels it holds, how many channels it has, and, when it is left
    intact, the reason.
    """

    groups: list

    @property
    def prunable(self):
        return [g for g in self.groups if g.prunable]

    @property
    def intact(self):
        return [g for g in self.groups if not g.prunable]

    def __str__(self):
        lines = [
            f"{len(self.prunable)} prunable channel group(s), "
            f"{len(self.intact)} left intact"
        ]
        for g in self.groups:
            status = "prunable" if g.prunable else f"intact: {g.reason}"
            lines.append(f"  {g.channels:5d} ch  {', '.join(g.layers)}  [{status}]")
        return "\n".join(lines)


def custom_layers_error(problems, paths):
    """The error for custom layers with weights on the path of prunable
    channels. `problems`: one line per layer, naming the channels it
    receives; `paths`: every such layer's path, for `leave_intact`."""
    return ValueError(
        "Cannot prune channels: these custom layers hold weights and "
        "sit on the path of prunable channels, and tfmot_lite cannot "
        "tell which of their weights belong to which channel:\n"
        + "\n".join(problems)
        + "\nLeave the channels that reach them intact with "
        f"`prune_channels(..., leave_intact={paths!r})`, or rebuild "
        "them from Keras layers that tfmot_lite understands."
    )
