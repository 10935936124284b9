"""Magnitude pruning. The public API is `tfmot_lite.sparsity.keras`.

`prune.py` (entry points) wraps layers in `wrapper.py`'s `PruneLowMagnitude`;
`schedule.py` and `masks.py` decide how much and what to zero; `callbacks.py`
drives the schedule; `registry.py` reads the pruning column of
`tfmot_lite/core/layer_kinds.py`; `policy.py` and `xnnpack.py` restrict pruning
to what a runtime can exploit (rules in `tfmot_lite/core/xnnpack_rules.py`).
"""

from tfmot_lite.sparsity import keras  # noqa: F401
