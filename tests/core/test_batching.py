"""Batch sizes that adapt to the sample: a few small jobs for a field, a bounded number for a whole brain."""

from __future__ import annotations

import pandas as pd
import pytest

from traice.core.batching import batch_size, block_shape, blocks_touching, cell_batch, n_batches
from traice.core.geometry import Box, grid


@pytest.mark.parametrize("n_items", [0, 1, 31, 32, 33, 1000, 4_000_000])
def test_jobs_never_exceed_max_jobs_and_batches_cover_every_item(n_items):
    size = batch_size(n_items, 32, 1000)
    jobs = n_batches(n_items, 32, 1000)
    assert size >= 32 and jobs <= 1000
    assert (jobs - 1) * size < n_items <= jobs * size or n_items == jobs == 0


def test_small_samples_keep_the_configured_batch_and_large_ones_grow():
    assert batch_size(58, 6, 1000) == 6 and n_batches(58, 6, 1000) == 10
    assert batch_size(4_000_000, 500, 1000) == 4000 and n_batches(4_000_000, 500, 1000) == 1000
    with pytest.raises(ValueError, match="positive"):
        batch_size(10, 0, 5)


def test_cell_batches_partition_the_cells_in_id_order():
    cells = pd.DataFrame({"cell_id": [5, 3, 9, 1, 7, 2, 8]})
    size = batch_size(len(cells), 2, 3)  # 3 jobs at most: 3 cells each
    parts = [cell_batch(cells, b, size)["cell_id"].tolist() for b in range(n_batches(len(cells), 2, 3))]
    assert parts == [[1, 2, 3], [5, 7, 8], [9]]


def test_blocks_touching_counts_the_grid_blocks_a_box_meets():
    block = (4, 8, 8)
    for start, stop in [((0, 0, 0), (4, 8, 8)), ((3, 7, 1), (9, 17, 8)), ((5, 5, 5), (5, 9, 9))]:
        box = Box(start, stop)
        brute = sum(1 for b in grid(Box.from_shape((16, 32, 32)), block) if b.intersects(box))
        assert blocks_touching(start, stop, block) == brute


def test_stitch_blocks_grow_until_the_jobs_fit():
    shape = (4800, 20000, 25000)
    chunk, per = (32, 256, 256), (1, 2, 2)
    whole = [((0, 0, 0), shape)]
    block = block_shape(chunk, per, shape, whole, 1000)
    assert blocks_touching(*whole[0], block) <= 1000
    assert all(b % c == 0 for b, c in zip(block, chunk))  # whole label chunks
    # no larger than needed: each doubling at most halves the count, so the last one leaves over half the cap
    assert blocks_touching(*whole[0], block) > 500
    # a small field, or a small ROI of a brain, keeps the configured block
    assert block_shape(chunk, per, (32, 1024, 1024), [((0, 0, 0), (32, 1024, 1024))], 1000) == (32, 512, 512)
    assert block_shape(chunk, per, shape, [((100, 100, 100), (200, 900, 900))], 1000) == (32, 512, 512)
    # one block over the image stops the growth even when max_jobs cannot be met otherwise
    assert block_shape(chunk, per, (32, 512, 512), [((0, 0, 0), (32, 512, 512))], 1) == (32, 512, 512)
