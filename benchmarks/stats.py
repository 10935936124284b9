"""Summaries the benchmarks share: per-round ratios as min / median / max
with a bootstrap interval of the median."""

import numpy as np


def bootstrap_median(values, rng, n=2000, level=0.90):
    """`(low, high)` bootstrap interval of the median of `values`."""
    values = np.asarray(values)
    meds = np.median(rng.choice(values, size=(n, len(values)), replace=True), axis=1)
    return tuple(np.quantile(meds, [(1 - level) / 2, (1 + level) / 2]))
