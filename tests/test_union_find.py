"""core.union_find: the disjoint sets channel pruning ties channels with."""

import numpy as np

from tfmot_lite.core.union_find import UnionFind


def test_roots_are_smallest_members_whatever_the_union_order():
    forward, backward = UnionFind(6), UnionFind(6)
    pairs = [(4, 5), (1, 4), (2, 3)]
    for a, b in pairs:
        forward.union(a, b)
    for a, b in reversed(pairs):
        backward.union(b, a)
    expected = [0, 1, 2, 2, 1, 1]
    assert forward.roots().tolist() == expected == backward.roots().tolist()


def test_add_grows_and_union_joins_arrays_elementwise():
    sets = UnionFind()
    first, second = sets.add(3), sets.add(3)
    assert first.tolist() == [0, 1, 2] and second.tolist() == [3, 4, 5] and len(sets) == 6
    sets.union(first, second)
    assert sets.roots().tolist() == [0, 1, 2, 0, 1, 2]
    sets.union(np.array([0]), np.array([2]))
    assert sets.find(5) == 0 and sets.find(4) == 1
