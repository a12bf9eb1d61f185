"""Stage-2 window placement and sampling, shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from traice.core.windows import block_mean, window_box, window_point
from traice.core.geometry import Box, distance_um


def test_window_box_centred_then_moved_inside():
    assert window_box((50, 50, 50), (10, 20, 20), (100, 100, 100)) == Box((45, 40, 40), (55, 60, 60))
    assert window_box((2, 95, 50), (10, 20, 20), (100, 100, 100)) == Box((0, 80, 40), (10, 100, 60))
    assert window_box((50, 50, 50), (10, 20, 20), (100, 100, 100), shift=(1, -3, 0)) == Box((46, 37, 40), (56, 57, 60))
    # an axis smaller than the window: start at 0, keep the window's size (the rest is padding)
    assert window_box((3, 50, 50), (16, 20, 20), (8, 100, 100)) == Box((0, 40, 40), (16, 60, 60))


def test_block_mean_and_the_coarse_frame():
    a = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    out = block_mean(a, (1, 2, 2))
    assert out.shape == (2, 2, 2) and out[0, 0, 0] == np.mean([0, 1, 4, 5])
    with pytest.raises(ValueError, match="does not divide"):
        block_mean(a, (1, 3, 2))
    box = Box((10, 20, 20), (12, 24, 24))
    # image voxels 20 and 21 average into coarse voxel 0, centred at 20.5
    np.testing.assert_allclose(window_point((10, 20.5, 22.5), box, (1, 2, 2)), [0, 0, 1])
    d = distance_um((2, 2, 2), (0, 0, 1), (1.25, 0.8, 0.8))  # the coarse grid: µm per voxel x step
    assert d[0, 0, 1] == 0 and d[1, 0, 1] == pytest.approx(1.25) and d[0, 0, 0] == pytest.approx(0.8)
