"""The tissue mask read at level-0 voxels, and its core away from the blurred edge."""

from __future__ import annotations

import numpy as np

from traice.core.geometry import Box
from traice.core.tissue import TISSUE_BLUR_UM, tissue_core, tissue_in_box


def test_tissue_in_box_reads_the_coarse_voxel_each_voxel_centre_lies_in():
    mask = np.zeros((2, 4, 4), bool)
    mask[1, 2:, 1] = True  # coarse voxels of 10 x 8 x 8 µm
    inside = tissue_in_box(Box((0, 2, 0), (8, 18, 16)), mask, (10.0, 8.0, 8.0), (2.5, 2.0, 2.0))
    assert inside.shape == (8, 16, 16)
    z, y, x = (np.arange(a, b) + 0.5 for a, b in zip((0, 2, 0), (8, 18, 16)))
    expected = (z[:, None, None] * 2.5 >= 10) & (y[None, :, None] * 2.0 >= 16) & \
        (x[None, None, :] * 2.0 >= 8) & (x[None, None, :] * 2.0 < 16)
    assert 0 < expected.sum() < expected.size / 4
    np.testing.assert_array_equal(inside, expected)


def test_tissue_core_keeps_what_lies_deeper_than_the_blur_and_the_view_faces_are_not_an_edge():
    spacing = (10.0, 10.0, 10.0)
    mask = np.zeros((4, 20, 20), bool)
    mask[:, :, :12] = True  # tissue up to x = 120 µm; the view's faces are not an edge
    core = tissue_core(mask, spacing)
    depth = 120 - (np.arange(20) + 0.5) * 10  # from each voxel centre to the edge, roughly
    assert core[:, :, depth > TISSUE_BLUR_UM + 10].all() and not core[:, :, depth < TISSUE_BLUR_UM].any()
    assert core[0, 0, 0] and core[-1, -1, 0]
    thin = np.zeros((4, 20, 20), bool)
    thin[:, :, 5:7] = True  # nowhere that deep: the mask itself
    np.testing.assert_array_equal(tissue_core(thin, spacing), thin)
    whole = np.ones((4, 20, 20), bool)  # a view without empty space: all of it
    np.testing.assert_array_equal(tissue_core(whole, spacing), whole)
