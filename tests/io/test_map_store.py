"""One-pass maps on disk: written per detect job, read back over any box."""

from __future__ import annotations

import numpy as np
import pytest

from traice.core.geometry import Box
from traice.core.maps import decode_offsets, decode_probability, encode
from traice.io.maps import ArrayMaps, MapReader, map_writer, write_map_index, write_maps


def _maps(shape, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random((2, *shape)), rng.uniform(-1, 1, (3, *shape))]).astype(np.float32)


def test_maps_read_back_across_tiles_and_jobs(tmp_path):
    whole = _maps((8, 40, 60))
    tiles = [(0, Box((0, 0, 0), (8, 40, 30))), (1, Box((0, 0, 30), (8, 20, 60))), (2, Box((0, 20, 30), (8, 40, 60)))]
    write_maps([(t, core, whole[(slice(None), *core.slices)]) for t, core in tiles[:2]], tmp_path / "batch_0.zarr")
    write_maps([(t, core, whole[(slice(None), *core.slices)]) for t, core in tiles[2:]], tmp_path / "batch_1.zarr")
    groups = [tmp_path / "batch_0.zarr", tmp_path / "batch_1.zarr"]
    write_map_index(groups, tmp_path / "index.parquet")
    reader = MapReader.from_index(tmp_path / "index.parquet")
    assert reader.tiles == 3
    prob, off = encode(whole)
    box = Box((2, 10, 20), (7, 35, 50))  # overlaps all three tiles
    fg, offsets = reader.read(box)
    np.testing.assert_array_equal(fg, decode_probability(prob[1])[box.slices])
    np.testing.assert_array_equal(offsets, decode_offsets(off)[(slice(None), *box.slices)])
    np.testing.assert_array_equal(ArrayMaps(whole).read(box)[0], fg)
    assert reader.stored_bytes() > 0
    assert list(reader.opened) == ["batch_0.zarr", "batch_1.zarr"]
    # a box within one tile opens only that tile's group
    one = MapReader.from_index(tmp_path / "index.parquet")
    np.testing.assert_array_equal(one.read(Box((0, 0, 0), (8, 10, 10)))[0], decode_probability(prob[1])[:, :10, :10])
    assert list(one.opened) == ["batch_0.zarr"]
    # outside every tile: background
    outside = MapReader.from_groups([tmp_path / "batch_0.zarr"]).read(Box((0, 30, 40), (8, 40, 60)))
    assert (outside[0] == 0).all() and (outside[1] == 0).all()


def test_maps_must_cover_their_tile_and_exist(tmp_path):
    with pytest.raises(ValueError, match="do not cover"):
        write_maps([(0, Box((0, 0, 0), (4, 4, 4)), _maps((4, 4, 5)))], tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()  # nothing half-written
    write_maps([], tmp_path / "empty.zarr")
    with pytest.raises(ValueError, match="one-pass"):
        MapReader.from_groups([tmp_path / "empty.zarr"])


def test_a_job_writes_its_tiles_one_at_a_time_and_all_or_nothing(tmp_path):
    """What a detect job does: each tile's maps stored as it comes (the caller may reuse its arrays at once); a job
    that fails after its first tile leaves no group, one that ends leaves every tile."""
    core = Box((0, 0, 0), (4, 6, 8))
    with pytest.raises(RuntimeError, match="killed"):
        with map_writer(tmp_path / "batch_0.zarr") as add:
            add(0, core, _maps((4, 6, 8)))
            raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
    first, second = _maps((4, 6, 8), seed=1), _maps((4, 6, 8), seed=2)
    with map_writer(tmp_path / "batch_0.zarr") as add:
        buffer = first.copy()
        add(0, core, buffer)
        buffer[...] = second  # the first tile's maps are stored already, not referenced
        add(1, Box((0, 0, 8), (4, 6, 16)), buffer)
    reader = MapReader.from_groups([tmp_path / "batch_0.zarr"])
    fg, _ = reader.read(Box((0, 0, 0), (4, 6, 16)))
    np.testing.assert_array_equal(fg[..., :8], decode_probability(encode(first)[0][1]))
    np.testing.assert_array_equal(fg[..., 8:], decode_probability(encode(second)[0][1]))

