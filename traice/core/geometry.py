"""Boxes in level-0 voxel space: the one geometry type of traice.

A :class:`Box` is a half-open interval ``[start, stop)`` per axis, in (z, y, x)
voxel order. Tiles, halos, per-cell crops, regions of interest and stitch blocks
are all boxes. Physical positions are micrometres from the image origin:
``position_um = voxel_index * spacing``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

Triple = tuple[int, int, int]


def _triple(values: Iterable[float], name: str) -> Triple:
    out = tuple(int(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"{name} must have 3 values (z, y, x), got {len(out)}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True, order=True)
class Box:
    """Half-open voxel box ``[start, stop)`` in (z, y, x) order."""

    start: Triple
    stop: Triple

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _triple(self.start, "start"))
        object.__setattr__(self, "stop", _triple(self.stop, "stop"))
        if any(b < a for a, b in zip(self.start, self.stop)):
            raise ValueError(f"box stop {self.stop} lies before start {self.start}")

    @classmethod
    def from_shape(cls, shape: Sequence[int]) -> "Box":
        return cls((0, 0, 0), tuple(shape))

    @classmethod
    def from_slices(cls, slices: Sequence[slice]) -> "Box":
        """The box of three slices with explicit starts and stops (``scipy.ndimage.find_objects``' boxes)."""
        return cls(tuple(s.start for s in slices), tuple(s.stop for s in slices))

    @classmethod
    def from_um(cls, start_um: Sequence[float], stop_um: Sequence[float], spacing: Sequence[float]) -> "Box":
        """Smallest voxel box covering the micrometre box ``[start_um, stop_um)``."""
        start = [math.floor(a / s + 1e-9) for a, s in zip(start_um, spacing)]
        stop = [math.ceil(b / s - 1e-9) for b, s in zip(stop_um, spacing)]
        return cls(tuple(start), tuple(max(a, b) for a, b in zip(start, stop)))

    @classmethod
    def around(cls, centre: Sequence[float], half_width: Sequence[int]) -> "Box":
        """Box of ``2 * half_width + 1`` voxels centred on the voxel nearest ``centre``."""
        c = [int(round(v)) for v in centre]
        return cls(tuple(a - h for a, h in zip(c, half_width)), tuple(a + h + 1 for a, h in zip(c, half_width)))

    @property
    def shape(self) -> Triple:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def empty(self) -> bool:
        return self.size == 0

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def to_um(self, spacing: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (
            tuple(a * s for a, s in zip(self.start, spacing)),
            tuple(b * s for b, s in zip(self.stop, spacing)),
        )

    def intersect(self, other: "Box") -> "Box":
        start = tuple(max(a, b) for a, b in zip(self.start, other.start))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop))
        return Box(start, tuple(max(a, b) for a, b in zip(start, stop)))

    def intersects(self, other: "Box") -> bool:
        return not self.intersect(other).empty

    def grow(self, amount: Sequence[int]) -> "Box":
        return Box(
            tuple(a - g for a, g in zip(self.start, amount)),
            tuple(b + g for b, g in zip(self.stop, amount)),
        )

    def shift(self, offset: Sequence[int]) -> "Box":
        return Box(
            tuple(a + o for a, o in zip(self.start, offset)),
            tuple(b + o for b, o in zip(self.stop, offset)),
        )

    def relative_to(self, outer: "Box") -> "Box":
        """This box in the coordinates of ``outer`` (whose start becomes 0)."""
        return self.shift(tuple(-a for a in outer.start))

    def shift_inside(self, bounds: "Box") -> "Box":
        """Translate (not crop) so the box lies inside ``bounds`` where it fits.

        Axes where the box is larger than ``bounds`` are cropped to ``bounds``.
        """
        start, stop = [], []
        for a, b, lo, hi in zip(self.start, self.stop, bounds.start, bounds.stop):
            if b - a >= hi - lo:
                start.append(lo)
                stop.append(hi)
                continue
            off = max(lo - a, 0) + min(hi - b, 0)
            start.append(a + off)
            stop.append(b + off)
        return Box(tuple(start), tuple(stop))

    def contains(self, point: Sequence[float]) -> bool:
        """Whether a (fractional) voxel position lies in ``[start, stop)`` on every axis."""
        return all(a <= p < b for p, a, b in zip(point, self.start, self.stop))

    def contains_points(self, points: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`contains`: ``points`` is (N, 3), returns bool (N,)."""
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        return np.all((p >= np.array(self.start)) & (p < np.array(self.stop)), axis=1)

    def as_row(self, prefix: str) -> dict[str, int]:
        """Flat columns ``{prefix}_z0 … {prefix}_x1`` for tables."""
        row = {}
        for ax, a, b in zip("zyx", self.start, self.stop):
            row[f"{prefix}_{ax}0"] = a
            row[f"{prefix}_{ax}1"] = b
        return row

    @classmethod
    def from_row(cls, row, prefix: str) -> "Box":
        return cls(
            tuple(int(row[f"{prefix}_{ax}0"]) for ax in "zyx"),
            tuple(int(row[f"{prefix}_{ax}1"]) for ax in "zyx"),
        )


@dataclass(frozen=True)
class Tile:
    """A tile of the tiling: disjoint ``core`` plus the ``read`` box (core + halo, clipped)."""

    index: int
    core: Box
    read: Box

    def owns(self, point: Sequence[float]) -> bool:
        """Owner rule: a detection belongs to the tile whose core contains its centroid."""
        return self.core.contains(point)


def grid(bounds: Box, step: Sequence[int]) -> Iterator[Box]:
    """Disjoint boxes of at most ``step`` voxels that exactly cover ``bounds``, in C order."""
    step = _triple(step, "step")
    if any(s <= 0 for s in step):
        raise ValueError(f"grid step must be positive, got {step}")
    ranges = [range(a, b, s) for a, b, s in zip(bounds.start, bounds.stop, step)]
    for corner in itertools.product(*ranges):
        stop = tuple(min(c + s, b) for c, s, b in zip(corner, step, bounds.stop))
        yield Box(corner, stop)


def tile_grid(roi: Box, bounds: Box, tile_shape: Sequence[int], halo: Sequence[int]) -> list[Tile]:
    """Tiles whose cores cover ``roi`` disjointly, each read box grown by ``halo`` within ``bounds``."""
    return [
        Tile(i, core, core.grow(halo).intersect(bounds))
        for i, core in enumerate(grid(roi, tile_shape))
    ]


def distance_um(shape: Sequence[int], centre: Sequence[float], spacing: Sequence[float]) -> np.ndarray:
    """Distance in µm from ``centre`` (voxels, may be fractional) to every voxel of a ``shape`` grid: float64."""
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def um_to_voxels(length_um: Sequence[float] | float, spacing: Sequence[float]) -> Triple:
    """A physical length per axis (or one for all axes) as whole voxels, rounded up."""
    if isinstance(length_um, (int, float)):
        length_um = [length_um] * 3
    return tuple(int(math.ceil(l / s - 1e-9)) for l, s in zip(length_um, spacing))  # type: ignore[return-value]
