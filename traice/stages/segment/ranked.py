"""Ownership ranked by the prompted network: seeded growth's masks, trAIce3D's stage 2 deciding whose.

``segment.method: prompted-growth``. What a cell may own is what ``growth``
reaches (:mod:`traice.stages.segment.ownership`: the one-pass foreground above
``segment.probability`` within ``radius_um`` of its soma, across breaks of up to
``bridge_um``). Where several cells reach the same voxel, ``stitch`` gives it to
the highest claim, and here the ownership network ranks the claims first:
trAIce3D's prompted network (Fourier prompt, RCAM on every skip) whose input is
the image *and* the one-pass foreground, trained (``traice train branch
--foreground``) on one cell's arbor against its neighbours', so that it answers
only *whose* a foreground voxel is. Where it says the voxel is this cell's
(p >= 0.5) the claim is ``128 + g // 2``, elsewhere (or outside the cell's
window, :func:`traice.core.windows.window_box`) ``1 + g // 2``, with ``g``
growth's own claim (falling with the path cost from the soma): the network's
verdict comes first, and between two cells of the same verdict the cheaper
path wins, as in ``growth``. A cell no other reaches keeps
growth's mask whatever the network says, so the network only matters where
claims compete; it runs on every cell because whether another cell reaches a
voxel is only known once all have grown (in other batches, other jobs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from traice.core.geometry import Box
from traice.io.claims import CellMask
from traice.stages.segment.network import window_probabilities
from traice.stages.segment.ownership import cell_foreground, cropped_claim, growth_claim
from traice.stages.segment.params import SegmentParams


class OwnershipModel(NamedTuple):
    """The ownership network (a :class:`~traice.nn.prompted.PromptedUNet3d` of two inputs, image and
    foreground) and the run's one-pass maps (:class:`~traice.io.maps.MapReader`)."""

    network: object
    maps: object


def load(params: SegmentParams, maps) -> OwnershipModel:
    """The ownership network of ``params`` (``model``, or the shipped one) with the maps ``maps``."""
    from traice.nn.checkpoints import load_prompted
    from traice.weights import shipped_weights

    path = params.model or shipped_weights("ownership")
    network = load_prompted(path)
    if network.in_channels != 2:
        raise ValueError(f"segment.method prompted-growth needs an ownership network (image and foreground in); "
                         f"{path} takes the image alone")
    return OwnershipModel(network, maps)


def segment_ranked(image, cells: pd.DataFrame, stats: dict, params: SegmentParams, model: OwnershipModel,
                   progress: bool = False) -> list[CellMask]:
    """Claims of ``cells`` (rows of cells.parquet): growth's reach, ranked by the ownership network,
    ``params.batch_size`` cells per forward pass."""
    spacing = np.asarray(image.spacing, dtype=float)
    masks = []
    bar = tqdm(total=len(cells), desc=params.method, unit="cell", disable=not progress)
    for start in range(0, len(cells), params.batch_size):
        rows = cells.iloc[start:start + params.batch_size]
        centres = rows[["z", "y", "x"]].to_numpy(float)
        ranked = window_probabilities(image, centres, stats, model.network, params.device, model.maps)
        for (probability, window), centre, cell_id in zip(ranked, centres, rows["cell_id"]):
            region = cell_foreground(model.maps, tuple(centre), spacing, image.bounds, params, with_offsets=False)
            growth = growth_claim(region.fg, region.seed, region.candidates, region.passable, spacing)
            masks.append(cropped_claim(int(cell_id), ranked_claim(growth, region.seed, region.box, probability, window),
                                       region.box, bool((region.fg[region.seed] > params.probability).any())))
        bar.update(len(rows))
    bar.close()
    return masks


def ranked_claim(growth: np.ndarray, seed: np.ndarray, box: Box, probability: np.ndarray, window: Box) -> np.ndarray:
    """Claim (uint8 of ``box.shape``) on the voxels growth reached (``growth`` > 0, growth's claims over
    ``box``): ``128 + growth // 2`` where the network's ``probability`` over ``window`` says the voxel is this
    cell's (p >= 0.5), ``1 + growth // 2`` where it says not or its window does not reach; 255 on the ``seed``;
    0 elsewhere. A cell the network calls the owner beats one it does not; between two of the same verdict,
    the cheaper path from the soma wins, as in ``growth``."""
    mine = np.zeros(box.shape, bool)
    both = box.intersect(window)
    if not both.empty:
        mine[both.relative_to(box).slices] = probability[both.relative_to(window).slices] >= 0.5
    claim = np.where(growth > 0, np.where(mine, 128, 1) + growth // 2, 0).astype(np.uint8)
    claim[seed] = 255
    return claim
