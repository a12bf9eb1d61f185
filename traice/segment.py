"""Per-cell segmentation in a window around each soma, stored as cropped claims.

Each cell's result is a *claim*: a uint8 crop where 0 = not this cell and
1..255 = this cell, with the value growing with the confidence that the voxel
belongs to this cell. ``stitch`` resolves voxels claimed by several cells by the
highest claim.

``traice`` is stage 2 of trAIce3D: the prompted network
(:class:`~traice.models.prompted.PromptedUNet3d`) sees one window per cell,
centred on its soma and moved inside the image at its borders
(:mod:`traice.branches`), with the soma as the prompt; many cells go through
one forward pass. Its probability, brought back to full resolution, is
thresholded, limited to ``radius_um`` of the soma and reduced to the part
connected to the soma; the claim is the probability (``1 + 254 p``), so
``stitch`` gives a voxel claimed by several cells to the most probable one.

``classical`` (the default until a stage-2 model beats it; docs/stage2.md) is
the named baseline: a local threshold (background + a fraction
of the soma's contrast, at least k noise sigmas) and the connected component
reaching the soma, within the arbor radius; the claim decays with distance from
the soma so a touching neighbour's own voxels go to the neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage
from tqdm import tqdm

from traice.detect import normalise
from traice.geometry import Box, distance_um, um_to_voxels
from traice.io.ome import open_image
from traice.io.tables import atomic_dir, read_json, write_table
from traice.merge import cell_batch
from traice.region import cells_to_process

INDEX_COLUMNS = ["cell_id", "voxels", "status", "box_z0", "box_z1", "box_y0", "box_y1", "box_x0", "box_x1"]


METHODS = ("traice", "classical")


@dataclass(frozen=True)
class SegmentParams:
    method: str = "classical"
    radius_um: float = 40.0          # maximum arbor radius (classical: also the window half-size)
    model: str | None = None         # traice: stage-2 weights; None = shipped (traice/weights)
    probability: float = 0.5         # traice: arbor probability threshold
    batch_size: int = 4              # traice: cells per forward pass
    device: str = "auto"             # traice: auto (cuda when present) | cpu | cuda
    smooth_um: float = 0.4
    soma_fraction: float = 0.15      # threshold = background + this * (soma - background) ...
    min_snr: float = 2.5             # ... but at least this many noise sigmas of the smoothed image
    decay_um: float = 30.0           # claim halves every decay_um * ln 2 from the soma
    cells_per_job: int = 32


@dataclass
class CellMask:
    cell_id: int
    box: Box                 # level-0 voxels
    claim: np.ndarray        # uint8, box.shape
    status: str              # "ok" or why the mask is empty


def segment_classical(crop: np.ndarray, soma: tuple[int, int, int], spacing, stats: dict, params: SegmentParams) -> tuple[np.ndarray, str]:
    """Claim (uint8, crop.shape) of the cell whose soma is at voxel ``soma`` of the raw crop."""
    sp = np.asarray(spacing, dtype=float)
    smooth = ndimage.gaussian_filter(normalise(crop, stats), sigma=params.smooth_um / sp)
    background = float(np.median(smooth))
    noise = float(1.4826 * np.median(np.abs(smooth[smooth <= background] - background))) or 1e-6
    dist = distance_um(crop.shape, soma, sp)
    ball = dist <= 2.0
    soma_level = float(np.mean(smooth[ball]))
    if soma_level - background < params.min_snr * noise:
        return np.zeros(crop.shape, np.uint8), "soma not brighter than background"
    threshold = background + max(params.soma_fraction * (soma_level - background), params.min_snr * noise)
    fg = (smooth > threshold) & (dist <= params.radius_um)
    comp, _ = ndimage.label(fg, structure=np.ones((3, 3, 3)))
    ids = np.unique(comp[ball & fg])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return np.zeros(crop.shape, np.uint8), "no foreground at the soma"
    mask = np.isin(comp, ids)
    sharpness = max(0.25 * (soma_level - threshold), 1e-6)
    confidence = 1.0 / (1.0 + np.exp(-(smooth - threshold) / sharpness))
    claim = confidence * np.exp(-dist / params.decay_um)
    return np.where(mask, np.clip(np.rint(1 + 254 * claim), 1, 255), 0).astype(np.uint8), "ok"


def segment_cell(image, cell, stats: dict, params: SegmentParams) -> CellMask:
    """Segment one cell (a row of cells.parquet) with the classical baseline, in its window cropped at the image border."""
    centre = (int(cell["z"]), int(cell["y"]), int(cell["x"]))
    box = Box.around(centre, um_to_voxels(params.radius_um, image.spacing)).intersect(image.bounds)
    soma = tuple(c - a for c, a in zip(centre, box.start))
    claim, status = segment_classical(image.read(box), soma, image.spacing, stats, params)
    return CellMask(int(cell["cell_id"]), box, claim, status)


def load_segmenter(params: SegmentParams):
    """The stage-2 network of ``params`` (None for the classical method)."""
    if params.method not in METHODS:
        raise ValueError(f"unknown segment method {params.method!r}; choose from {METHODS}")
    if params.method == "classical":
        return None
    from traice.models.prompted import load_prompted
    from traice.weights import shipped_weights

    return load_prompted(params.model or shipped_weights("branch"))


def segment_traice(image, cells: pd.DataFrame, stats: dict, params: SegmentParams, model,
                   progress: bool = False) -> list[CellMask]:
    """Stage-2 claims of ``cells`` (rows of cells.parquet), ``params.batch_size`` cells per forward pass."""
    import torch
    from torch.nn.functional import interpolate

    from traice.branches import block_mean, window_box, window_point
    from traice.infer import autocast, model_input, pick_device

    device = pick_device(params.device)
    model = model.to(device, memory_format=torch.channels_last_3d).eval()
    step = np.asarray(model.input_step)
    extent = tuple(int(v) for v in np.asarray(model.window) * step)
    masks = []
    bar = tqdm(total=len(cells), desc="segment", unit="cell", disable=not progress)
    for start in range(0, len(cells), params.batch_size):
        rows = cells.iloc[start:start + params.batch_size]
        centres = rows[["z", "y", "x"]].to_numpy(float)
        boxes = [window_box(c, extent, image.shape) for c in centres]
        inners = [box.intersect(image.bounds) for box in boxes]  # the part of each window inside the image
        inputs = []
        for box, inner in zip(boxes, inners):
            window = np.zeros(extent, np.float32)  # outside the image: background level, as in training
            window[inner.relative_to(box).slices] = model_input(image.read(inner), stats)
            inputs.append(block_mean(window, step))
        points = np.stack([window_point(c, b, step) for c, b in zip(centres, boxes)])[:, None]
        with torch.no_grad(), autocast(device):
            x = torch.from_numpy(np.stack(inputs)[:, None]).to(device).contiguous(memory_format=torch.channels_last_3d)
            logits = model(x, torch.from_numpy(points).to(device))
            prob = torch.sigmoid(interpolate(logits.float(), size=extent, mode="trilinear", align_corners=False))
        prob = prob[:, 0].cpu().numpy()
        for p, box, inner, centre, cell_id in zip(prob, boxes, inners, centres, rows["cell_id"]):
            masks.append(claim_from_probability(int(cell_id), p[inner.relative_to(box).slices], inner, centre,
                                                image.spacing, params))
        bar.update(len(rows))
    bar.close()
    return masks


def claim_from_probability(cell_id: int, prob: np.ndarray, box: Box, centre, spacing, params: SegmentParams) -> CellMask:
    """The cell's claim from its probability ``prob`` (box.shape) over ``box`` (level-0 voxels).

    Voxels above ``params.probability`` within ``radius_um`` of the soma that
    connect (26-neighbourhood) to the soma's 2 µm ball; claim ``1 + 254 p``,
    stored in the smallest box holding it.
    """
    soma = tuple(int(round(c)) - a for c, a in zip(centre, box.start))
    dist = distance_um(prob.shape, soma, spacing)
    fg = (prob > params.probability) & (dist <= params.radius_um)
    comp, _ = ndimage.label(fg, structure=np.ones((3, 3, 3)))
    ids = np.unique(comp[(dist <= 2.0) & fg])
    ids = ids[ids > 0]
    if len(ids) == 0:
        at_soma = Box.around(centre, (0, 0, 0)).intersect(box)
        return CellMask(cell_id, at_soma, np.zeros(at_soma.shape, np.uint8), "no foreground at the soma")
    mask = np.isin(comp, ids)
    tight = ndimage.find_objects(mask.astype(np.uint8))[0]
    claim = np.where(mask, np.clip(np.rint(1 + 254 * prob), 1, 255), 0).astype(np.uint8)[tight]
    start = tuple(a + t.start for a, t in zip(box.start, tight))
    return CellMask(cell_id, Box(start, tuple(a + n for a, n in zip(start, claim.shape))), claim, "ok")


def write_masks(masks: list[CellMask], path: str | Path) -> pd.DataFrame:
    """Store claims as one zarr group (one array per cell, named by cell_id) plus its index table.

    Written to a temporary folder and renamed, so a killed job leaves nothing half-written.
    """
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        rows = []
        for m in masks:
            arr = group.create_array(str(m.cell_id), shape=m.claim.shape, chunks=m.claim.shape, dtype=np.uint8, fill_value=0)
            arr[...] = m.claim
            rows.append({"cell_id": m.cell_id, "voxels": int(np.count_nonzero(m.claim)), "status": m.status, **m.box.as_row("box")})
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        write_table(index, tmp / "index.parquet")
    return index


def read_claim(masks_path: str | Path, cell_id: int) -> np.ndarray:
    return np.asarray(zarr.open_array(str(Path(masks_path) / str(cell_id)), mode="r")[...])


def segment_batch(plan_dir: str | Path, cells_path: str | Path, batch: int, out_path: str | Path, params: SegmentParams) -> pd.DataFrame:
    """Segment every cell of one batch of the cells to process and store their claims at ``out_path``."""
    plan = read_json(Path(plan_dir) / "plan.json")
    image = open_image(plan["image"], plan["channel"])
    model = load_segmenter(params)
    cells = cell_batch(cells_to_process(pd.read_parquet(cells_path), plan), batch, params.cells_per_job)
    if model is None:
        rows = tqdm(cells.iterrows(), total=len(cells), desc=f"segment batch {batch}", unit="cell")
        masks = [segment_cell(image, row, plan["stats"], params) for _, row in rows]
    else:
        masks = segment_traice(image, cells, plan["stats"], params, model, progress=True)
    return write_masks(masks, out_path)
