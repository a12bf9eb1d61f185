"""Per-cell morphology from the stitched label image, in µm with anisotropic voxels.

For each cell: volume, skeleton (skimage) analysed as a graph (skan) for total
process length, branches, branch points and endpoints; and an SWC skeleton
with the soma as root and radii from the distance transform of the mask.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage
from skan import Skeleton, summarize
from skimage.morphology import skeletonize
from tqdm import tqdm

from traice.geometry import Box
from traice.io.tables import write_table
from traice.merge import cell_batch

METRIC_COLUMNS = ["volume_um3", "skeleton_length_um", "n_branches", "n_branch_points", "n_endpoints"]
TABLE_COLUMNS = ["cell_id", "z_um", "y_um", "x_um", *METRIC_COLUMNS, "status"]
SWC_TYPE_SOMA, SWC_TYPE_PROCESS = 1, 3


def measure(mask: np.ndarray, spacing: Sequence[float]) -> tuple[dict, Skeleton | None]:
    """Morphology metrics of one cell mask (z, y, x bool); also the skan skeleton (None if trivial)."""
    sp = tuple(float(s) for s in spacing)
    metrics = {"volume_um3": float(mask.sum() * np.prod(sp)), "skeleton_length_um": 0.0,
               "n_branches": 0, "n_branch_points": 0, "n_endpoints": 0}
    skel_img = skeletonize(mask) > 0
    if skel_img.sum() < 2:
        return metrics, None
    skel = Skeleton(skel_img, spacing=sp)
    branches = summarize(skel, separator="_")
    degrees = np.asarray(skel.degrees)
    junction_img = np.zeros(mask.shape, bool)
    coords = np.asarray(skel.coordinates).astype(int)
    junction_img[tuple(coords[degrees >= 3].T)] = True
    _, n_junctions = ndimage.label(junction_img, structure=np.ones((3, 3, 3)))
    metrics.update(
        skeleton_length_um=float(branches["branch_distance"].sum()),
        n_branches=int(len(branches)),
        n_branch_points=int(n_junctions),
        n_endpoints=int((degrees == 1).sum()),
    )
    return metrics, skel


def swc_table(mask: np.ndarray, skel: Skeleton | None, soma: Sequence[float], spacing: Sequence[float], origin_um: Sequence[float]) -> pd.DataFrame:
    """SWC rows (id, type, x, y, z, radius, parent) in µm; node 1 is the soma, the root.

    Skeleton nodes are visited breadth-first from the node nearest the soma;
    skeleton pieces not connected to it become trees of their own (parent -1).
    """
    sp = np.asarray(spacing, dtype=float)
    edt = ndimage.distance_transform_edt(mask, sampling=sp)
    soma = np.asarray(soma, dtype=float)
    soma_vox = tuple(np.clip(np.rint(soma).astype(int), 0, np.asarray(mask.shape) - 1))
    rows = [(1, SWC_TYPE_SOMA, *(soma * sp + origin_um)[::-1], float(max(edt[soma_vox], sp.min())), -1)]
    if skel is not None:
        coords = np.asarray(skel.coordinates)
        graph = skel.graph.tocsr()
        ids = np.zeros(len(coords), int)
        order = np.argsort(np.linalg.norm((coords - soma) * sp, axis=1), kind="stable")
        starts = [order[0]] + [i for i in range(len(coords)) if i != order[0]]
        for start in starts:
            if ids[start]:
                continue
            parent_of_start = 1 if start == order[0] else -1
            queue = deque([(start, parent_of_start)])
            ids[start] = -1  # queued
            while queue:
                node, parent = queue.popleft()
                ids[node] = len(rows) + 1
                pos = coords[node] * sp + origin_um
                radius = float(max(edt[tuple(coords[node].astype(int))], sp.min() / 2))
                rows.append((ids[node], SWC_TYPE_PROCESS, pos[2], pos[1], pos[0], radius, parent))
                for nb in graph.indices[graph.indptr[node]:graph.indptr[node + 1]]:
                    if ids[nb] == 0:
                        ids[nb] = -1
                        queue.append((nb, ids[node]))
    return pd.DataFrame(rows, columns=["id", "type", "x", "y", "z", "radius", "parent"])


def write_swc(table: pd.DataFrame, path: str | Path, cell_id: int) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(f"# traice cell {cell_id}; units: micrometre; columns: id type x y z radius parent\n")
        for r in table.itertuples(index=False):
            f.write(f"{r.id} {r.type} {r.x:.3f} {r.y:.3f} {r.z:.3f} {r.radius:.3f} {r.parent}\n")
    os.replace(tmp, path)


def morphology_batch(
    labels_path: str | Path,
    cells_path: str | Path,
    index_path: str | Path,
    spacing: Sequence[float],
    batch: int,
    cells_per_job: int,
    out_dir: str | Path,
) -> pd.DataFrame:
    """Measure every cell of one batch from the label image; write a table and SWC files to ``out_dir``."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "swc").mkdir(parents=True)
    labels = zarr.open_array(str(Path(labels_path) / "0"), mode="r")
    cells = cell_batch(pd.read_parquet(cells_path), batch, cells_per_job)
    index = pd.read_parquet(index_path).set_index("cell_id")
    rows = []
    for _, cell in tqdm(cells.iterrows(), total=len(cells), desc=f"morphology batch {batch}", unit="cell"):
        cid = int(cell["cell_id"])
        box = Box.from_row(index.loc[cid], "box")
        mask = np.asarray(labels[box.slices]) == cid
        row = {"cell_id": cid, "z_um": cell["z_um"], "y_um": cell["y_um"], "x_um": cell["x_um"]}
        if not mask.any():
            status = index.loc[cid, "status"]
            rows.append({**row, **dict.fromkeys(METRIC_COLUMNS, 0), "status": status if status != "ok" else "lost to neighbours in stitching"})
            continue
        tight = Box.from_shape(mask.shape)
        found = ndimage.find_objects(mask.astype(np.uint8))[0]
        tight = Box(tuple(s.start for s in found), tuple(s.stop for s in found)).grow((1, 1, 1)).intersect(tight)
        mask = mask[tight.slices]  # measure in the cell's own bounding box (+1 voxel)
        metrics, skel = measure(mask, spacing)
        start = np.asarray(box.start) + np.asarray(tight.start)
        soma = [cell[a] - s for a, s in zip("zyx", start)]
        origin = start * np.asarray(spacing)
        write_swc(swc_table(mask, skel, soma, spacing, origin), tmp / "swc" / f"{cid}.swc", cid)
        rows.append({**row, **metrics, "status": "ok"})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    write_table(table, tmp / "morphology.parquet")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return table


def gather(batch_dirs: Sequence[str | Path], table_path: str | Path, csv_path: str | Path, swc_dir: str | Path) -> pd.DataFrame:
    """Concatenate batch tables into morphology.parquet/.csv and collect SWC files into one folder."""
    parts = [pd.read_parquet(Path(d) / "morphology.parquet") for d in batch_dirs]
    table = pd.concat(parts, ignore_index=True).sort_values("cell_id") if parts else pd.DataFrame(columns=TABLE_COLUMNS)
    swc_dir = Path(swc_dir)
    tmp = swc_dir.with_name(f".{swc_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for d in batch_dirs:
        for f in sorted((Path(d) / "swc").glob("*.swc")):
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    shutil.rmtree(swc_dir, ignore_errors=True)
    os.replace(tmp, swc_dir)
    write_table(table, table_path)
    write_table(table, csv_path)
    return table
