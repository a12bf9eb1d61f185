"""The plan of a run over one image, read once: ``plan.json``, ``tiles.parquet`` and ``tissue.npz``.

:func:`traice.stages.plan.write_plan` writes the three files into one folder
(``work/plan``); every later stage reads them through :class:`Plan`, so the
image, its statistics, the tiles, the stitch blocks, the ROI and the cells to
process are interpreted in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from traice.core.batching import batch_size, cell_batch
from traice.core.geometry import Box, Triple, grid
from traice.core.roi import cells_inside
from traice.io.ome import OmeImage, open_image
from traice.io.tables import atomic_path, read_json, write_json, write_table

PLAN, TILES, TISSUE = "plan.json", "tiles.parquet", "tissue.npz"
BOX_COLUMNS = list(Box.from_shape((1, 1, 1)).as_row("core")) + list(Box.from_shape((1, 1, 1)).as_row("read"))
TILE_COLUMNS = ["tile", "batch", *BOX_COLUMNS]


@dataclass(eq=False)
class Plan:
    """One run over one image.

    ``info`` is ``plan.json``: image path and channel, ``shape`` and
    ``spacing_um`` (z, y, x), the ROI (``roi_um``, ``roi_boxes``) and the boxes
    it affects, ``update`` (a region update over a previous result), the
    intensity ``stats`` of the whole image, tile and stitch-block counts.
    ``tiles`` has one row per tile to detect in: ``tile``, ``batch`` and its
    ``core_*`` / ``read_*`` boxes. ``tissue`` is the coarse tissue mask and its
    voxel size (µm).
    """

    info: dict
    tiles: pd.DataFrame
    tissue: np.ndarray
    tissue_spacing: tuple[float, float, float]
    folder: Path | None = field(default=None)

    # ------------------------------------------------------------------ files

    @classmethod
    def read(cls, path: str | Path) -> "Plan":
        """The plan in ``path``: its folder, or the ``plan.json`` in it."""
        folder = Path(path)
        if folder.name == PLAN:
            folder = folder.parent
        with np.load(folder / TISSUE) as f:
            tissue, spacing = f["mask"], tuple(float(s) for s in f["spacing"])
        return cls(read_json(folder / PLAN), pd.read_parquet(folder / TILES), tissue, spacing, folder)

    def write(self, folder: str | Path) -> None:
        """Write the three files into ``folder``; ``plan.json`` last, as it is what the workflow waits for."""
        folder = Path(folder)
        write_table(self.tiles, folder / TILES)
        with atomic_path(folder / TISSUE) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, mask=self.tissue, spacing=np.asarray(self.tissue_spacing))
        write_json(self.info, folder / PLAN)
        self.folder = folder

    # ------------------------------------------------------------------ the image

    @cached_property
    def image(self) -> OmeImage:
        return open_image(self.info["image"], self.info["channel"])

    @property
    def shape(self) -> Triple:
        return tuple(self.info["shape"])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.info["spacing_um"])  # type: ignore[return-value]

    @property
    def stats(self) -> dict[str, float]:
        """Intensity statistics of the whole image (:func:`traice.core.intensity.robust_stats`)."""
        return self.info["stats"]

    @property
    def update(self) -> bool:
        """Whether this run updates its ROI over a previous result."""
        return bool(self.info["update"])

    # ------------------------------------------------------------------ boxes

    @property
    def roi_boxes(self) -> list[Box]:
        """The ROI in level-0 voxels (the whole image without one)."""
        return [Box.from_row(row, "box") for row in self.info["roi_boxes"].values()]

    @property
    def affected_boxes(self) -> list[Box]:
        """Where label voxels may change: the ROI grown by the segmentation radius."""
        return [Box.from_row(row, "box") for row in self.info["affected_boxes"].values()]

    def tiles_of_batch(self, batch: int) -> list[tuple[int, Box, Box]]:
        """(tile index, core, read) of the tiles in one detect batch."""
        sel = self.tiles[self.tiles["batch"] == batch]
        return [(int(r["tile"]), Box.from_row(r, "core"), Box.from_row(r, "read")) for _, r in sel.iterrows()]

    def stitch_blocks(self) -> list[Box]:
        """All stitch blocks of the image: disjoint boxes of whole label chunks (``stitch_block_ids`` index them)."""
        return list(grid(Box.from_shape(self.shape), self.info["stitch_block"]))

    # ------------------------------------------------------------------ cells

    def cells_inside(self, cells: pd.DataFrame) -> np.ndarray:
        """Whether each cell's soma lies in the ROI: the cells this run (re)processes. bool (N,)."""
        return cells_inside(cells, self.roi_boxes, self.spacing)

    def cells_to_process(self, cells: pd.DataFrame) -> pd.DataFrame:
        """The cells this run segments and measures (those in the ROI)."""
        return cells[self.cells_inside(cells)]

    def kept_ids(self, cells: pd.DataFrame) -> np.ndarray:
        """``cell_id``s of the cells outside the ROI: a region update leaves them as they were."""
        return cells["cell_id"].to_numpy()[~self.cells_inside(cells)]

    def cell_batch(self, cells: pd.DataFrame, batch: int, cells_per_job: int, max_jobs: int) -> pd.DataFrame:
        """The cells to process of one segment or morphology batch (:func:`traice.core.batching.batch_size`)."""
        todo = self.cells_to_process(cells)
        return cell_batch(todo, batch, batch_size(len(todo), cells_per_job, max_jobs))
