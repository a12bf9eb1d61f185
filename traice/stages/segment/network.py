"""Per-cell segmentation with stage 2 of trAIce3D, the prompted network.

:class:`~traice.nn.prompted.PromptedUNet3d` sees one window per cell, centred
on its soma and moved inside the image at its borders (:mod:`traice.core.windows`),
with the soma as the prompt; many cells go through one forward pass. Its
probability, brought back to full resolution, is thresholded, limited to
``radius_um`` of the soma and reduced to the part connected to the soma; the
claim is the probability (``1 + 254 p``), so ``stitch`` gives a voxel claimed by
several cells to the most probable one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from traice.core.geometry import Box, distance_um
from traice.core.grid import from_model_grid, grid_input, grid_position, model_voxels, to_model_grid
from traice.core.intensity import grid_stats
from traice.core.masks import connected_to
from traice.core.windows import block_mean, window_box, window_point
from traice.io.claims import CellMask
from traice.stages.segment.params import SegmentParams


def load(params: SegmentParams, maps=None):
    """The stage-2 network of ``params`` (``model``, or the shipped S weights); it reads no maps."""
    from traice.nn.checkpoints import load_prompted
    from traice.weights import shipped_weights

    return load_prompted(params.model or shipped_weights("branch"))


def segment_traice(image, cells: pd.DataFrame, stats: dict, params: SegmentParams, model,
                   progress: bool = False) -> list[CellMask]:
    """Stage-2 claims of ``cells`` (rows of cells.parquet), ``params.batch_size`` cells per forward pass."""
    if model.in_channels != 1:
        raise ValueError(f"segment.method prompted takes a stage-2 network of the image alone; {params.model} "
                         f"takes {model.in_channels} inputs (an ownership network: segment.method prompted-growth)")
    masks = []
    bar = tqdm(total=len(cells), desc="segment", unit="cell", disable=not progress)
    for start in range(0, len(cells), params.batch_size):
        rows = cells.iloc[start:start + params.batch_size]
        centres = rows[["z", "y", "x"]].to_numpy(float)
        for (p, inner), centre, cell_id in zip(window_probabilities(image, centres, stats, model, params.device),
                                               centres, rows["cell_id"]):
            masks.append(claim_from_probability(int(cell_id), p, inner, centre, image.spacing, params))
        bar.update(len(rows))
    bar.close()
    return masks


def window_probabilities(image, centres: np.ndarray, stats: dict, model, device: str = "auto",
                         maps=None) -> list[tuple[np.ndarray, Box]]:
    """The prompted network's probability for each soma of ``centres`` ``(N, 3)`` (voxels), in one forward
    pass: ``[(probability, inner)]``, ``probability`` float32 of ``inner.shape`` on the image's voxels,
    ``inner`` the part of the soma's window inside the image.

    A network of two inputs (the ownership network) also sees the one-pass foreground, read from ``maps``
    (:class:`~traice.io.maps.MapReader`) and resized and averaged as the image is."""
    import torch
    from torch.nn.functional import interpolate

    from traice.core.memory import reuse_freed_memory
    from traice.nn.device import autocast, pick_device

    if model.in_channels == 2 and maps is None:
        raise ValueError("the ownership network reads the one-pass foreground: give the maps")
    dev = pick_device(device)
    reuse_freed_memory()
    model = model.to(dev, memory_format=torch.channels_last_3d).eval()
    step = np.asarray(model.input_step)
    extent = tuple(int(v) for v in np.asarray(model.window) * step)  # the window in voxels of the networks' grid
    spacing = np.asarray(image.spacing, float)
    native = model_voxels(extent, spacing)  # ... and in the image's voxels (the same µm; extent on the grid)
    on_grid = grid_stats(stats)
    boxes = [window_box(c, native, image.shape) for c in centres]
    inners = [box.intersect(image.bounds) for box in boxes]  # the part of each window inside the image
    inputs, points = [], []
    for box, inner, centre in zip(boxes, inners, centres):
        raw = np.full(native, on_grid["median"], np.float32)  # outside the image: background, as in training
        raw[inner.relative_to(box).slices] = image.read(inner)
        channels = [block_mean(grid_input(raw, spacing, stats, extent), step)]
        if model.in_channels == 2:
            foreground = np.zeros(native, np.float32)
            foreground[inner.relative_to(box).slices] = maps.read(inner)[0]
            channels.append(block_mean(to_model_grid(foreground, spacing, extent), step))
        inputs.append(np.stack(channels))
        soma = grid_position(centre - np.asarray(box.start), native, extent)  # in the grid window's voxels
        points.append(window_point(soma, Box.from_shape(extent), step))
    with torch.no_grad(), autocast(dev):
        x = torch.from_numpy(np.stack(inputs)).to(dev).contiguous(memory_format=torch.channels_last_3d)
        logits = model(x, torch.from_numpy(np.stack(points)[:, None]).to(dev))
        prob = torch.sigmoid(interpolate(logits.float(), size=extent, mode="trilinear", align_corners=False))
    prob = from_model_grid(prob[:, 0].cpu().numpy(), native)  # back onto the image's voxels
    return [(p[inner.relative_to(box).slices], inner) for p, box, inner in zip(prob, boxes, inners)]


def claim_from_probability(cell_id: int, prob: np.ndarray, box: Box, centre, spacing, params: SegmentParams) -> CellMask:
    """The cell's claim from its probability ``prob`` (box.shape) over ``box`` (level-0 voxels).

    Voxels above ``params.probability`` within ``radius_um`` of the soma that
    connect (26-neighbourhood) to the soma's 2 µm ball; claim ``1 + 254 p``,
    stored in the smallest box holding it.
    """
    soma = tuple(int(round(c)) - a for c, a in zip(centre, box.start))
    dist = distance_um(prob.shape, soma, spacing)
    mask = connected_to((prob > params.probability) & (dist <= params.radius_um), dist <= 2.0)
    if not mask.any():
        at_soma = Box.around(centre, (0, 0, 0)).intersect(box)
        return CellMask(cell_id, at_soma, np.zeros(at_soma.shape, np.uint8), "no foreground at the soma")
    tight = ndimage.find_objects(mask.astype(np.uint8))[0]
    claim = np.where(mask, np.clip(np.rint(1 + 254 * prob), 1, 255), 0).astype(np.uint8)[tight]
    start = tuple(a + t.start for a, t in zip(box.start, tight))
    return CellMask(cell_id, Box(start, tuple(a + n for a, n in zip(start, claim.shape))), claim, "ok")
