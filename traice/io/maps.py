"""The one-pass maps on disk: written per detect job, read per cell box.

A detect job stores the maps of each tile it runs (:mod:`traice.core.maps`:
soma and foreground probability as uint8, offsets as int8, zero where there is
no foreground) over the tile's core, as one zarr group per job::

    maps/batch_{b}.zarr/
        {tile}/probability   (2, Z, Y, X) uint8, chunks (1, 32, 128, 128)
        {tile}/offsets       (3, Z, Y, X) int8
        attributes: {"tiles": {tile: [z0, y0, x0, z1, y1, x1]}}   level-0 voxels

Cores do not overlap, so every voxel the plan detects in is stored once. The
group is written to a temporary folder and renamed: a killed job leaves
nothing half-written. Once every detect job is done, one small index
(``maps/index.parquet``, :func:`write_map_index`) says which group holds which
tile, so a segment job depends on one file, not on every detect job's group.
:class:`MapReader` assembles the maps of any box from the tiles it overlaps;
voxels outside every tile read as background (no foreground, offsets 0).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import zarr

from traice.core.geometry import Box
from traice.core.maps import decode_offsets, decode_probability, encode
from traice.io.tables import atomic_dir, write_table

MAP_CHUNKS = (32, 128, 128)


@contextmanager
def map_writer(path: str | Path) -> Iterator[Callable[[int, Box, np.ndarray], None]]:
    """One detect job's zarr group at ``path``, written a tile at a time: yields ``add(tile, core, maps)``, which
    encodes and stores ``maps (5, *core.shape)`` float (a view is fine) at once, so that a job holds one tile's
    float maps whatever its number of tiles. The group appears at ``path`` whole when the block ends, and not at
    all when it fails."""
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        boxes = {}

        def add(tile: int, core: Box, maps: np.ndarray) -> None:
            if maps.shape != (5, *core.shape):
                raise ValueError(f"tile {tile}: maps {maps.shape} do not cover its core {core.shape}")
            prob, off = encode(maps)
            sub = group.create_group(str(tile))
            chunks = tuple(min(c, n) for c, n in zip(MAP_CHUNKS, core.shape))
            sub.create_array("probability", shape=prob.shape, chunks=(1, *chunks), dtype=np.uint8, fill_value=0)[...] = prob
            sub.create_array("offsets", shape=off.shape, chunks=(1, *chunks), dtype=np.int8, fill_value=0)[...] = off
            boxes[str(tile)] = [*core.start, *core.stop]

        yield add
        group.attrs["tiles"] = boxes


def write_maps(tiles: Sequence[tuple[int, Box, np.ndarray]], path: str | Path) -> None:
    """Store ``(tile, core, maps (5, *core.shape) float)`` of one detect job as one zarr group at ``path``."""
    with map_writer(path) as add:
        for tile, core, maps in tiles:
            add(tile, core, maps)


INDEX_COLUMNS = ["group", "tile", *Box.from_shape((1, 1, 1)).as_row("core")]


def map_index(groups: Sequence[str | Path]) -> pd.DataFrame:
    """Which tile each detect job's group holds: one row per tile, ``group`` (the group's folder name, beside
    the index), ``tile`` and its ``core_*`` box in level-0 voxels."""
    rows = []
    for path in groups:
        path = Path(path)
        tiles = dict(zarr.open_group(str(path), mode="r").attrs.get("tiles", {}))
        for tile, corners in tiles.items():
            core = Box(tuple(corners[:3]), tuple(corners[3:]))
            rows.append({"group": path.name, "tile": int(tile), **core.as_row("core")})
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def write_map_index(groups: Sequence[str | Path], path: str | Path) -> pd.DataFrame:
    """Write :func:`map_index` of ``groups`` to ``path`` (a parquet file in the groups' folder)."""
    index = map_index(groups)
    if any(Path(g).parent.resolve() != Path(path).parent.resolve() for g in groups):
        raise ValueError(f"the map index {path} must lie beside the groups it indexes")
    write_table(index, path)
    return index


class MapReader:
    """The maps of any box, from the detect jobs' groups (``maps/batch_*.zarr``) of one run.

    ``index``: :func:`map_index`'s table and the folder its groups lie in. A
    group is opened only when a box read overlaps one of its tiles, so a
    segment job touches the few detect jobs around its cells, not all of them.
    """

    def __init__(self, index: pd.DataFrame, folder: str | Path):
        if not len(index):
            raise ValueError("no one-pass maps were written: detect.method traice needs a one-pass (5-channel) model")
        self.folder = Path(folder)
        self.index = index.reset_index(drop=True)
        self._starts = self.index[["core_z0", "core_y0", "core_x0"]].to_numpy()
        self._stops = self.index[["core_z1", "core_y1", "core_x1"]].to_numpy()
        self._groups: dict[str, zarr.Group] = {}

    @classmethod
    def from_index(cls, path: str | Path) -> "MapReader":
        """The reader of a run's stored index (:func:`write_map_index`)."""
        return cls(pd.read_parquet(path), Path(path).parent)

    @classmethod
    def from_groups(cls, groups: Sequence[str | Path]) -> "MapReader":
        """The reader of some groups (in one folder), indexed on the fly."""
        groups = [Path(g) for g in groups]
        return cls(map_index(groups), groups[0].parent if groups else ".")

    @property
    def tiles(self) -> int:
        """How many tiles the maps cover."""
        return len(self.index)

    @property
    def opened(self) -> list[str]:
        """The groups read so far, in the order they were first read."""
        return list(self._groups)

    def _tile(self, row: int) -> zarr.Group:
        name = self.index.at[row, "group"]
        if name not in self._groups:
            self._groups[name] = zarr.open_group(str(self.folder / name), mode="r")
        return self._groups[name][str(self.index.at[row, "tile"])]

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Foreground probability ``box.shape`` float32 and offsets ``(3, *box.shape)`` float32 (offset units)."""
        offsets = np.zeros((3, *box.shape), np.int8)
        return decode_probability(self._assemble(box, offsets)), decode_offsets(offsets)

    def foreground(self, box: Box) -> np.ndarray:
        """Foreground probability ``box.shape`` float32, without reading the offsets."""
        return decode_probability(self._assemble(box, None))

    def _assemble(self, box: Box, offsets: np.ndarray | None) -> np.ndarray:
        """The stored foreground (uint8) of ``box``; the stored offsets copied into ``offsets`` where given."""
        foreground = np.zeros(box.shape, np.uint8)
        overlapping = np.flatnonzero(((self._starts < np.asarray(box.stop)) & (self._stops > np.asarray(box.start))).all(axis=1))
        for row in overlapping:
            core = Box(tuple(int(v) for v in self._starts[row]), tuple(int(v) for v in self._stops[row]))
            part = core.intersect(box)
            src, dst = part.relative_to(core).slices, part.relative_to(box).slices
            tile = self._tile(row)
            foreground[dst] = tile["probability"][(1, *src)]
            if offsets is not None:
                offsets[(slice(None), *dst)] = tile["offsets"][(slice(None), *src)]
        return foreground

    def stored_bytes(self) -> int:
        """Bytes the maps take on disk (compressed chunks)."""
        return sum(f.stat().st_size for name in self.index["group"].unique()
                   for f in (self.folder / name).rglob("*") if f.is_file())


class ArrayMaps:
    """In-memory maps ``(5, Z, Y, X)`` float with :class:`MapReader`'s ``read``, stored and read back
    through the same encoding (for benchmarks and tests that hold a volume as an array)."""

    def __init__(self, maps: np.ndarray):
        self.probability, self.offsets = encode(np.asarray(maps))

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        return self.foreground(box), decode_offsets(self.offsets[(slice(None), *box.slices)])

    def foreground(self, box: Box) -> np.ndarray:
        return decode_probability(self.probability[(1, *box.slices)])
