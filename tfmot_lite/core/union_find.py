"""Disjoint sets over the integers 0..n-1 (union-find).

Channel pruning ties channels that must share a fate: the coupling analysis
(`sparsity/channels/coupling.py`) joins the channels of tensors into classes
and classes into groups, and a `ChannelPlan` (`sparsity/channels/wrapper.py`)
rebuilds the groups from its wrappers' classes. Every set's root is its
smallest member, so the sets, and any numbering made from their roots, do not
depend on the order of the unions.
"""

import numpy as np


class UnionFind:
    """Disjoint sets over 0..len-1; `add` grows it, `union` joins sets."""

    def __init__(self, count=0):
        self.parent = list(range(count))

    def __len__(self):
        return len(self.parent)

    def add(self, count):
        """`count` new singleton sets; returns their members as an array."""
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count)

    def find(self, i):
        """The root (smallest member) of `i`'s set."""
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a, b):
        """Joins the set of `a[i]` with that of `b[i]` for every `i` (`a` and
        `b`: integers or equally long arrays)."""
        for i, j in zip(np.ravel(a), np.ravel(b)):
            ri, rj = self.find(int(i)), self.find(int(j))
            if ri != rj:
                self.parent[max(ri, rj)] = min(ri, rj)

    def roots(self):
        """The root of every member, as an array indexed by member."""
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
