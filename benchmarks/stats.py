"""Summaries the benchmarks share: per-round ratios as min / median / max
with a bootstrap interval of the median, and an exact paired test of two
classifiers scored on the same examples."""

from math import comb

import numpy as np


def bootstrap_median(values, rng, n=2000, level=0.90):
    """`(low, high)` bootstrap interval of the median of `values`."""
    values = np.asarray(values)
    meds = np.median(rng.choice(values, size=(n, len(values)), replace=True), axis=1)
    return tuple(np.quantile(meds, [(1 - level) / 2, (1 + level) / 2]))


def mcnemar_exact(only_first, only_second):
    """Two-sided exact McNemar p-value for two classifiers scored on the
    same examples: `only_first` examples only the first gets right,
    `only_second` only the second. Under "equally accurate" each of the
    `n = only_first + only_second` discordant examples goes either way
    with probability 1/2, so p = 2 P(Binomial(n, 1/2) <= min), at most 1."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_first, only_second) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
