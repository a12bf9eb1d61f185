"""Per-cell segmentation in a window around each soma, stored as cropped claims (:mod:`traice.io.claims`).

Methods (``segment.method``), each in its own module with the same two functions,
``load(params, maps) -> model`` (once per job; ``maps`` the run's one-pass maps for the methods that read
them, else None) and
``segment_xxx(image, cells, stats, params, model) -> [CellMask]``:

- ``growth`` and ``votes``: ownership of the one-pass foreground the detect jobs
  stored (:mod:`traice.stages.segment.ownership`); their "model" is the maps'
  :class:`~traice.io.maps.MapReader`;
- ``prompted-growth``: growth's reach, claims ranked by the ownership network (stage 2 given the image
  and the foreground; :mod:`traice.stages.segment.ranked`); its model is that network with the maps;
- ``prompted``: stage 2 of trAIce3D, the prompted network (:mod:`traice.stages.segment.network`);
- ``classical``: the named baseline (:mod:`traice.stages.segment.classical`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from traice.io.claims import write_masks
from traice.io.plan import Plan
from traice.stages.methods import choose
from traice.io.maps import MapReader
from traice.stages.segment import classical, network, ownership, ranked
from traice.stages.segment.classical import segment_cells
from traice.stages.segment.network import segment_traice
from traice.stages.segment.ownership import segment_owned
from traice.stages.segment.ranked import segment_ranked
from traice.stages.segment.params import NEEDS_MAPS, SegmentParams

METHODS = {"growth": (ownership.load, segment_owned), "votes": (ownership.load, segment_owned),
           "prompted-growth": (ranked.load, segment_ranked), "prompted": (network.load, segment_traice),
           "classical": (classical.load, segment_cells)}
"""``segment.method`` -> (load the model, claims of a table of cells)."""


__all__ = ["METHODS", "NEEDS_MAPS", "SegmentParams", "load_segmenter", "segment_batch"]


def load_segmenter(params: SegmentParams, maps=None):
    """The model of ``params.method`` (None for the classical method); ``maps``: the run's one-pass maps
    (:class:`~traice.io.maps.MapReader`), for the methods that read them (:data:`NEEDS_MAPS`)."""
    load, _ = choose(METHODS, params.method, "segment")
    return load(params, maps)


def segment_batch(plan: Plan, cells_path: str | Path, batch: int, out_path: str | Path, params: SegmentParams,
                  maps: str | Path | None = None) -> pd.DataFrame:
    """Segment every cell of one batch of the cells to process and store their claims at ``out_path``;
    ``maps``: the index of the detect jobs' maps (:func:`traice.io.maps.write_map_index`), for the methods that
    need them (:data:`NEEDS_MAPS`)."""
    _, segment = choose(METHODS, params.method, "segment")
    if params.method in NEEDS_MAPS and maps is None:
        raise ValueError(f"segment.method {params.method} reads the one-pass maps: give their index")
    model = load_segmenter(params, MapReader.from_index(maps) if params.method in NEEDS_MAPS else None)
    cells = plan.cell_batch(pd.read_parquet(cells_path), batch, params.cells_per_job, params.max_jobs)
    masks = segment(plan.image, cells, plan.stats, params, model, progress=True)
    return write_masks(masks, out_path)
