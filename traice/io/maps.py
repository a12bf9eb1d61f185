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
nothing half-written. :class:`MapReader` assembles the maps of any box from
the tiles it overlaps; voxels outside every tile read as background (no
foreground, offsets 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from traice.core.geometry import Box
from traice.core.maps import decode_offsets, decode_probability, encode
from traice.io.tables import atomic_dir

MAP_CHUNKS = (32, 128, 128)


def write_maps(tiles: Sequence[tuple[int, Box, np.ndarray]], path: str | Path) -> None:
    """Store ``(tile, core, maps (5, *core.shape) float)`` of one detect job as one zarr group at ``path``."""
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        boxes = {}
        for tile, core, maps in tiles:
            if maps.shape != (5, *core.shape):
                raise ValueError(f"tile {tile}: maps {maps.shape} do not cover its core {core.shape}")
            prob, off = encode(maps)
            sub = group.create_group(str(tile))
            chunks = tuple(min(c, n) for c, n in zip(MAP_CHUNKS, core.shape))
            sub.create_array("probability", shape=prob.shape, chunks=(1, *chunks), dtype=np.uint8, fill_value=0)[...] = prob
            sub.create_array("offsets", shape=off.shape, chunks=(1, *chunks), dtype=np.int8, fill_value=0)[...] = off
            boxes[str(tile)] = [*core.start, *core.stop]
        group.attrs["tiles"] = boxes


class MapReader:
    """The maps of any box, from the detect jobs' groups (``maps/batch_*.zarr``) of one run."""

    def __init__(self, groups: Sequence[str | Path]):
        self.paths = [Path(p) for p in groups]
        self.tiles: list[tuple[Box, zarr.Group]] = []
        for path in self.paths:
            group = zarr.open_group(str(path), mode="r")
            for tile, corners in dict(group.attrs.get("tiles", {})).items():
                self.tiles.append((Box(tuple(corners[:3]), tuple(corners[3:])), group[tile]))
        if not self.tiles:
            raise ValueError("no one-pass maps were written: detect.method traice needs a one-pass (5-channel) model")

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Foreground probability ``box.shape`` float32 and offsets ``(3, *box.shape)`` float32 (offset units)."""
        foreground = np.zeros(box.shape, np.uint8)
        offsets = np.zeros((3, *box.shape), np.int8)
        for core, group in self.tiles:
            part = core.intersect(box)
            if part.empty:
                continue
            src, dst = part.relative_to(core).slices, part.relative_to(box).slices
            foreground[dst] = group["probability"][(1, *src)]
            offsets[(slice(None), *dst)] = group["offsets"][(slice(None), *src)]
        return decode_probability(foreground), decode_offsets(offsets)

    def stored_bytes(self) -> int:
        """Bytes the maps take on disk (compressed chunks)."""
        return sum(f.stat().st_size for path in self.paths for f in path.rglob("*") if f.is_file())


class ArrayMaps:
    """In-memory maps ``(5, Z, Y, X)`` float with :class:`MapReader`'s ``read``, stored and read back
    through the same encoding (for benchmarks and tests that hold a volume as an array)."""

    def __init__(self, maps: np.ndarray):
        self.probability, self.offsets = encode(np.asarray(maps))

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        return (decode_probability(self.probability[(1, *box.slices)]),
                decode_offsets(self.offsets[(slice(None), *box.slices)]))
