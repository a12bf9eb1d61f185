"""Plan a run over one image: intensity statistics, tissue, the tile grid, tile and stitch batches.

The plan is computed once per image and written as ``plan.json``,
``tiles.parquet`` and ``tissue.npz`` (:class:`traice.io.plan.Plan`); every later
step reads it, so intensity normalisation is the same in every tile (no seams),
the tissue mask is computed once, and batch counts are known to the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from traice.core.batching import batch_size, batches, block_shape
from traice.core.errors import InputError
from traice.core.geometry import Box, grid, tile_grid, um_to_voxels
from traice.core.grid import MODEL_SPACING_UM, model_voxels, needs_resampling, shrink_to_grid
from traice.core.intensity import robust_stats
from traice.core.roi import named_boxes_um, roi_boxes
from traice.core.tissue import TISSUE_MAX_VOXELS, box_has_tissue, tissue_core, tissue_in_box, tissue_mask
from traice.io.ome import OmeImage, open_image, read_overview
from traice.io.plan import TILE_COLUMNS, Plan
from traice.stages.update import prepare_base


@dataclass(frozen=True)
class PlanParams:
    tile_shape: tuple[int, int, int] = (74, 528, 528)   # tile core, voxels of the networks' grid (core.grid):
                                                        # read box with the halo = 8 x 6 x 6 whole windows
    halo_um: float = 16.0                               # read context around each core
    tiles_per_job: int = 2                              # at least this many tiles per detect job ...
    max_jobs: int = 1000                                # ... more once there would be more detect jobs than this
    stitch_chunk: tuple[int, int, int] = (32, 256, 256)  # label chunk footprint, level-0 voxels
    stitch_chunks_per_job: tuple[int, int, int] = (1, 2, 2)  # at least this block of chunks per stitch job ...
    stitch_max_jobs: int = 1000                         # ... doubled along one axis at a time while there are more jobs
    margin_um: float = 60.0                             # how far a cell's mask reaches from its soma (segment.radius_um)
    maps_cover_margin: bool = False                     # detect also where the margin reaches (segment reads its maps)
    stats_max_voxels: int = 8_000_000
    missing_chunks: str = "report"                      # chunks absent from the input's store: report | refuse | ignore


def intensity_stats(image: OmeImage, max_voxels: int = 16_000_000, block: Sequence[int] = (32, 256, 256),
                    tissue: tuple[np.ndarray, Sequence[float]] | None = None) -> dict[str, float]:
    """Robust background statistics of the full-resolution image, computed once per image.

    Reads at most ``max_voxels`` level-0 voxels as evenly spread blocks (noise must
    be measured at full resolution: downsampled levels average it away). Returns
    the median (background level), a MAD-based noise sigma and a few percentiles.

    ``tissue``, a coarse tissue mask and its voxel size (:func:`image_tissue`), keeps the
    measurement to the tissue, away from the mask's blurred edge
    (:func:`traice.core.tissue.tissue_core`): the blocks are spread over those that hold some,
    and their voxels outside it are left out. The space around a brain is not its background: a
    stitched volume fills what no tile covered with 0, a camera records its dark level
    there, and either, over half the voxels of a whole-brain stack, would be taken for the
    background level and its noise (``bench/empty_space.py``). ``None``: every voxel counts.

    Where the image's voxels are finer than the networks' grid along some axis, the
    same blocks are also measured once averaged onto the grid along those axes
    (:func:`traice.core.grid.shrink_to_grid`): ``grid_median`` and ``grid_sigma``, with
    which the networks' input is normalised (:func:`traice.core.intensity.grid_stats`).
    """
    block = tuple(min(b, n) for b, n in zip(block, image.shape))
    if tissue is not None:
        tissue = (tissue_core(*tissue), tissue[1])
    chosen = spread_evenly(tissue_blocks(image, block, tissue), max(1, max_voxels // int(np.prod(block))))
    blocks = [image.read(b) for b in chosen]
    inside = [tissue_in_box(b, tissue[0], tissue[1], image.spacing) if tissue is not None else None for b in chosen]
    if all(m is not None and not m.any() for m in inside):  # no tissue voxel in any block: measure them whole
        inside = [None] * len(chosen)
    stats = robust_stats(np.concatenate([v.ravel() if m is None else v[m] for v, m in zip(blocks, inside)]))
    if needs_resampling(image.spacing) and any(s < m for s, m in zip(image.spacing, MODEL_SPACING_UM)):
        values = []
        for v, m in zip(blocks, inside):
            shrunk = shrink_to_grid(v, image.spacing)
            values.append(shrunk.ravel() if m is None else shrunk[shrink_to_grid(m.astype(np.float32), image.spacing) > 0.5])
        on_grid = robust_stats(np.concatenate(values))
        stats.update(grid_median=on_grid["median"], grid_sigma=on_grid["sigma"])
    return stats


def tissue_blocks(image: OmeImage, block: Sequence[int], tissue: tuple[np.ndarray, Sequence[float]] | None) -> list[Box]:
    """The boxes of the :func:`grid` of the image's level 0 in ``block`` steps that hold some of ``tissue`` (a coarse
    mask and its voxel size, :func:`image_tissue`); all of them where none does or ``tissue`` is None."""
    boxes = list(grid(image.bounds, block))
    if tissue is None:
        return boxes
    return [b for b in boxes if box_has_tissue(b, tissue[0], tissue[1], image.spacing)] or boxes


def spread_evenly(boxes: Sequence[Box], n: int) -> list[Box]:
    """At most ``n`` of ``boxes``, spread evenly over the sequence (the first and last included)."""
    picks = np.linspace(0, len(boxes) - 1, min(len(boxes), n)).round()
    return list(dict.fromkeys(boxes[int(i)] for i in picks))


def image_tissue(image: OmeImage) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The tissue mask of an image at a coarse level (:func:`traice.core.tissue.tissue_mask`) and its voxel size (µm)."""
    overview, spacing = read_overview(image, TISSUE_MAX_VOXELS)
    return tissue_mask(overview, spacing), spacing


def make_plan(image: OmeImage, params: PlanParams, roi: dict | None = None, update: bool = False) -> Plan:
    """The plan of a run over ``image``: tiles with core/read boxes and batch, stitch blocks, statistics, tissue.

    Tiles come from the one grid over the whole image, so a region run reads
    exactly the tiles a whole-image run would; those touching the ROI (with
    ``maps_cover_margin``: the ROI grown by the margin, so the one-pass maps
    cover every arbor of the ROI's cells) and holding tissue are kept. Stitch
    blocks are those touching the ROI grown by the margin. Tiles per detect job and
    the stitch block grow past their settings when the jobs would exceed
    ``max_jobs`` / ``stitch_max_jobs`` (:mod:`traice.core.batching`).
    """
    missing, chunks, first = image.missing_chunks() if params.missing_chunks != "ignore" else (0, 0, [])
    if missing and params.missing_chunks == "refuse":
        raise InputError(f"{image.path}: {missing} of {chunks} chunks of the full-resolution array are missing "
                         f"(first: {', '.join(first)}; they would read as empty); set plan.missing_chunks: report "
                         "to run anyway (zarr leaves out chunks that hold only the fill value)")
    halo = um_to_voxels(params.halo_um, image.spacing)
    margin = um_to_voxels(params.margin_um, image.spacing)
    boxes = roi_boxes(roi, image.bounds, image.spacing)
    affected = {name: box.grow(margin).intersect(image.bounds) for name, box in boxes.items()}
    tissue, tissue_spacing = image_tissue(image)
    needed = affected if params.maps_cover_margin else boxes  # ownership reads maps out to the cells' reach
    tile_shape = model_voxels(params.tile_shape, image.spacing)  # the same µm at any voxel size
    touching = [t for t in tile_grid(image.bounds, image.bounds, tile_shape, halo)
                if any(t.core.intersects(b) for b in needed.values())]
    tiles = [t for t in touching if box_has_tissue(t.read, tissue, tissue_spacing, image.spacing)]
    rows = []
    per_job = batch_size(len(tiles), params.tiles_per_job, params.max_jobs)
    for batch, members in enumerate(batches(len(tiles), per_job)):
        for i in members:
            t = tiles[i]
            rows.append({"tile": t.index, "batch": batch, **t.core.as_row("core"), **t.read.as_row("read")})
    table = pd.DataFrame(rows, columns=TILE_COLUMNS)
    block = block_shape(params.stitch_chunk, params.stitch_chunks_per_job, image.shape,
                        [(a.start, a.stop) for a in affected.values()], params.stitch_max_jobs)
    block_ids = [k for k, b in enumerate(grid(image.bounds, block)) if any(b.intersects(a) for a in affected.values())]
    info = {
        "image": image.path,
        "channel": image.channel,
        "shape": list(image.shape),
        "spacing_um": list(image.spacing),
        "roi_um": named_boxes_um(roi),
        "roi_boxes": {name: box.as_row("box") for name, box in boxes.items()},
        "affected_boxes": {name: box.as_row("box") for name, box in affected.items()},
        "update": update,
        "missing_chunks": missing,  # absent from the store: read as the fill value (empty)
        "missing_chunk_keys": first,  # the first few of them
        "stats": intensity_stats(image, params.stats_max_voxels, tissue=(tissue, tissue_spacing)),
        "halo_voxels": list(halo),
        "tiles": len(tiles),
        "tiles_without_tissue": len(touching) - len(tiles),
        "tiles_per_job": per_job,
        "tile_batches": int(table["batch"].max() + 1) if len(table) else 0,
        "stitch_chunk": list(params.stitch_chunk),
        "stitch_block": list(block),
        "stitch_blocks": len(block_ids),
        "stitch_block_ids": block_ids,
    }
    return Plan(info, table, tissue, tissue_spacing)


def write_plan(image_path: str | Path, channel: int | None, out_dir: str | Path, params: PlanParams,
               roi: dict | None = None, sample_dir: str | Path | None = None) -> Plan:
    """Plan ``image_path`` and write the plan's files into ``out_dir`` (:meth:`traice.io.plan.Plan.write`).

    With ``sample_dir``, a previous result there is set aside for a region update
    first (see :func:`traice.stages.update.prepare_base`).
    """
    image = open_image(image_path, channel)
    roi_boxes(roi, image.bounds, image.spacing)  # a bad roi fails before anything is moved
    update = prepare_base(sample_dir, roi) if sample_dir is not None else False
    plan = make_plan(image, params, roi, update)
    plan.write(out_dir)
    return plan
