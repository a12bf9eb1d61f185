"""Per-cell morphology from the stitched label image, in µm with anisotropic voxels.

For each cell (the part of its label connected to its soma): soma, cell and
territory (convex hull) volumes, ramification index, the skeleton (skimage)
analysed as a graph (:mod:`traice.core.skeleton`) for total process length, branches, branch points,
endpoints, branch lengths, branch order from the soma and tortuosity; a Sholl
profile in shells around the soma; and an SWC skeleton with the soma as root
and radii from the distance transform of the mask.

Where the masks come from the one-pass maps (the learned segmenters), the
skeleton is traced on voxels no finer than the networks' grid: along an axis
where the image's voxels are finer, the mask is sampled at the grid's spacing
first. Each finer voxel took its grid voxel's foreground probability
(:func:`traice.core.grid.from_model_grid`), so this undoes that step; traced
on the finer voxels, the steps of a process one grid voxel wide become spurs
and zig-zags, and lengths and branch points grow with the voxels
(docs/inputs.md, "The skeleton on the networks' grid"). The tree and the SWC
are mapped back onto the image's voxels.

Soma and cell volumes are partial volumes where the run has the one-pass maps
(the learned segmenters): each voxel of the cell counts by its foreground
probability, the share of it the network sees filled, so a process thinner
than a voxel is not counted a whole voxel wide. Binary masks count every voxel
whole, which makes a cell's volume grow with the voxels (docs/inputs.md,
"Partial volumes").
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import zarr
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.morphology import skeletonize
from tqdm import tqdm

from traice.core.errors import InputError
from traice.core.geometry import Box, distance_um
from traice.core.grid import MODEL_SPACING_UM, TOLERANCE
from traice.core.masks import FULL_CONNECTIVITY, ellipsoid_footprint, soma_component
from traice.core.tree import SOMA, ProcessTree, process_tree
from traice.io.atlas import Atlas
from traice.io.maps import MapReader
from traice.io.swc import SWC_COLUMNS, SWC_TYPE_PROCESS, SWC_TYPE_SOMA, write_swc
from traice.io.tables import atomic_dir, write_table
from traice.core.schema import MORPHOLOGY, SHOLL, conform
from traice.core.skeleton import TIP_JUNCTION, JUNCTION_JUNCTION, SkeletonGraph
from traice.io.plan import Plan

QUALITY_COLUMNS = ["border_faces", "has_processes", "microglia_score", "n_components"]
GATHERED_COLUMNS = ["sample", "structure_id", "structure"]  # set for the whole table by gather
METRIC_COLUMNS = [c for c in MORPHOLOGY
                  if c not in ("cell_id", "z_um", "y_um", "x_um", "partial_volumes", "status", *QUALITY_COLUMNS,
                               *GATHERED_COLUMNS)]
BATCH_MORPHOLOGY = {c: v for c, v in MORPHOLOGY.items() if c not in GATHERED_COLUMNS}
BATCH_SHOLL = {c: v for c, v in SHOLL.items() if c not in GATHERED_COLUMNS}
NO_MASK_QUALITY = {"border_faces": "", "has_processes": False, "microglia_score": 0.0, "n_components": 0}
PROCESS_MIN_UM = 5.0     # less process than this beyond the soma: a cell without processes
PROCESS_SCALE_UM = 20.0  # microglia_score = 1 - exp(-length / this): 0.5 at 14 µm of process, 0.95 at 60 µm
SHOLL_COLUMNS = list(BATCH_SHOLL)
SHOLL_STEP_UM = 5.0
SOMA_OPENING_UM = 2.0   # processes thinner than this radius are not soma
SOMA_NEAR_UM = 10.0     # the opening is first tried in a box this far around the soma (soma_mask)
JUNCTION_MERGE_UM = 2.0  # junctions closer than this along the skeleton are one branch point
SPUR_UM = 2.0  # terminal branches shorter than this (junction to tip) are bumps of the mask's surface, not processes


def soma_mask(mask: np.ndarray, soma: Sequence[float], spacing: Sequence[float], radius_um: float = SOMA_OPENING_UM,
              near_um: float = SOMA_NEAR_UM) -> np.ndarray:
    """The soma: the mask opened by a ball of ``radius_um`` (processes vanish), component at the soma.

    ``mask`` (Z, Y, X) bool, ``soma`` a voxel position -> (Z, Y, X) bool. The opening is first computed in the
    box ``near_um`` around the soma only (with the ball's reach twice over as context, so every voxel of the box
    opens as in the whole mask); where the soma's component touches a face of that box inside the mask, or the
    soma voxel is not in it, the whole mask is opened instead. Both give the same soma.
    """
    footprint = ellipsoid_footprint(radius_um, spacing)
    reach = [h // 2 for h in footprint.shape]
    whole = Box.from_shape(mask.shape)
    centre = np.clip(np.rint(soma), 0, np.asarray(mask.shape) - 1).astype(int)
    near = Box.around(centre, [int(near_um / s) for s in spacing]).intersect(whole)
    context = near.grow([2 * r for r in reach]).intersect(whole)
    opened = ndimage.binary_opening(mask[context.slices], structure=footprint)[near.relative_to(context).slices]
    v = tuple(int(i) for i in centre - np.asarray(near.start))
    if opened[v]:
        component = soma_component(opened, v)
        open_faces = [(axis, end) for axis in range(3) for end in (0, -1)
                      if (near.start, near.stop)[end][axis] != (0, mask.shape[axis])[end]]
        if not any(np.take(component, end, axis=axis).any() for axis, end in open_faces):
            out = np.zeros_like(mask)
            out[near.slices] = ndimage.binary_dilation(component) & mask[near.slices]
            return out
    opened = ndimage.binary_opening(mask, structure=footprint)
    if not opened.any():
        return np.zeros_like(mask)
    # the digital opening also shaves the soma's own surface voxels: give them back
    return ndimage.binary_dilation(soma_component(opened, soma)) & mask


def territory_volume(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume (µm³) of the convex hull of the mask (0 for fewer than 4 voxels)."""
    pts = np.argwhere(mask).astype(float)
    if len(pts) < 4:
        return 0.0
    faces = np.vstack([np.eye(3) * 0.5, -np.eye(3) * 0.5])
    # hull of the surface voxels' face centres: a one-voxel-thick process still
    # has thickness, and a convex cell gets a ramification index of about 1
    surface = pts[ndimage.binary_erosion(mask)[tuple(pts.astype(int).T)] == 0]
    cloud = (surface[:, None, :] + faces[None]).reshape(-1, 3) * np.asarray(spacing)
    try:
        return float(ConvexHull(cloud).volume)
    except QhullError:
        return 0.0


def prune_spurs(skel: SkeletonGraph, min_um: float = SPUR_UM) -> tuple[SkeletonGraph, pd.DataFrame]:
    """The skeleton without its terminal branches (junction to tip) shorter than ``min_um``, pruned until none is
    left, and its branch table (:meth:`~traice.core.skeleton.SkeletonGraph.branches`).

    A bump on a mask's surface skeletonises into a short side branch, and a
    mask's surface has more bumps the finer its voxels: without pruning, the
    same cell has more branches the finer it was imaged. Few real terminal
    processes are this short: 3 % of the validation tracings' terminal
    branches against 13-33 % of the workflow's skeletons' at three voxel sizes
    (``bench/spurs.py``; docs/inputs.md, "Skeleton spurs").
    """
    while True:
        branches = skel.branches()
        short = (branches["branch_type"] == TIP_JUNCTION) & (branches["branch_distance"] < min_um)
        # a piece whose every branch is short is a small blob's skeleton, not spurs on a process: it stays
        # (pruned, it would shrink to its junction voxels, which make no branch)
        spurs = branches.index[short & ~short.groupby(branches["skeleton_id"]).transform("all")]
        if not len(spurs):
            return skel, branches
        pruned = skel.without(spurs.to_numpy())
        if len(pruned.coordinates) >= len(skel.coordinates):  # nothing came off: stop rather than loop
            return skel, branches
        skel = pruned


def _merge_junctions(branches: pd.DataFrame, node_key: np.ndarray) -> np.ndarray:
    """Node keys with junction clusters closer than ``JUNCTION_MERGE_UM`` (along the skeleton) merged.

    ``node_key`` is the skeleton node index, or ``-cluster`` for voxels of a
    cluster of adjacent junction voxels. A digital skeleton often splits one
    branch point into two junctions a voxel or two apart; they are one point of
    the cell, and the stub between them is not a branch.
    """
    key = node_key.copy()
    short = branches[(branches["branch_type"] == JUNCTION_JUNCTION) & (branches["branch_distance"] <= JUNCTION_MERGE_UM)]
    for a, b in zip(short["node_id_src"], short["node_id_dst"]):
        ka, kb = key[a], key[b]
        if ka != kb:
            key[key == kb] = ka
    return key


def _branch_orders(branches: pd.DataFrame, root: int) -> np.ndarray:
    """Centrifugal order of each branch: 1 for branches leaving the root, +1 past each branch point.

    ``branches`` holds the skeleton's branch table with node keys ``key_src``/``key_dst``
    (junction clusters merged); ``root`` is the key of the node nearest the soma.
    """
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for i, (a, b) in enumerate(zip(branches["key_src"], branches["key_dst"])):
        adjacency.setdefault(int(a), []).append((int(b), i))
        adjacency.setdefault(int(b), []).append((int(a), i))
    order = np.zeros(len(branches), int)
    seen = {root}
    queue = deque([(root, 0)])
    while queue:
        node, depth = queue.popleft()
        for nb, i in adjacency.get(node, []):
            if order[i] == 0:
                order[i] = depth + 1
            if nb not in seen:
                seen.add(nb)
                queue.append((nb, depth + 1))
    return order


def sholl_shells(reach_um: float, step_um: float = SHOLL_STEP_UM) -> np.ndarray:
    """Shell radii every ``step_um`` out to ``reach_um`` (µm from the soma centre); at least the first shell."""
    return np.arange(1, max(int(np.floor(reach_um / step_um)), 1) + 1) * step_um


def sholl_profile(skel: SkeletonGraph, soma_um: np.ndarray, step_um: float = SHOLL_STEP_UM) -> tuple[np.ndarray, np.ndarray]:
    """Radii (µm) of shells every ``step_um`` and the skeleton crossings of each shell."""
    coords = np.asarray(skel.coordinates) * np.asarray(skel.spacing)
    dist = np.linalg.norm(coords - soma_um, axis=1)
    graph = skel.graph.tocoo()
    keep = graph.row < graph.col
    lo = np.minimum(dist[graph.row[keep]], dist[graph.col[keep]])
    hi = np.maximum(dist[graph.row[keep]], dist[graph.col[keep]])
    radii = sholl_shells(float(dist.max()), step_um)
    counts = np.array([np.count_nonzero((lo < r) & (hi >= r)) for r in radii], dtype=int)
    return radii, counts


def partial_volume(region: np.ndarray, voxel_um3: float, occupancy: np.ndarray | None = None) -> float:
    """Volume (µm³) of a ``region`` (z, y, x bool) of voxels of ``voxel_um3``, each counted by its ``occupancy``
    (the region's shape, 0–1: the share of the voxel filled) where given, whole where None."""
    if occupancy is None:
        return float(np.count_nonzero(region) * voxel_um3)
    return float(np.clip(occupancy[region], 0.0, 1.0).sum(dtype=np.float64) * voxel_um3)


def skeleton_grid(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mask`` (Z, Y, X) on voxels no finer than the networks' grid along any axis, and the map back.

    Along each axis finer than :data:`~traice.core.grid.MODEL_SPACING_UM` by more than the grid's tolerance, the
    mask is sampled every ``grid / spacing`` voxels (nearest voxel) from the first grid voxel's centre, as many
    as span its extent; other axes are kept. Returns the sampled mask and ``scale``, ``shift`` (3,): its voxel
    ``j`` is the input's voxel ``j * scale + shift`` (its spacing is ``spacing * scale``, the grid's).
    """
    sp = np.asarray(spacing, dtype=float)
    shape = np.asarray(mask.shape)
    finer = sp < np.asarray(MODEL_SPACING_UM) * (1 - TOLERANCE)
    scale = np.where(finer, np.asarray(MODEL_SPACING_UM) / sp, 1.0)
    shift = (scale - 1) / 2
    if not finer.any():
        return mask, scale, shift
    target = np.maximum(1, np.rint(shape / scale)).astype(int)
    index = [np.clip(np.rint(np.arange(m) * k + b).astype(int), 0, n - 1) for m, k, b, n in zip(target, scale, shift, shape)]
    return mask[np.ix_(*index)], scale, shift


def measure(mask: np.ndarray, spacing: Sequence[float], soma: Sequence[float] | None = None,
            occupancy: np.ndarray | None = None, on_grid: bool = False) -> tuple[dict, ProcessTree | None, pd.DataFrame]:
    """Metrics of one cell mask (z, y, x bool) whose soma centre is voxel ``soma`` (default: mask centroid);
    ``occupancy`` (the mask's shape, 0–1; e.g. the foreground probability): the share of each voxel the cell
    fills, from which soma and cell volumes are summed (:func:`partial_volume`; every voxel whole where None);
    ``on_grid``: trace the skeleton on :func:`skeleton_grid`'s voxels (a mask made from the networks' maps).

    Returns the metrics dictionary, the skeleton as a tree hanging from the soma
    (:func:`traice.core.tree.process_tree`, in the mask's voxels; None when the skeleton is a single
    voxel or empty) and the Sholl profile (radius_um, intersections). Lengths
    of processes count from where they leave the soma, as NeuroM counts them.
    """
    sp = tuple(float(s) for s in spacing)
    soma = np.asarray(ndimage.center_of_mass(mask) if soma is None else soma, dtype=float)
    voxel = float(np.prod(sp))
    cell_volume = partial_volume(mask, voxel, occupancy)
    territory = territory_volume(mask, sp)
    metrics = dict.fromkeys(METRIC_COLUMNS, 0.0)
    soma_region = soma_mask(mask, soma, sp)
    metrics.update(
        soma_volume_um3=partial_volume(soma_region, voxel, occupancy),
        cell_volume_um3=cell_volume,
        territory_volume_um3=territory,
        ramification_index=territory / cell_volume if cell_volume else 0.0,
    )
    grid_mask, scale, shift = skeleton_grid(mask, sp) if on_grid else (mask, np.ones(3), np.zeros(3))
    if grid_mask is not mask:  # from here on, the skeleton's voxels
        mask, sp, soma = grid_mask, tuple(float(v) for v in np.asarray(sp) * scale), (soma - shift) / scale
        soma_region = soma_mask(mask, soma, sp)
    soma_um = soma * np.asarray(sp)
    skel_img = skeletonize(mask) > 0
    if skel_img.sum() < 2:  # no process to follow: the Sholl profile is zero out to the mask's reach
        reach = float(distance_um(mask.shape, soma, sp)[mask].max()) if mask.any() else 0.0
        radii = sholl_shells(reach)
        return metrics, None, pd.DataFrame({"radius_um": radii, "intersections": np.zeros(len(radii), int)})
    skel, branches = prune_spurs(SkeletonGraph(skel_img, sp))
    tree = process_tree(skel.coordinates, skel.graph, soma_region[tuple(np.asarray(skel.coordinates).astype(int).T)],
                        soma, sp)
    degrees = np.asarray(skel.degrees)
    coords = np.asarray(skel.coordinates).astype(int)
    junction_img = np.zeros(mask.shape, bool)
    junction_img[tuple(coords[degrees >= 3].T)] = True
    clusters, _ = ndimage.label(junction_img, structure=np.ones((3, 3, 3)))
    node_key = _merge_junctions(branches, np.where(clusters[tuple(coords.T)] > 0, -clusters[tuple(coords.T)], np.arange(len(coords))))
    n_junctions = len(np.unique(node_key[node_key < 0]))
    branches = branches.assign(key_src=node_key[branches["node_id_src"]], key_dst=node_key[branches["node_id_dst"]])
    inner = (branches["key_src"] == branches["key_dst"]) & (branches["key_src"] < 0)
    if (~inner).any():
        branches = branches[~inner]
    lengths = branches["branch_distance"].to_numpy()
    straight = branches["euclidean_distance"].to_numpy()
    ends = np.unique(branches[["node_id_src", "node_id_dst"]].to_numpy())
    root = int(node_key[ends[np.argmin(np.linalg.norm(coords[ends] * np.asarray(sp) - soma_um, axis=1))]])
    radii, counts = sholl_profile(skel, soma_um)
    best = int(np.argmax(counts))
    metrics.update(
        total_length_um=tree.length_um(),
        n_primary_processes=tree.n_primary,
        n_branches=int(len(branches)),
        n_branch_points=int(n_junctions),
        n_endpoints=int((degrees == 1).sum()),
        mean_branch_length_um=float(lengths.mean()),
        max_branch_length_um=float(lengths.max()),
        max_branch_order=int(_branch_orders(branches, root).max()),
        mean_tortuosity=float(np.mean(lengths[straight > 0] / straight[straight > 0])) if (straight > 0).any() else 0.0,
        sholl_max_intersections=int(counts[best]),
        sholl_max_radius_um=float(radii[best]) if counts[best] else 0.0,
        sholl_auc=float(counts.sum() * SHOLL_STEP_UM),
    )
    tree = ProcessTree(tree.coords * scale + shift, tree.parent, tree.order, tuple(float(v) for v in spacing))  # input voxels
    return metrics, tree, pd.DataFrame({"radius_um": radii, "intersections": counts})


def swc_table(mask: np.ndarray, tree: ProcessTree | None, soma: Sequence[float], spacing: Sequence[float],
              origin_um: Sequence[float]) -> pd.DataFrame:
    """SWC rows (id, type, x, y, z, radius, parent) in µm of :func:`measure`'s tree.

    Node 1 is the soma (type 1, the root; radius: distance from its centre to
    the mask's edge); skeleton nodes inside it are folded into it; every
    primary process is its own child of the soma (:mod:`traice.core.tree`).
    Process nodes (type 3) have the distance-transform radius.
    """
    sp = np.asarray(spacing, dtype=float)
    edt = ndimage.distance_transform_edt(mask, sampling=sp)
    soma = np.asarray(soma, dtype=float)
    soma_vox = tuple(np.clip(np.rint(soma).astype(int), 0, np.asarray(mask.shape) - 1))
    rows = [(1, SWC_TYPE_SOMA, *(soma * sp + origin_um)[::-1], float(max(edt[soma_vox], sp.min())), -1)]
    if tree is None:
        return pd.DataFrame(rows, columns=SWC_COLUMNS)
    ids = np.zeros(len(tree.coords), int)
    for node in tree.order:
        ids[node] = len(rows) + 1
        pos = tree.coords[node] * sp + origin_um
        voxel = np.clip(np.rint(tree.coords[node]).astype(int), 0, np.asarray(mask.shape) - 1)
        radius = float(max(edt[tuple(voxel)], sp.min() / 2))
        up = tree.parent[node]
        rows.append((ids[node], SWC_TYPE_PROCESS, pos[2], pos[1], pos[0], radius, 1 if up == SOMA else ids[up]))
    return pd.DataFrame(rows, columns=SWC_COLUMNS)


def cell_mask(labels: zarr.Array, cell, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """What morphology measures of one cell, read from the label image inside ``box``: its mask (the piece of its
    label at its soma) in a one-voxel margin around the label, that crop's start in the image (voxels), the soma
    centre in the crop's voxels and the label's number of pieces; None where the label has no voxel in ``box``."""
    mask = np.asarray(labels[box.slices]) == int(cell["cell_id"])
    if not mask.any():
        return None
    pieces = ndimage.label(mask, structure=FULL_CONNECTIVITY)[1]
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    tight = Box.from_slices(found).grow((1, 1, 1)).intersect(Box.from_shape(mask.shape))
    start = np.asarray(box.start) + np.asarray(tight.start)
    soma = np.array([cell[a] for a in "zyx"], dtype=float) - start
    return soma_component(mask[tight.slices], soma), start, soma, pieces


def measure_cell(labels: zarr.Array, cell, box: Box, spacing: Sequence[float],
                 maps=None) -> tuple[dict, pd.DataFrame | None, pd.DataFrame]:
    """Metrics, SWC table and Sholl profile of one cell, read from the label image inside ``box``; ``maps``: the
    run's one-pass maps (:class:`~traice.io.maps.MapReader`), whose foreground probability makes the volumes
    partial volumes and whose grid the skeleton is traced on (None: every voxel of the mask counts whole, the
    skeleton is traced on the mask's voxels)."""
    cid = int(cell["cell_id"])
    read = cell_mask(labels, cell, box)
    if read is None:
        return {}, None, pd.DataFrame(columns=SHOLL_COLUMNS)
    mask, start, soma, pieces = read
    occupancy = None if maps is None else maps.foreground(Box(tuple(start), tuple(start + np.asarray(mask.shape))))
    metrics, tree, sholl = measure(mask, spacing, soma, occupancy, on_grid=maps is not None)
    swc = swc_table(mask, tree, soma, spacing, start * np.asarray(spacing))
    metrics.update(border_faces=border_faces(mask, start, labels.shape), n_components=pieces,
                   has_processes=bool(metrics["total_length_um"] >= PROCESS_MIN_UM),
                   microglia_score=microglia_score(metrics["total_length_um"]))
    return metrics, swc, sholl.assign(cell_id=cid)[SHOLL_COLUMNS]


def microglia_score(total_length_um: float) -> float:
    """0-1 evidence that a detected cell is a microglia rather than a process-free bright object (a punctum, a
    perivascular macrophage): ``1 - exp(-total_length_um / PROCESS_SCALE_UM)``. A classical score, fixed before
    any benchmark; its ROC AUC on held-out fields is in docs/confidence.md."""
    return float(1.0 - np.exp(-max(float(total_length_um), 0.0) / PROCESS_SCALE_UM))


def border_faces(mask: np.ndarray, start: Sequence[int], shape: Sequence[int]) -> str:
    """The faces of the volume (``shape``) that a mask placed at ``start`` touches: 'z0 y1 ...', '' for none."""
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    lo = [a + s.start for a, s in zip(start, found)]
    hi = [a + s.stop for a, s in zip(start, found)]
    return " ".join([f"{ax}0" for ax, v in zip("zyx", lo) if v == 0] +
                    [f"{ax}1" for ax, v, n in zip("zyx", hi, shape) if v == n])


def morphology_batch(
    labels_path: str | Path,
    cells_path: str | Path,
    index_path: str | Path,
    plan: Plan,
    batch: int,
    cells_per_job: int,
    max_jobs: int,
    out_dir: str | Path,
    maps: str | Path | None = None,
) -> pd.DataFrame:
    """Measure every cell of one batch of the cells to process (``cells_per_job`` and ``max_jobs``:
    :func:`traice.core.batching.batch_size`); write morphology and Sholl tables and SWC files to ``out_dir``.
    ``maps``: the index of the run's one-pass maps (:func:`traice.io.maps.write_map_index`) where the segment
    method read them; volumes are then partial volumes (:func:`measure`)."""
    labels = zarr.open_array(str(Path(labels_path) / "0"), mode="r")
    reader = MapReader.from_index(maps) if maps else None
    spacing = plan.spacing
    cells = plan.cell_batch(pd.read_parquet(cells_path), batch, cells_per_job, max_jobs)
    index = pd.read_parquet(index_path).set_index("cell_id")
    rows, profiles = [], []
    with atomic_dir(out_dir) as tmp:
        (tmp / "swc").mkdir()
        for _, cell in tqdm(cells.iterrows(), total=len(cells), desc=f"morphology batch {batch}", unit="cell"):
            cid = int(cell["cell_id"])
            row = {"cell_id": cid, "z_um": cell["z_um"], "y_um": cell["y_um"], "x_um": cell["x_um"],
                   "partial_volumes": reader is not None}
            metrics, swc, sholl = measure_cell(labels, cell, Box.from_row(index.loc[cid], "box"), spacing, reader)
            if swc is None:
                reason = index.loc[cid, "status"]
                rows.append({**row, **dict.fromkeys(METRIC_COLUMNS, 0), **NO_MASK_QUALITY,
                             "status": reason if reason != "ok" else "lost to neighbours in stitching"})
                continue
            write_swc(swc, tmp / "swc" / f"{cid}.swc", cid)
            rows.append({**row, **metrics, "status": "ok"})
            profiles.append(sholl)
        table = conform(pd.DataFrame(rows), BATCH_MORPHOLOGY)
        write_table(table, tmp / "morphology.parquet")
        write_table(_concat(profiles, BATCH_SHOLL), tmp / "sholl.parquet")
    return table


def _concat(parts: Sequence[pd.DataFrame], schema: dict) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return conform(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), schema)


def gather(batch_dirs: Sequence[str | Path], table_path: str | Path, csv_path: str | Path, sholl_path: str | Path,
           swc_dir: str | Path, base: str | Path | None = None, keep_ids: Sequence[int] = (),
           sample: str = "", atlas: Atlas | None = None) -> pd.DataFrame:
    """Concatenate batch tables into morphology.parquet/.csv and sholl.parquet; collect SWC files into one folder.

    Every row gets ``sample``, and with an ``atlas`` the structure at its soma
    centre (``structure_id``, ``structure``). For a region update, the rows and SWC
    files of ``keep_ids`` (cells outside the ROI, whose labels did not change) are
    carried over unchanged from ``base``.
    """
    tables = [pd.read_parquet(Path(d) / "morphology.parquet") for d in batch_dirs]
    profiles = [pd.read_parquet(Path(d) / "sholl.parquet") for d in batch_dirs]
    swc_files = [f for d in batch_dirs for f in sorted((Path(d) / "swc").glob("*.swc"))]
    if base is not None:
        base, keep = Path(base), np.asarray(keep_ids, dtype=np.int64)
        for name, schema in (("morphology.parquet", BATCH_MORPHOLOGY), ("sholl.parquet", BATCH_SHOLL)):
            missing = [c for c in schema if c not in pq.read_schema(base / name).names]
            if missing:
                raise InputError(f"the previous result's {name} lacks {missing} (written by an older traice); "
                                 "run the whole image again, without roi, before updating a region")
        tables.insert(0, _rows_of(pd.read_parquet(base / "morphology.parquet"), keep))
        profiles.insert(0, _rows_of(pd.read_parquet(base / "sholl.parquet"), keep))
        swc_files = [f for f in (base / "swc" / f"{c}.swc" for c in keep) if f.exists()] + swc_files
    table = _concat(tables, BATCH_MORPHOLOGY).sort_values("cell_id", kind="stable")
    sholl = _concat(profiles, BATCH_SHOLL).sort_values("cell_id", kind="stable")
    table = conform(table.assign(sample=sample, **_structures(table, atlas)), MORPHOLOGY)
    sholl = conform(sholl.assign(sample=sample), SHOLL)
    with atomic_dir(swc_dir) as tmp:
        for f in swc_files:
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    write_table(table, table_path)
    write_table(table, csv_path)
    write_table(sholl, sholl_path)
    return table


def _structures(table: pd.DataFrame, atlas: Atlas | None) -> dict:
    """The ``structure_id`` and ``structure`` columns of ``table``'s cells (0 and '' without an atlas)."""
    if atlas is None:
        return {"structure_id": np.zeros(len(table), np.int64), "structure": np.full(len(table), "", object)}
    ids = atlas.structure_at(table[["z_um", "y_um", "x_um"]].to_numpy(dtype=float))
    acronyms = atlas.structures["acronym"]
    return {"structure_id": ids, "structure": [acronyms.get(i, "") if i else "" for i in ids.tolist()]}


def _rows_of(table: pd.DataFrame, cell_ids: np.ndarray) -> pd.DataFrame:
    return table[table["cell_id"].isin(cell_ids)]
