"""Process evidence around a detection: a soma with processes is kept, a process-free blob of its size dropped."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from traice.core.geometry import Box, distance_um
from traice.core.metrics import match_points
from traice.stages.detect import DetectParams
from traice.stages.detect.network import detect_traice_maps, detect_traice_marked
from traice.core.schema import HAS_PROCESSES
from traice.stages.detect.processes import process_share
from traice.stages.merge import merge_files

SPACING = (1.25, 0.4, 0.4)
SHAPE = (32, 192, 192)
CELL_UM, BLOB_UM = (20.0, 24.8, 24.8), (20.0, 54.8, 54.8)  # on voxel centres: no tied maxima
SOMA, PROCESS = 100.0, 2.0  # raw counts over a background of 0, noise sigma 1


def _field() -> np.ndarray:
    """A cell (a 4 µm soma, three 1 µm-thick processes leaving it along +x, -x and +y) and a blob (the soma
    alone)."""
    image = np.zeros(SHAPE, np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)], indexing="ij"), -1)
    offset = grid - np.asarray(CELL_UM)
    for axis, sign in ((2, 1), (2, -1), (1, 1)):
        across = [a for a in range(3) if a != axis]
        along = sign * offset[..., axis]
        image[(np.linalg.norm(offset[..., across], axis=-1) <= 1.0) & (along > 0) & (along < 20)] = PROCESS
    for centre in (CELL_UM, BLOB_UM):
        image[np.linalg.norm(grid - np.asarray(centre), axis=-1) <= 4.0] = SOMA
    return image


class TwoLevels(nn.Module):
    """A stand-in one-pass model (window (16, 64, 64)): soma where the input is soma-bright, foreground where it
    is above the background (the processes too), offsets 0. Its input is ``arcsinh(counts / 3)``: a soma 4.2,
    a process 0.62."""

    window = (16, 64, 64)
    out_channels = 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([20.0 * (x - 1.0), 20.0 * (x - 0.3), torch.zeros_like(x).repeat(1, 3, 1, 1, 1)], dim=1)


def _maps(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The soma and the foreground probability in the stand-in model's sense, drawn directly: two (Z, Y, X)."""
    return (image >= SOMA).astype(np.float32), (image > 0).astype(np.float32)


def test_a_soma_with_processes_has_a_share_of_foreground_around_it_and_a_blob_none():
    soma, foreground = _maps(_field())
    points = np.asarray([CELL_UM, BLOB_UM, (5.0, 70.0, 70.0)]) / np.asarray(SPACING)  # the last in no soma
    share = process_share(soma, foreground, points, SPACING, 0.5)
    assert share[0] > DetectParams.min_processes, share
    assert share[1] == 0.0
    assert np.isnan(share[2])
    # the share is of the shell 2-8 µm outside the soma: a foreground filling it counts 1
    full = (distance_um(SHAPE, tuple(np.asarray(CELL_UM) / np.asarray(SPACING)), SPACING) <= 14).astype(np.float32)
    assert process_share(soma, full, points[:1], SPACING, 0.5)[0] == 1.0


def test_detection_drops_the_process_free_blob_and_keeps_every_detection_at_zero():
    image = _field()
    truth = np.asarray([CELL_UM, BLOB_UM])
    stats = {"median": 0.0, "sigma": 1.0}
    for min_processes, expected in ((DetectParams.min_processes, truth[:1]), (0.0, truth)):
        params = DetectParams(min_processes=min_processes)
        found, maps = detect_traice_maps(image, SPACING, stats, params, TwoLevels())
        assert maps.shape == (5, *SHAPE)
        got = found[["z", "y", "x"]].to_numpy() * np.asarray(SPACING)
        match = match_points(got, expected, 2.0)
        assert match.tp == len(expected) == len(found), (min_processes, got)


def test_the_detect_step_keeps_the_blob_marked_and_the_merge_leaves_it_out_and_counts_it(tmp_path):
    image = _field()
    found, _ = detect_traice_marked(image, SPACING, {"median": 0.0, "sigma": 1.0}, DetectParams(), TwoLevels())
    got = found[["z", "y", "x"]].to_numpy() * np.asarray(SPACING)
    order = np.argsort(np.linalg.norm(got - np.asarray(CELL_UM), axis=1))  # the cell first, then the blob
    assert len(found) == 2 and found[HAS_PROCESSES].to_numpy()[order].tolist() == [True, False]

    path = tmp_path / "batch_0.parquet"
    found.assign(tile=0).to_parquet(path)
    whole = SimpleNamespace(spacing=SPACING, roi_boxes=[Box.from_shape(SHAPE)])  # what merge_files reads of a plan
    cells, left_out = merge_files([path], whole, 4.0, tmp_path / "cells.parquet")
    assert left_out == 1 and len(cells) == 1
    assert np.linalg.norm(cells[["z_um", "y_um", "x_um"]].to_numpy()[0] - np.asarray(CELL_UM)) < 2.0
    # a table written before the column existed keeps every row
    found.drop(columns=HAS_PROCESSES).assign(tile=0).to_parquet(path)
    assert len(merge_files([path], whole, 4.0, tmp_path / "cells.parquet")[0]) == 2
