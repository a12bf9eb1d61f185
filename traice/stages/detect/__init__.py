"""Soma detection per tile, with the owner rule: a tile keeps the somas its core contains.

Methods (``detect.method``), each in its own module with the same two functions,
``load(params) -> model`` (once per job) and
``detect_xxx(block, spacing, stats, params, model) -> table``:

- ``traice`` (default): stage 1 of trAIce3D (:mod:`traice.stages.detect.network`);
  with a one-pass model it also gives the maps that per-cell ownership reads
  (:mod:`traice.core.maps`, stored by :mod:`traice.io.maps`);
- ``classical``: the named baseline (:mod:`traice.stages.detect.classical`).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from traice.core.geometry import Box
from traice.core.schema import HAS_PROCESSES, all_kept
from traice.io.maps import map_writer
from traice.io.plan import Plan
from traice.io.tables import write_table
from traice.stages.detect import classical, network
from traice.stages.detect.classical import detect_classical
from traice.stages.detect.network import detect_traice
from traice.stages.detect.params import DetectParams
from traice.stages.detect.somas import COLUMNS
from traice.stages.methods import choose

def _classical_without_maps(block, spacing, stats, params, model):
    """The classical detector in the methods' shape: (table, every detection kept; no maps)."""
    return all_kept(detect_classical(block, spacing, stats, params, model)), None


METHODS = {"traice": (network.load, network.detect_traice_marked), "classical": (classical.load, _classical_without_maps)}
"""``detect.method`` -> (load the model, find somas in a raw block: (table with ``has_processes``, one-pass maps
or None))."""

TABLE_COLUMNS = [*COLUMNS, HAS_PROCESSES]
"""Columns of a detect step's table: every detection its tiles own, those the process rule drops marked False
(:mod:`traice.stages.detect.processes`); :func:`traice.stages.merge.merge_files` keeps the others and counts them."""

__all__ = ["DetectParams", "METHODS", "detect_batch", "detect_classical", "detect_tile", "detect_traice", "load_detector"]


def load_detector(params: DetectParams):
    """The model of ``params.method`` (None for the classical method)."""
    load, _ = choose(METHODS, params.method, "detect")
    return load(params)


def detect_tile(image, core: Box, read: Box, stats: dict, params: DetectParams, model=None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Detections of one tile in level-0 voxels, keeping only those its core owns (column ``has_processes``
    False where the process rule drops one), and the one-pass maps over the core ``(5, *core.shape)`` (None
    unless the model is a one-pass network).

    ``model`` is :func:`load_detector`'s (loaded once per batch of tiles).
    """
    _, find = choose(METHODS, params.method, "detect")
    found, maps = find(image.read(read), image.spacing, stats, params, model)
    if maps is not None:
        maps = maps[(slice(None), *core.relative_to(read).slices)]  # a view: the maps are encoded, not kept
    if found.empty:
        return found, maps
    found[["z", "y", "x"]] += np.asarray(read.start, dtype=float)
    return found[core.contains_points(found[["z", "y", "x"]].to_numpy())].reset_index(drop=True), maps


def detect_batch(plan: Plan, batch: int, out_path: str | Path, params: DetectParams,
                 maps_path: str | Path | None = None) -> pd.DataFrame:
    """Detect somas in every tile of one tile batch; write one table (level-0 voxels, :data:`TABLE_COLUMNS`) and,
    at ``maps_path``, the tiles' one-pass maps, each stored as soon as it is made
    (:func:`traice.io.maps.map_writer`; an empty group for a model without maps)."""
    model = load_detector(params)
    parts = []
    with map_writer(maps_path) if maps_path is not None else nullcontext() as add_maps:
        for tile, core, read in tqdm(plan.tiles_of_batch(batch), desc=f"detect batch {batch}", unit="tile"):
            found, tile_maps = detect_tile(plan.image, core, read, plan.stats, params, model)
            parts.append(found.assign(tile=tile))
            if tile_maps is not None and add_maps is not None:
                add_maps(tile, core, tile_maps)  # stored now: the job holds one tile's float maps at a time
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLE_COLUMNS)
    table = table.reindex(columns=TABLE_COLUMNS).astype({"tile": "int64", HAS_PROCESSES: bool})
    write_table(table, out_path)
    return table
