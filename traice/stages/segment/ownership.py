"""Per-cell ownership of the one-pass foreground: which soma each foreground voxel belongs to.

The one-pass network (``detect.method: traice`` with a one-pass model) has
already said, for every voxel, how likely it is microglia (the foreground) and
where its soma should be (the offsets, :mod:`traice.core.maps`). What is left
is to share the foreground between the detected somas. Each method claims, for
one cell, the foreground voxels within ``segment.radius_um`` of its soma that
connect to it, with a claim that falls with how far the voxel is from *this*
soma in the method's sense; ``stitch`` then gives each voxel to its highest
claim, that is to the soma it is nearest to:

- ``growth``: seeded geodesic growth. The distance is the cost of the cheapest
  path from the soma through the foreground (µm of path, each µm costing
  ``1 / p`` for foreground probability ``p``), so a process goes to the soma it
  grows from even where another soma is nearer in a straight line.
- ``votes``: offset voting. The distance is how far the voxel's own vote (the
  voxel plus its offset) lands from the soma.

Claims are ``255 - 24 log2(1 + cost / 8)`` (``growth``, cost in µm of path
cost: one step per about 3 % more cost, so two far somas' claims on a faint
distal process still differ) or
``255 - 4 * distance`` (``votes``, in µm), at least 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from traice.core.geometry import Box, distance_um, um_to_voxels
from traice.core.maps import OFFSET_SCALE_UM
from traice.core.masks import connected_to
from traice.core.voxel_graph import geodesic_cost
from traice.io.claims import CellMask
from traice.stages.segment.params import SegmentParams

SEED_UM = 2.0
"""The soma's seed: voxels within this distance of the detected centre (always part of the cell)."""
MIN_PROBABILITY = 0.05
"""Path cost per µm is at most 1 / MIN_PROBABILITY (the seed may sit on voxels the network doubts)."""


def load(params: SegmentParams, maps):
    """Ownership's "model" is the maps the detect jobs stored (:class:`traice.io.maps.MapReader`)."""
    return maps


class CellRegion(NamedTuple):
    """What one cell may claim, in the box around its soma (arrays (Z, Y, X) of the box's shape)."""

    box: Box
    fg: np.ndarray              # foreground probability
    offsets: np.ndarray | None  # (3, Z, Y, X) offsets towards each voxel's soma (None: not read)
    soma: tuple                 # the soma centre in the box's voxels
    seed: np.ndarray            # voxels within SEED_UM of the soma
    candidates: np.ndarray      # foreground within the radius, plus the seed
    passable: np.ndarray        # the candidates and the gaps of up to bridge_um between them, within the radius


def cell_foreground(maps, centre, spacing, bounds: Box, params: SegmentParams, with_offsets: bool = True) -> CellRegion:
    """The :class:`CellRegion` of the soma at ``centre`` (voxels): the box within ``params.radius_um`` of it,
    read from the stored maps (the offsets only ``with_offsets``)."""
    box = Box.around(centre, um_to_voxels(params.radius_um, spacing)).intersect(bounds)
    fg, offsets = maps.read(box) if with_offsets else (maps.foreground(box), None)
    soma = tuple(float(c) - a for c, a in zip(centre, box.start))
    dist = distance_um(box.shape, soma, spacing)
    seed = dist <= SEED_UM
    inside = dist <= params.radius_um
    candidates = ((fg > params.probability) & inside) | seed
    return CellRegion(box, fg, offsets, soma, seed, candidates, bridged(candidates, inside, spacing, params.bridge_um))


def bridged(candidates: np.ndarray, inside: np.ndarray, spacing, bridge_um: float) -> np.ndarray:
    """``candidates`` plus the voxels ``inside`` within ``bridge_um / 2`` of one along each axis (a box
    neighbourhood), so a path may cross a break of up to ``bridge_um`` in a thin process.

    The network's foreground of a faint process often drops below the threshold for a voxel or two; on the
    validation fields a tenth of the true skeleton lay past such a break of at most 3 µm (docs/arbors.md).
    """
    half = np.floor(bridge_um / 2.0 / np.asarray(spacing, dtype=float)).astype(int)
    if not half.any():
        return candidates
    halo = ndimage.maximum_filter(candidates.view(np.uint8), size=tuple(2 * half + 1)).astype(bool)
    return candidates | (halo & inside)


def growth_claim(fg: np.ndarray, seed: np.ndarray, candidates: np.ndarray, passable: np.ndarray,
                 spacing) -> np.ndarray:
    """Claim (uint8) on ``candidates`` from the geodesic path cost from ``seed`` through ``passable``
    (a bridged voxel costs as much as the least likely foreground), 0 where unreached."""
    costs = np.where(passable, 1.0 / np.maximum(np.where(candidates, fg, 0.0), MIN_PROBABILITY), np.inf)
    cost = geodesic_cost(costs, seed, spacing)
    reached = np.isfinite(cost) & candidates
    claim = np.zeros(fg.shape, np.uint8)
    claim[reached] = cost_claim(cost[reached])
    return claim


def cost_claim(cost: np.ndarray) -> np.ndarray:
    """Claim (uint8, 1..255) for a path cost (µm): 255 at the soma, falling by the logarithm of the cost.

    A linear ``255 - cost`` would be 1 for every voxel past a cost of 254, a faint process 25 µm out at
    p = 0.1, so neighbouring cells' claims there would tie; the logarithm keeps them apart out to a
    cost of about 12 000 µm (a path of 600 µm through the least likely foreground).
    """
    return np.clip(np.rint(255.0 - 24.0 * np.log2(1.0 + cost / 8.0)), 1, 255).astype(np.uint8)


def votes_claim(offsets: np.ndarray, soma, seed: np.ndarray, candidates: np.ndarray, passable: np.ndarray,
                spacing) -> np.ndarray:
    """Claim (uint8) from how far the vote of each candidate connected to the seed through ``passable``
    lands from the soma, 0 elsewhere."""
    mask = connected_to(passable, seed) & candidates
    idx = np.nonzero(mask)
    miss = np.zeros(len(idx[0]))
    for axis in range(3):
        vote_um = idx[axis] * spacing[axis] + offsets[axis][idx] * OFFSET_SCALE_UM
        miss += (vote_um - soma[axis] * spacing[axis]) ** 2
    claim = np.zeros(mask.shape, np.uint8)
    claim[idx] = np.clip(np.rint(255.0 - 4.0 * np.sqrt(miss)), 1, 255)
    claim[seed] = 255
    return claim


def segment_owned(image, cells: pd.DataFrame, stats: dict, params: SegmentParams, maps,
                  progress: bool = False) -> list[CellMask]:
    """Claims of ``cells`` (rows of cells.parquet) on the stored one-pass maps ``maps`` (a MapReader),
    by ``params.method`` (``growth`` or ``votes``)."""
    spacing = np.asarray(image.spacing, dtype=float)
    masks = []
    for _, cell in tqdm(cells.iterrows(), total=len(cells), desc=params.method, unit="cell", disable=not progress):
        centre = (float(cell["z"]), float(cell["y"]), float(cell["x"]))
        region = cell_foreground(maps, centre, spacing, image.bounds, params, with_offsets=params.method == "votes")
        if params.method == "votes":
            claim = votes_claim(region.offsets, region.soma, region.seed, region.candidates, region.passable,
                                spacing)
        else:
            claim = growth_claim(region.fg, region.seed, region.candidates, region.passable, spacing)
        masks.append(cropped_claim(int(cell["cell_id"]), claim, region.box,
                              (region.fg[region.seed] > params.probability).any()))
    return masks


def cropped_claim(cell_id: int, claim: np.ndarray, box: Box, soma_in_foreground: bool) -> CellMask:
    """The claim (never empty: the seed is always claimed) in the smallest box holding it; the status says
    whether the network saw foreground at the soma."""
    status = "ok" if soma_in_foreground else "no foreground at the soma"
    tight = ndimage.find_objects((claim > 0).astype(np.uint8))[0]
    start = tuple(a + t.start for a, t in zip(box.start, tight))
    return CellMask(cell_id, Box(start, tuple(a + n for a, n in zip(start, claim[tight].shape))), claim[tight], status)
