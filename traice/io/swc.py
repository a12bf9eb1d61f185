"""SWC skeleton files (one tree per file, µm): read traced cells, write segmented ones.

Columns ``id type x y z radius parent``; the root (parent -1) is the soma.
Inside traice positions are (z, y, x); the files keep SWC's x, y, z order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from traice.io.tables import atomic_path

SWC_COLUMNS = ["id", "type", "x", "y", "z", "radius", "parent"]
SWC_TYPE_SOMA, SWC_TYPE_PROCESS = 1, 3


class SwcError(ValueError):
    """A malformed SWC file."""


def read_swc(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (N, 3) in µm as (z, y, x), radii (N,) and parent indices (N,), root first (-1).

    Raises :class:`SwcError` for files that are empty, not numeric, not 7 columns,
    with unknown parents, or not exactly one root.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below instead
            table = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as err:
        raise SwcError(f"{path}: not a numeric SWC table ({err})") from None
    if table.size == 0 or table.shape[1] != 7:
        raise SwcError(f"{path}: expected 7 columns (id type x y z radius parent), got shape {table.shape}")
    ids = table[:, 0].astype(int).tolist()
    parent_ids = table[:, 6].astype(int).tolist()
    index = {n: i for i, n in enumerate(ids)}
    if len(index) != len(ids):
        raise SwcError(f"{path}: duplicate node ids")
    roots = np.flatnonzero(np.asarray(parent_ids) == -1)
    if len(roots) != 1:
        raise SwcError(f"{path}: {len(roots)} roots, expected one (the soma)")
    try:
        parents = np.array([index[p] if p != -1 else -1 for p in parent_ids])
    except KeyError as err:
        raise SwcError(f"{path}: parent {err} is not a node") from None
    order = np.argsort(np.arange(len(ids)) != roots[0], kind="stable")  # root first
    remap = np.empty(len(ids), int)
    remap[order] = np.arange(len(ids))
    points = table[order][:, [4, 3, 2]]
    radii = table[order, 5]
    parents = np.where(parents[order] >= 0, remap[np.maximum(parents[order], 0)], -1)
    return points, radii, parents


def write_swc(table: pd.DataFrame, path: str | Path, cell_id: int) -> None:
    # '# units' for readers of the SWC comment convention; navis reads its JSON '# Meta' line
    lines = [f"# traice cell {cell_id}; columns: id type x y z radius parent", "# units: um",
             f'# Meta: {{"id": {int(cell_id)}, "units": "micrometer"}}']
    lines += [f"{r.id} {r.type} {r.x:.3f} {r.y:.3f} {r.z:.3f} {r.radius:.3f} {r.parent}" for r in table.itertuples(index=False)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
