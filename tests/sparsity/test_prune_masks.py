import numpy as np
import pytest

from tfmot_lite.sparsity import keras as sparsity
from tfmot_lite.sparsity import masks


def np_(x):
    return np.asarray(x)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.5, 0.75, 0.9, 0.99])
def test_magnitude_mask_meets_sparsity_exactly(target):
    w = np.random.default_rng(1).normal(size=(7, 13)).astype("float32")
    mask, threshold = masks.magnitude_mask(w, target)
    mask = np_(mask)
    assert mask.sum() == w.size - round(target * w.size)
    kept, pruned = np.abs(w)[mask == 1], np.abs(w)[mask == 0]
    if pruned.size:
        assert kept.min() >= pruned.max()
    assert float(np_(threshold)) == pytest.approx(kept.min())


def test_ties_do_not_break_the_exact_count():
    w = np.ones((10, 10), "float32")  # every weight ties
    mask, _ = masks.magnitude_mask(w, 0.37)
    assert np_(mask).sum() == 100 - 37


def test_block_sparsity_zeroes_whole_blocks():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8, 12)).astype("float32")
    mask, _ = masks.magnitude_mask(w, 0.5, block_size=(2, 3), block_pooling_type="AVG")
    blocks = np_(mask).reshape(4, 2, 4, 3)
    per_block = blocks.sum(axis=(1, 3))
    assert set(np.unique(per_block)) <= {0.0, 6.0}
    assert (per_block == 0).sum() == 8  # half of the 16 blocks


def test_block_pooling_max_differs_from_avg():
    w = np.array([[10.0, 0.0, 1.0, 1.0]], "float32")  # block 1: one big value
    avg, _ = masks.magnitude_mask(w, 0.5, block_size=(1, 2), block_pooling_type="AVG")
    mx, _ = masks.magnitude_mask(w, 0.5, block_size=(1, 2), block_pooling_type="MAX")
    np.testing.assert_array_equal(np_(avg), [[1, 1, 0, 0]])
    np.testing.assert_array_equal(np_(mx), [[1, 1, 0, 0]])
    w2 = np.array([[3.0, 0.0, 2.0, 2.0]], "float32")  # avg 1.5 vs 2, max 3 vs 2
    avg, _ = masks.magnitude_mask(w2, 0.5, block_size=(1, 2), block_pooling_type="AVG")
    mx, _ = masks.magnitude_mask(w2, 0.5, block_size=(1, 2), block_pooling_type="MAX")
    np.testing.assert_array_equal(np_(avg), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(np_(mx), [[1, 1, 0, 0]])


def test_block_sparsity_handles_partial_edge_blocks_and_1x1_convs():
    w = np.random.default_rng(3).normal(size=(1, 1, 5, 7)).astype("float32")
    mask, _ = masks.magnitude_mask(w, 0.5, block_size=(2, 2))
    assert np_(mask).shape == w.shape


@pytest.mark.parametrize("shape", [(8, 6), (3, 3, 8, 4), (3, 3, 6, 4)])
def test_m_by_n_mask_groups_along_input_channels(shape):
    w = np.random.default_rng(4).normal(size=shape).astype("float32")
    mask, _ = masks.m_by_n_mask(w, (2, 4))
    pruned = w * np_(mask)
    assert sparsity.is_pruned_m_by_n(pruned, (2, 4))
    assert not sparsity.is_pruned_m_by_n(w, (2, 4))
    # Within each group the survivors are the two largest magnitudes.
    moved = np.moveaxis(np.abs(w), -2, -1).reshape(-1, shape[-2])
    kept = np.moveaxis(np_(mask), -2, -1).reshape(-1, shape[-2])
    for row, keep in zip(moved, kept):
        for start in range(0, len(row) - len(row) % 4, 4):
            group, k = row[start:start + 4], keep[start:start + 4]
            assert k.sum() == 2 and group[k == 1].min() >= group[k == 0].max()


def test_is_pruned_m_by_n_detects_a_single_violation():
    w = np.zeros((8, 2), "float32")
    w[0:2, 0] = 1.0
    assert sparsity.is_pruned_m_by_n(w, (2, 4))
    w[2, 0] = 1.0  # three non-zeros in one group of four
    assert not sparsity.is_pruned_m_by_n(w, (2, 4))
    with pytest.raises(ValueError, match="rank"):
        sparsity.is_pruned_m_by_n(np.zeros(4), (2, 4))
