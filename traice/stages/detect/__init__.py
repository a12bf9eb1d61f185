"""Soma detection per tile, with the owner rule: a tile keeps the somas its core contains.

Methods (``detect.method``), each in its own module with the same two functions,
``load(params) -> model`` (once per job) and
``detect_xxx(block, spacing, stats, params, model) -> table``:

- ``traice`` (default): stage 1 of trAIce3D (:mod:`traice.stages.detect.network`);
- ``classical``: the named baseline (:mod:`traice.stages.detect.classical`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from traice.core.geometry import Box
from traice.io.plan import Plan
from traice.io.tables import write_table
from traice.stages.detect import classical, network
from traice.stages.detect.classical import detect_classical
from traice.stages.detect.network import detect_traice
from traice.stages.detect.params import DetectParams
from traice.stages.detect.somas import COLUMNS
from traice.stages.methods import choose

METHODS = {"traice": (network.load, detect_traice), "classical": (classical.load, detect_classical)}
"""``detect.method`` -> (load the model, find somas in a raw block)."""

__all__ = ["DetectParams", "METHODS", "detect_batch", "detect_classical", "detect_tile", "detect_traice", "load_detector"]


def load_detector(params: DetectParams):
    """The model of ``params.method`` (None for the classical method)."""
    load, _ = choose(METHODS, params.method, "detect")
    return load(params)


def detect_tile(image, core: Box, read: Box, stats: dict, params: DetectParams, model=None) -> pd.DataFrame:
    """Detections of one tile in level-0 voxels, keeping only those its core owns.

    ``model`` is :func:`load_detector`'s (loaded once per batch of tiles).
    """
    _, find = choose(METHODS, params.method, "detect")
    found = find(image.read(read), image.spacing, stats, params, model)
    if found.empty:
        return found
    found[["z", "y", "x"]] += np.asarray(read.start, dtype=float)
    return found[core.contains_points(found[["z", "y", "x"]].to_numpy())].reset_index(drop=True)


def detect_batch(plan: Plan, batch: int, out_path: str | Path, params: DetectParams) -> pd.DataFrame:
    """Detect somas in every tile of one tile batch; write one table (level-0 voxels)."""
    model = load_detector(params)
    parts = []
    for tile, core, read in tqdm(plan.tiles_of_batch(batch), desc=f"detect batch {batch}", unit="tile"):
        found = detect_tile(plan.image, core, read, plan.stats, params, model)
        parts.append(found.assign(tile=tile))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    table = table.reindex(columns=COLUMNS).astype({"tile": "int64"})
    write_table(table, out_path)
    return table
