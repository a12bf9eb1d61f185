import threading

import numpy as np
import pandas as pd
import zarr

from traice.core.geometry import Box, grid
from traice.io.claims import CellMask, collect_index, write_masks
from traice.stages.stitch import compose, init_labels, stitch_block


def _claims(tmp_path):
    a = np.zeros((4, 40, 40), np.uint8)
    a[:, 5:35, 5:35] = 100
    b = np.zeros((4, 40, 40), np.uint8)
    b[:, 5:35, 5:35] = 150
    c = np.zeros((4, 40, 40), np.uint8)
    c[:, :, :] = 100  # ties with cell 1 where they overlap
    masks = [
        CellMask(1, Box((0, 10, 10), (4, 50, 50)), a, "ok"),
        CellMask(2, Box((0, 30, 30), (4, 70, 70)), b, "ok"),
        CellMask(3, Box((0, 0, 60), (4, 40, 100)), c, "ok"),
    ]
    write_masks(masks[:2], tmp_path / "b0.zarr")
    write_masks(masks[2:], tmp_path / "b1.zarr")
    return collect_index([tmp_path / "b0.zarr", tmp_path / "b1.zarr"])


def test_highest_claim_wins_and_ties_go_to_lower_id(tmp_path):
    index = _claims(tmp_path)
    lab = compose(Box.from_shape((4, 128, 128)), index)
    assert lab[0, 20, 20] == 1
    assert lab[0, 40, 40] == 2           # both claim: 150 > 100
    assert lab[0, 20, 65] == 3
    # cell 1 covers x 15..44, cell 3 starts at x 60: no overlap there; cell 2 vs 3 overlap at y 30..39, x 60..64
    assert lab[0, 35, 62] == 2


def test_blockwise_equals_whole_and_blocks_own_disjoint_chunks(tmp_path):
    index = _claims(tmp_path)
    shape = (4, 128, 128)
    whole = compose(Box.from_shape(shape), index)
    path = tmp_path / "seg.ome.zarr"
    init_labels(path, shape, (1.0, 0.5, 0.5), chunk=(4, 64, 64))
    blocks = list(grid(Box.from_shape(shape), (4, 64, 64)))
    threads = [threading.Thread(target=stitch_block, args=(path, b, index)) for b in blocks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    g = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(g["0"][...], whole)
    np.testing.assert_array_equal(g["1"][...], whole[:, ::2, ::2])
    # every block covers whole chunks at every level, so no two blocks share a chunk
    for key in g.array_keys():
        chunks = g[key].chunks
        fac = [a // b for a, b in zip(shape, g[key].shape)]
        seen = set()
        for b in blocks:
            lo = [s // f // c for s, f, c in zip(b.start, fac, chunks)]
            hi = [-(-e // f // c) for e, f, c in zip(b.stop, fac, chunks)]
            keys = {(i, j, k) for i in range(lo[0], hi[0]) for j in range(lo[1], hi[1]) for k in range(lo[2], hi[2])}
            assert not keys & seen
            seen |= keys


def test_empty_claims_leave_background(tmp_path):
    write_masks([CellMask(1, Box((0, 0, 0), (2, 8, 8)), np.zeros((2, 8, 8), np.uint8), "no foreground at the soma")], tmp_path / "e.zarr")
    index = collect_index([tmp_path / "e.zarr"])
    assert index["status"].tolist() == ["no foreground at the soma"]
    assert compose(Box.from_shape((2, 8, 8)), index).max() == 0
    assert isinstance(index, pd.DataFrame)
