"""The networks' grid: blocks at other voxel sizes go onto it and their maps come back onto the block."""

from __future__ import annotations

import numpy as np
import pytest

from traice.core.grid import (MODEL_SPACING_UM, from_model_grid, grid_notes, model_shape, model_voxels, needs_resampling,
                              to_model_grid)


def test_which_voxels_are_resampled():
    assert not needs_resampling(MODEL_SPACING_UM) and not needs_resampling((1.27, 0.41, 0.39))
    assert needs_resampling((5, 2, 2)) and needs_resampling((1.25, 0.4, 0.5))


def test_shapes_keep_the_extent_in_micrometres():
    assert model_shape((30, 510, 667), (5, 2, 2)) == (120, 2550, 3335)
    assert model_voxels((64, 512, 512), (5, 2, 2)) == (16, 102, 102)  # a tile covers the same µm
    assert model_voxels((64, 512, 512), (1.26, 0.4, 0.4)) == (64, 512, 512)


@pytest.mark.parametrize("spacing", [(2.5, 0.8, 0.8), (1.0, 0.32, 0.32)])
def test_a_blob_stays_where_it_is_through_both_resamplings(spacing):
    shape = model_voxels((32, 128, 128), spacing)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    centre = np.array([18.0, 25.0, 30.0])  # µm
    block = np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / (2 * 3.0**2)) * 1000
    on_grid = to_model_grid(block, spacing)
    assert on_grid.shape == model_shape(block.shape, spacing) and on_grid.dtype == np.float32
    peak = np.array(np.unravel_index(on_grid.argmax(), on_grid.shape)) * np.asarray(MODEL_SPACING_UM)
    assert np.abs(peak - centre).max() <= max(MODEL_SPACING_UM) + 1e-6
    back = from_model_grid(on_grid[None], block.shape, probability_channels=0)  # interpolated as offsets are
    assert back.shape == (1, *block.shape)
    assert np.abs(back[0] - block).max() < 0.1 * block.max()


def test_only_the_finer_axes_are_averaged_onto_the_grid():
    from traice.core.grid import shrink_to_grid

    noise = np.random.default_rng(0).normal(0, 1, size=(20, 64, 64)).astype(np.float32)
    finer_in_plane = shrink_to_grid(noise, (2.5, 0.2, 0.2))  # z coarser (kept), y and x twice finer (halved)
    assert finer_in_plane.shape == (20, 32, 32) and finer_in_plane.dtype == np.float32
    assert finer_in_plane.std() < 0.6  # averaging ~4 voxels per grid voxel
    assert np.array_equal(shrink_to_grid(noise, (2.5, 0.8, 0.8)), noise)  # nothing finer: nothing averaged


def test_a_thin_process_keeps_its_width_on_finer_voxels_and_offsets_stay_smooth():
    on_grid = np.zeros((3, 8, 20, 20), np.float32)
    on_grid[:2, :, 10, :] = 0.9                         # a process one grid voxel (0.4 µm) wide along x
    on_grid[2] = np.linspace(0, 1, 20)[None, None, :]   # an offset ramp
    spacing = (1.0, 0.2, 0.2)                           # twice finer in y and x than the grid
    shape = (10, 40, 40)
    back = from_model_grid(on_grid, shape, probability_channels=2)
    width_um = (back[1, 5, :, 20] > 0.1).sum() * spacing[1]
    assert width_um == pytest.approx(MODEL_SPACING_UM[1])   # linear interpolation made it 0.8 µm wide
    assert set(np.unique(back[:2])) <= {0.0, np.float32(0.9)}
    assert len(np.unique(back[2, 0, 0])) > 30               # the offsets are interpolated, not repeated
    coarse = from_model_grid(on_grid, (4, 10, 10), probability_channels=2)
    assert (coarse[1, 2, :, 5] > 0.1).sum() >= 1            # a coarser block keeps the thin process


def _lag1(x: np.ndarray, axis: int) -> float:
    """Correlation of neighbouring voxels along ``axis``."""
    a, b = np.moveaxis(x, axis, 0)[:-1].ravel(), np.moveaxis(x, axis, 0)[1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_coarse_voxels_reach_the_networks_with_the_white_background_they_were_trained_on():
    """Interpolated onto the grid, a coarser image's noise is correlated over a coarse voxel (blobs the size
    of a process); the networks' input puts back the white noise the interpolation smoothed away."""
    from traice.core.grid import grid_input
    from traice.core.intensity import model_input

    stats = {"median": 100.0, "sigma": 10.0}
    rng = np.random.default_rng(3)
    grid_noise = rng.normal(100, 10, size=(16, 128, 128)).astype(np.float32)
    coarse_noise = rng.normal(100, 10, size=(8, 64, 64)).astype(np.float32)
    trained_on = model_input(grid_noise, stats)
    assert np.array_equal(grid_input(grid_noise, MODEL_SPACING_UM, stats), trained_on)  # the grid: as it is

    interpolated = model_input(to_model_grid(coarse_noise, (2.5, 0.8, 0.8)), stats)
    restored = grid_input(coarse_noise, (2.5, 0.8, 0.8), stats)
    assert restored.shape == (16, 128, 128) and restored.dtype == np.float32
    for axis in range(3):
        assert _lag1(trained_on, axis) < 0.05
        assert _lag1(interpolated, axis) > 0.4                  # blobs two grid voxels wide
        assert _lag1(restored, axis) < 0.5 * _lag1(interpolated, axis)
    assert interpolated.std() < 0.8 * trained_on.std() < restored.std() < 1.3 * trained_on.std()
    assert np.array_equal(restored, grid_input(coarse_noise, (2.5, 0.8, 0.8), stats))  # the same every time
    # the signal is where it was: a bright coarse voxel's centre stays the brightest on the grid
    spot = coarse_noise.copy()
    spot[4, 32, 32] += 200
    assert np.unravel_index(grid_input(spot, (2.5, 0.8, 0.8), stats).argmax(), (16, 128, 128)) in {
        (z, y, x) for z in (8, 9) for y in (64, 65) for x in (64, 65)}


def _variance_by_phase(x: np.ndarray, axis: int, period: int) -> np.ndarray:
    """``(period,)``: the variance of ``x`` over the voxels whose index along ``axis`` is each phase of ``period``."""
    along = np.moveaxis(x, axis, 0)
    return np.array([along[phase::period].var() for phase in range(period)])


def test_finer_voxels_reach_the_networks_with_noise_of_one_sigma_in_every_voxel():
    """Averaged onto the grid, 0.8x finer voxels (5 to every 4 grid voxels) leave the noise's variance
    periodic along each axis; the networks' input evens it out at one sigma, as they were trained, and keeps
    the signal where it is."""
    from traice.core.grid import grid_input
    from traice.core.intensity import expand, grid_stats, normalise

    spacing = (1.0, 0.32, 0.32)
    noise = np.random.default_rng(4).normal(100, 10, size=(20, 200, 200)).astype(np.float32)
    averaged = to_model_grid(noise, spacing)
    stats = {"median": 100.0, "sigma": 10.0, "grid_median": 100.0, "grid_sigma": float(averaged.std())}
    as_averaged = normalise(averaged, grid_stats(stats))
    evened = expand(grid_input(noise, spacing, stats))
    assert evened.shape == (16, 160, 160) and evened.dtype == np.float32
    for axis in range(3):
        before, after = _variance_by_phase(as_averaged, axis, 4), _variance_by_phase(evened, axis, 4)
        assert before.max() / before.min() > 1.3              # 0.23-0.34 of a finer voxel's, by phase
        assert after.max() / after.min() < 1.06
        assert np.all(np.abs(after - 1) < 0.06)
    assert np.array_equal(grid_input(noise, spacing, stats), grid_input(noise, spacing, stats))
    spot = noise.copy()
    spot[10, 100, 100] += 2000
    assert np.unravel_index(expand(grid_input(spot, spacing, stats)).argmax(), evened.shape) in {
        (z, y, x) for z in (7, 8) for y in (79, 80) for x in (79, 80)}


def test_only_the_coarser_axes_get_their_noise_mended_and_the_block_is_left_as_it_was():
    """z twice coarser and y, x finer than the grid (a light-sheet's planes): the correlation along z is
    mended; the block read from the image is not written to; a caller's exact window shape is kept."""
    from traice.core.grid import grid_input
    from traice.core.intensity import model_input

    stats = {"median": 100.0, "sigma": 10.0}
    block = np.random.default_rng(5).poisson(100, size=(8, 80, 80)).astype(np.uint16)
    kept = block.copy()
    spacing = (2.5, 0.32, 0.32)
    interpolated = model_input(to_model_grid(block, spacing), stats)
    mended = grid_input(block, spacing, stats)
    assert np.array_equal(block, kept)
    assert mended.shape == interpolated.shape == (16, 64, 64) and mended.dtype == np.float32
    assert _lag1(interpolated, 0) > 0.4 and _lag1(mended, 0) < 0.5 * _lag1(interpolated, 0)
    assert grid_input(block, spacing, stats, (16, 60, 60)).shape == (16, 60, 60)


def test_notes_name_the_axes_coarser_than_the_grid():
    assert grid_notes(MODEL_SPACING_UM) == grid_notes((1.3, 0.41, 0.39)) == []  # within the tolerance
    finer, along_z, in_plane = grid_notes((1.0, 0.32, 0.32)), grid_notes((2.5, 0.4, 0.4)), grid_notes((1.25, 0.8, 0.8))
    assert len(finer) == 1 and "0.8 x 0.8 x 0.8 of the grid's" in finer[0]
    assert len(along_z) == 2 and "along z" in along_z[1]
    assert len(in_plane) == 2 and "in the plane" in in_plane[1]
    assert len(grid_notes((2.5, 0.8, 0.8))) == 3
