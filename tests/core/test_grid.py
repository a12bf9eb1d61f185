"""The networks' grid: blocks at other voxel sizes go onto it and their maps come back onto the block."""

from __future__ import annotations

import numpy as np
import pytest

from traice.core.grid import (MODEL_SPACING_UM, from_model_grid, model_shape, model_voxels, needs_resampling,
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
