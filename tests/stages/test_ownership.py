"""Ownership of the one-pass foreground: seeded geodesic growth and offset voting, stitched by the highest claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from traice.core.geometry import Box
from traice.core.maps import OFFSET_SCALE_UM
from traice.io.claims import collect_index, write_masks
from traice.io.maps import ArrayMaps
from traice.io.ome import ArrayImage
from traice.stages.segment import SegmentParams
from traice.stages.segment.ownership import growth_claim, segment_owned
from traice.stages.stitch import compose

SPACING = np.array([1.25, 0.4, 0.4])
SHAPE = (8, 40, 120)
SOMAS = np.array([[4.0, 20.0, 20.0], [4.0, 20.0, 80.0]])


def _maps(foreground: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Maps with this foreground and offsets pointing each voxel at soma ``owner`` (1 or 2; 0: none)."""
    maps = np.zeros((5, *SHAPE), np.float32)
    maps[1] = foreground
    grid = np.indices(SHAPE).astype(np.float32)
    for cell, centre in enumerate(SOMAS, start=1):
        at = owner == cell
        for axis in range(3):
            maps[2 + axis][at] = (centre[axis] - grid[axis][at]) * SPACING[axis] / OFFSET_SCALE_UM
    return maps


def _balls(fg: np.ndarray) -> None:
    grid = np.indices(SHAPE)
    for centre in SOMAS:
        fg[np.sqrt((((grid - centre[:, None, None, None]) * SPACING[:, None, None, None]) ** 2).sum(0)) <= 3.0] = 1.0


def _owned(maps: np.ndarray, method: str, tmp_path, radius_um: float = 40.0, bridge_um: float = 0.0) -> np.ndarray:
    cells = pd.DataFrame({"cell_id": [1, 2], "z": SOMAS[:, 0], "y": SOMAS[:, 1], "x": SOMAS[:, 2]})
    image = ArrayImage(np.zeros(SHAPE, np.uint16), SPACING)
    params = SegmentParams(method=method, radius_um=radius_um, bridge_um=bridge_um)
    masks = segment_owned(image, cells, {}, params, ArrayMaps(maps))
    assert [m.status for m in masks] == ["ok", "ok"]
    write_masks(masks, tmp_path / f"{method}.zarr")
    return compose(Box.from_shape(SHAPE), collect_index([tmp_path / f"{method}.zarr"]))


@pytest.mark.parametrize("method", ["growth", "votes"])
def test_a_process_goes_to_the_soma_it_grows_from(method, tmp_path):
    fg = np.zeros(SHAPE, np.float32)
    _balls(fg)
    fg[3:6, 19:22, 20:66] = 0.9       # cell 1's process, ending 2.6 µm from cell 2's soma surface
    fg[3:6, 30:33, 100:110] = 0.9     # a blob touching no soma
    owner = np.where(fg > 0, 1, 0)
    owner[:, :, 60:][fg[:, :, 60:] > 0] = 2
    owner[3:6, 19:22, 20:66] = 1
    labels = _owned(_maps(fg, owner), method, tmp_path)
    assert (labels[3:6, 19:22, 28:66] == 1).all()
    assert (labels[4, 20, 78:83] == 2).all()
    assert (labels[3:6, 30:33, 100:110] == 0).all()
    assert (labels[fg == 0] == 0).all()


def test_growth_and_votes_share_a_bridge_differently(tmp_path):
    """Foreground bridges the two somas; the offsets say the split is at x = 35, nearer soma 1.
    Growth splits at the geodesic midpoint (x = 50); votes follow the offsets."""
    fg = np.zeros(SHAPE, np.float32)
    _balls(fg)
    fg[3:6, 19:22, 20:81] = 0.9
    owner = np.zeros(SHAPE, int)
    owner[fg > 0] = np.where(np.indices(SHAPE)[2][fg > 0] < 35, 1, 2)
    maps = _maps(fg, owner)
    growth = _owned(maps, "growth", tmp_path)
    votes = _owned(maps, "votes", tmp_path)
    assert (growth[4, 20, 30:46] == 1).all() and (growth[4, 20, 55:70] == 2).all()
    assert (votes[4, 20, 26:34] == 1).all() and (votes[4, 20, 37:70] == 2).all()


def test_radius_limits_the_cell(tmp_path):
    fg = np.zeros(SHAPE, np.float32)
    _balls(fg)
    fg[3:6, 19:22, 20:60] = 0.9       # 16 µm of process from soma 1
    labels = _owned(_maps(fg, np.where(fg > 0, 1, 0)), "growth", tmp_path, radius_um=8.0)
    assert (labels[4, 20, 20:38] == 1).all()  # within 8 µm (20 voxels)
    assert (labels[4, 20, 42:60] == 0).all()


@pytest.mark.parametrize("method", ["growth", "votes"])
def test_a_cell_crosses_a_short_break_in_its_process_but_not_a_wide_gap(method, tmp_path):
    fg = np.zeros(SHAPE, np.float32)
    _balls(fg)
    fg[3:6, 19:22, 20:50] = 0.9       # cell 1's process ...
    fg[3:6, 19:22, 55:65] = 0.9       # ... after a break of 5 voxels (2 µm)
    fg[3:6, 30:33, 40:50] = 0.9       # a blob 3.2 µm beside the process
    owner = np.where(fg > 0, 1, 0)
    owner[:, :, 70:][fg[:, :, 70:] > 0] = 2
    maps = _maps(fg, owner)
    unbridged = _owned(maps, method, tmp_path / "off", bridge_um=0.0)
    bridged = _owned(maps, method, tmp_path / "on", bridge_um=3.0)
    assert (unbridged[3:6, 19:22, 55:65] == 0).all()
    assert (bridged[3:6, 19:22, 55:65] == 1).all()
    assert (bridged[3:6, 19:22, 50:55] == 0).all()   # the break itself stays background
    assert (bridged[3:6, 30:33, 40:50] == 0).all()


def test_far_growth_claims_still_favour_the_nearer_soma():
    """A faint process 120 µm long, a soma at each end: the path cost passes 500 µm mid-way, and each voxel's
    higher claim is still its nearer soma's."""
    spacing = (1.25, 0.4, 0.4)
    fg = np.full((1, 1, 300), 0.11, np.float32)
    line = np.ones(fg.shape, bool)
    ends = [np.zeros(fg.shape, bool) for _ in range(2)]
    ends[0][..., 0] = ends[1][..., -1] = True
    left, right = (growth_claim(fg, end, line, line, spacing)[0, 0].astype(int) for end in ends)
    x = np.arange(300)
    assert ((left > right) == (x < 149.5))[np.abs(x - 149.5) > 10].all()
    assert left.min() >= 1 and right.min() >= 1


class OwnsAlongX(torch.nn.Module):
    """A stand-in ownership network (image and foreground in): a cell is what lies from 8 voxels before its
    prompt to 45 voxels after it along x, whatever the image says."""

    window = SHAPE
    input_step = (1, 1, 1)
    in_channels = 2

    def forward(self, x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 2 and points.shape == (x.shape[0], 1, 3)
        along = torch.arange(x.shape[-1], dtype=torch.float32).expand(x.shape[0], 1, *x.shape[2:])
        start = points[:, :, 2, None, None, None] - 8
        return torch.where((along >= start) & (along <= start + 53), 20.0, -20.0)


def test_prompted_growth_keeps_growths_reach_and_the_network_decides_whose(tmp_path):
    """The bridge of the test above: growth splits it at x = 50; the network says cell 1 reaches x = 65 and
    cell 2 starts at x = 72, and the contested voxels follow it. What either cell may claim is growth's."""
    from traice.stages.segment.ranked import OwnershipModel, segment_ranked

    fg = np.zeros(SHAPE, np.float32)
    _balls(fg)
    fg[3:6, 19:22, 20:81] = 0.9
    fg[3:6, 30:33, 100:110] = 0.9     # a blob touching no soma: no cell's, whatever the network says
    maps = _maps(fg, np.where(fg > 0, 1, 0))
    cells = pd.DataFrame({"cell_id": [1, 2], "z": SOMAS[:, 0], "y": SOMAS[:, 1], "x": SOMAS[:, 2]})
    image = ArrayImage(np.zeros(SHAPE, np.uint16), SPACING)
    params = SegmentParams(method="prompted-growth", radius_um=40.0, bridge_um=0.0)
    masks = segment_ranked(image, cells, {"median": 0.0, "sigma": 1.0}, params, OwnershipModel(OwnsAlongX(), ArrayMaps(maps)))
    assert [m.status for m in masks] == ["ok", "ok"] and all(m.claim.max() == 255 for m in masks)
    write_masks(masks, tmp_path / "ranked.zarr")
    ranked = compose(Box.from_shape(SHAPE), collect_index([tmp_path / "ranked.zarr"]))
    growth = _owned(maps, "growth", tmp_path, radius_um=40.0)
    assert ((ranked > 0) == (growth > 0)).all()
    assert (growth[4, 20, 55:66] == 2).all() and (ranked[4, 20, 30:66] == 1).all()
    assert (ranked[4, 20, 72:81] == 2).all() and (ranked[3:6, 30:33, 100:110] == 0).all()


def test_prompted_growth_refuses_a_network_of_the_image_alone():
    from traice.stages.segment.ranked import load
    from traice.weights import shipped_weights

    with pytest.raises(ValueError, match="needs an ownership network"):
        load(SegmentParams(method="prompted-growth", model=str(shipped_weights("branch"))), None)
