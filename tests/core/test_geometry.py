import numpy as np
import pytest

from traice.core.batching import batches
from traice.core.geometry import Box, Tile, grid, tile_grid, um_to_voxels


def test_box_basics():
    b = Box((1, 2, 3), (4, 6, 9))
    assert b.shape == (3, 4, 6)
    assert b.size == 72
    assert b.slices == (slice(1, 4), slice(2, 6), slice(3, 9))
    assert b.intersect(Box((0, 0, 0), (2, 3, 4))) == Box((1, 2, 3), (2, 3, 4))
    assert b.intersect(Box((10, 10, 10), (11, 11, 11))).empty
    assert b.relative_to(Box((1, 1, 1), (9, 9, 9))) == Box((0, 1, 2), (3, 5, 8))
    with pytest.raises(ValueError):
        Box((0, 0, 5), (1, 1, 4))


def test_box_um_round_trip():
    spacing = (1.25, 0.4, 0.4)
    b = Box.from_um((0, 0.4, 0.8), (2.5, 4.0, 4.1), spacing)
    assert b == Box((0, 1, 2), (2, 10, 11))
    start, stop = Box((2, 10, 10), (4, 20, 20)).to_um(spacing)
    assert start == (2.5, 4.0, 4.0) and stop == (5.0, 8.0, 8.0)


def test_half_open_contains():
    b = Box((0, 0, 0), (10, 10, 10))
    assert b.contains((0, 0, 0))
    assert b.contains((9.999, 5, 5))
    assert not b.contains((10, 5, 5))
    pts = np.array([[0, 0, 0], [10, 0, 0], [-0.1, 1, 1]])
    assert b.contains_points(pts).tolist() == [True, False, False]


def test_shift_inside_keeps_size_at_borders():
    bounds = Box((0, 0, 0), (20, 100, 100))
    b = Box.around((1, 98, 50), (5, 10, 10))
    s = b.shift_inside(bounds)
    assert s.shape == b.shape
    assert s.intersect(bounds) == s
    big = Box((-5, 0, 0), (40, 10, 10)).shift_inside(bounds)
    assert big.start[0] == 0 and big.stop[0] == 20


def test_grid_covers_disjointly():
    bounds = Box((0, 3, 0), (17, 50, 33))
    cover = np.zeros(bounds.stop, int)
    for b in grid(bounds, (8, 16, 10)):
        cover[b.slices] += 1
    assert (cover[bounds.slices] == 1).all()
    assert cover.sum() == bounds.size


def test_tile_grid_halo_clipped_to_bounds():
    bounds = Box.from_shape((20, 100, 100))
    tiles = tile_grid(bounds, bounds, (20, 50, 50), (2, 5, 5))
    assert len(tiles) == 4
    for t in tiles:
        assert t.read.intersect(bounds) == t.read
        assert t.core.intersect(t.read) == t.core
    assert tiles[0].read == Box((0, 0, 0), (20, 55, 55))


def test_owner_rule_point_on_border_is_owned_once():
    bounds = Box.from_shape((10, 64, 64))
    tiles = tile_grid(bounds, bounds, (10, 32, 32), (2, 8, 8))
    for point in [(5, 32, 32), (5, 31.9999, 32), (0, 0, 0), (9.5, 63.5, 63.5), (5, 32, 10)]:
        owners = [t for t in tiles if t.owns(point)]
        assert len(owners) == 1, point
        # the halo of neighbours also sees the point, but does not own it
        assert sum(t.read.contains(point) for t in tiles) >= 1


def test_um_to_voxels_and_batches():
    assert um_to_voxels(16, (1.25, 0.4, 0.4)) == (13, 40, 40)
    assert um_to_voxels((2.5, 0.4, 0.5), (1.25, 0.4, 0.4)) == (2, 1, 2)
    assert [list(b) for b in batches(5, 2)] == [[0, 1], [2, 3], [4]]
    assert batches(0, 3) == []
    assert isinstance(Tile(0, Box.from_shape((1, 1, 1)), Box.from_shape((1, 1, 1))), Tile)
