"""Magnitude masks: which weights survive pruning.

All functions take and return backend tensors (they use `keras.ops`) and run
outside the training step, when a schedule asks for a mask update.

* `magnitude_mask`: keep the `round((1 - sparsity) * n)` entries of largest
  magnitude. The count is exact: ties are broken by position, not by a
  threshold that would keep every tied value.
* Block sparsity: the same ranking over `block_size` tiles of a 2-D weight,
  scored by the mean (AVG) or max (MAX) magnitude of each tile, so whole tiles
  are zeroed (useful for kernels that skip zero blocks).
* N:M sparsity (`m_by_n_mask`): `m` zeros in every `n` consecutive weights
  along the input-channel axis (2:4 is what sparse tensor cores run), as in
  tfmot's `sparsity_m_by_n`.
"""

import math

import numpy as np
from keras import ops


def _keep_count(size, sparsity):
    return int(size - round(float(sparsity) * size))


def _top_k_mask(scores, keep):
    """1 for the `keep` largest entries of the 1-D `scores`, else 0."""
    size = int(scores.shape[0])
    if keep >= size:
        return ops.ones_like(scores)
    if keep <= 0:
        return ops.zeros_like(scores)
    # Rank of each entry in ascending order; ties get distinct ranks.
    ranks = ops.argsort(ops.argsort(scores))
    return ops.cast(ops.greater_equal(ranks, size - keep), scores.dtype)


def _threshold(scores, mask):
    """The smallest kept score: everything below it was pruned."""
    kept = ops.where(mask > 0, scores, ops.full_like(scores, np.inf))
    smallest = ops.min(kept)
    return ops.where(ops.isfinite(smallest), smallest, ops.max(scores))


def as_2d_for_blocks(shape):
    """The 2-D shape block sparsity sees: unit dimensions of a kernel of
    another rank (a 1x1 convolution's `(1, 1, in, out)`) squeezed out.

    Returns None when the weight does not squeeze to two dimensions.
    """
    if len(shape) == 2:
        return tuple(shape)
    dims = tuple(d for d in shape if d != 1)
    return dims if len(dims) == 2 else None


def magnitude_mask(weight, sparsity, block_size=(1, 1), block_pooling_type="AVG"):
    """Returns `(mask, threshold)` pruning `sparsity` of `weight` by magnitude.

    Args:
      weight: a weight tensor or variable.
      sparsity: fraction of entries (or blocks) to zero, in [0, 1).
      block_size: `(rows, cols)` tile for block sparsity; `(1, 1)` prunes
        single weights. Blocks need a weight that is 2-D once unit dimensions
        are squeezed (Dense kernels, 1x1 convolutions).
      block_pooling_type: 'AVG' or 'MAX': how a tile's magnitude is scored.
    """
    weight = ops.convert_to_tensor(weight)
    magnitude = ops.abs(weight)
    if tuple(block_size) == (1, 1):
        flat = ops.reshape(magnitude, (-1,))
        mask = _top_k_mask(flat, _keep_count(flat.shape[0], sparsity))
        return ops.reshape(mask, weight.shape), _threshold(flat, mask)

    rows, cols = as_2d_for_blocks(tuple(weight.shape))
    br, bc = block_size
    grid = (math.ceil(rows / br), math.ceil(cols / bc))
    padded = ops.pad(
        ops.reshape(magnitude, (rows, cols)),
        [[0, grid[0] * br - rows], [0, grid[1] * bc - cols]],
    )
    tiles = ops.reshape(padded, (grid[0], br, grid[1], bc))
    pool = ops.mean if block_pooling_type == "AVG" else ops.max
    scores = ops.reshape(pool(tiles, axis=(1, 3)), (-1,))
    block_mask = _top_k_mask(scores, _keep_count(scores.shape[0], sparsity))
    mask = ops.repeat(
        ops.repeat(ops.reshape(block_mask, grid), br, axis=0), bc, axis=1
    )[:rows, :cols]
    return ops.reshape(mask, weight.shape), _threshold(scores, block_mask)


def _groups_along_input_channels(tensor, n):
    """Moves axis -2 (input channels) last and cuts it into groups of `n`.

    Returns `(groups, restore)`: `groups` has shape `(-1, n)` (zero padded)
    and `restore(groups_like)` undoes the transformation.
    """
    shape = tuple(tensor.shape)
    rank = len(shape)
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    moved = ops.transpose(tensor, perm)
    moved_shape = tuple(moved.shape)
    channels = moved_shape[-1]
    pad = (-channels) % n
    padded = ops.pad(moved, [[0, 0]] * (rank - 1) + [[0, pad]])
    groups = ops.reshape(padded, (-1, n))

    def restore(values):
        values = ops.reshape(values, moved_shape[:-1] + (channels + pad,))
        values = values[..., :channels]
        return ops.transpose(values, perm)  # the swap is its own inverse

    return groups, restore


def m_by_n_mask(weight, m_by_n=(2, 4)):
    """Returns `(mask, threshold)` with `m` zeros in every `n` weights.

    Groups run along the input-channel axis (axis -2: a Dense kernel's rows,
    a convolution kernel's input channels), as sparse matrix kernels read
    them. `threshold` is the smallest kept magnitude.
    """
    m, n = m_by_n
    weight = ops.convert_to_tensor(weight)
    groups, restore = _groups_along_input_channels(ops.abs(weight), n)
    ranks = ops.argsort(ops.argsort(groups, axis=-1), axis=-1)
    group_mask = ops.cast(ops.greater_equal(ranks, m), groups.dtype)
    mask = restore(group_mask)
    flat = ops.reshape(ops.abs(weight), (-1,))
    return mask, _threshold(flat, ops.reshape(mask, (-1,)))


def is_pruned_m_by_n(weight, m_by_n=(2, 4)):
    """True when every `n` consecutive weights along the input-channel axis
    (axis -2) hold at least `m` zeros (the last, shorter group is counted as
    if zero-padded to `n`).

    Use it to check a stripped kernel before handing it to a 2:4 sparse
    runtime.
    """
    m, n = m_by_n
    weight = ops.convert_to_tensor(weight)
    if len(weight.shape) < 2:
        raise ValueError(
            f"N:M sparsity is defined on weights of rank >= 2; got shape "
            f"{tuple(weight.shape)}."
        )
    groups, _ = _groups_along_input_channels(weight, n)
    zeros = ops.sum(ops.cast(ops.equal(groups, 0), "int32"), axis=-1)
    return bool(ops.convert_to_numpy(ops.all(zeros >= m)))
