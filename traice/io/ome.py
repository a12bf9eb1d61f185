"""Read OME-Zarr (NGFF 0.4 / 0.5) images block by block (writing: :mod:`traice.io.multiscale`).

Reading checks everything the pipeline relies on up front and raises
:class:`InputError` with a one-line message naming the problem, so a bad input
fails before any work starts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from traice.core.errors import InputError
from traice.core.geometry import Box

SPATIAL = ("z", "y", "x")
UNIT_TO_UM = {
    None: 1.0,
    "micrometer": 1.0,
    "micron": 1.0,
    "nanometer": 1e-3,
    "millimeter": 1e3,
    "angstrom": 1e-4,
}


@dataclass(frozen=True)
class Level:
    """One resolution level: its zarr path and voxel size (z, y, x) in µm."""

    path: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]


@dataclass
class OmeImage:
    """A single-channel 3D view of an OME-Zarr image.

    ``levels[0]`` is full resolution; :meth:`read` returns float32 (z, y, x) blocks.
    """

    path: str
    levels: list[Level]
    channel: int | None
    axes: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.levels[0].shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.levels[0].spacing

    @property
    def bounds(self) -> Box:
        return Box.from_shape(self.shape)

    def array(self, level: int = 0) -> zarr.Array:
        return zarr.open_array(str(Path(self.path) / self.levels[level].path), mode="r")

    def read(self, box: Box, level: int = 0, step: Sequence[int] = (1, 1, 1), dtype=np.float32) -> np.ndarray:
        """Voxels of ``box`` (in that level's voxels, every ``step``-th) as ``dtype`` (z, y, x); float32 unless
        asked otherwise (``None``: the array's own).

        A chunk that cannot be read (truncated, corrupt) raises InputError naming it.
        """
        index: list[int | slice] = []
        spatial = iter(slice(a, b, k) for a, b, k in zip(box.start, box.stop, step))
        for ax in self.axes:
            if ax in SPATIAL:
                index.append(next(spatial))
            elif ax == "c":
                index.append(self.channel or 0)
            else:  # a singleton time axis
                index.append(0)
        array = self.array(level)
        try:
            return np.asarray(array[tuple(index)], dtype=dtype)
        except Exception as err:  # codecs and stores raise many types; find and name the chunk
            raise InputError(f"{Path(self.path) / self.levels[level].path}: {_bad_chunk(array, tuple(index))} "
                             f"cannot be read ({type(err).__name__}: {err})") from None

    def missing_chunks(self, level: int = 0, name: int = 3) -> tuple[int, int, list[str]]:
        """Chunks of a level absent from the store (they read as the fill value): how many, of how many, and the
        keys of the first ``name`` of them.

        Absent is not always damaged: zarr writers may leave out chunks that
        hold only the fill value. The count covers every channel of the array;
        it lists the store, which for a whole brain on a slow file system takes
        a while. (Sharded arrays: the keys name shards.)
        """
        array = self.array(level)
        missing = array.nchunks - array.nchunks_initialized
        keys: list[str] = []
        if missing:
            folder = Path(self.path) / self.levels[level].path
            for coords in itertools.product(*(range(-(-n // c)) for n, c in zip(array.shape, array.chunks))):
                key = array.metadata.encode_chunk_key(coords)
                if not (folder / key).exists():
                    keys.append(key)
                    if len(keys) == name:
                        break
        return missing, array.nchunks, keys


def _bad_chunk(array: zarr.Array, index: tuple) -> str:
    """The key of the first chunk under ``index`` that fails to read, or 'a chunk' when each reads alone."""
    ranges = []
    for i, size, chunk in zip(index, array.shape, array.chunks):
        lo, hi = (i, i + 1) if isinstance(i, int) else (i.start or 0, min(i.stop if i.stop is not None else size, size))
        ranges.append(range(lo // chunk, -(-hi // chunk)))
    for coords in itertools.product(*ranges):
        try:
            array.get_block_selection(coords)
        except Exception:
            return f"chunk {array.metadata.encode_chunk_key(coords)}"
    return "a chunk"


class ArrayImage:
    """An in-memory (z, y, x) volume with :class:`OmeImage`'s reading interface (level 0 only):
    for benchmarks and tests that hold their volume as an array."""

    def __init__(self, data: np.ndarray, spacing: Sequence[float]) -> None:
        self.data = data
        self.spacing = tuple(float(s) for s in spacing)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape

    @property
    def bounds(self) -> Box:
        return Box.from_shape(self.shape)

    def read(self, box: Box) -> np.ndarray:
        return np.asarray(self.data[box.slices], dtype=np.float32)


def read_overview(image: OmeImage, max_voxels: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The whole image at the finest level of at most ``max_voxels`` (subsampled further if no level is
    that small), as float32 (z, y, x), with its voxel size in µm. Memory stays bounded for any image."""
    level = next((i for i, lv in enumerate(image.levels) if np.prod(lv.shape) <= max_voxels), len(image.levels) - 1)
    lv = image.levels[level]
    step = [1, 1, 1]
    while np.prod([math.ceil(n / k) for n, k in zip(lv.shape, step)]) > max_voxels:
        axis = int(np.argmin([s * k for s, k in zip(lv.spacing, step)]))  # coarsen the finest axis first
        step[axis] *= 2
    data = image.read(Box.from_shape(lv.shape), level=level, step=step)
    return data, tuple(s * k for s, k in zip(lv.spacing, step))


def multiscales_metadata(attrs: dict) -> tuple[list, str]:
    """The ``multiscales`` list of a group's attributes (NGFF 0.5 under ``ome``, or 0.4 at the top) and its version."""
    if "ome" in attrs and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"], attrs["ome"].get("version", "0.5")
    if "multiscales" in attrs:
        return attrs["multiscales"], attrs["multiscales"][0].get("version", "0.4")
    raise KeyError


def is_ome_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a zarr group folder (an OME-Zarr image is checked further by :func:`open_image`)."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))


def open_image(path: str | Path, channel: int | None = None) -> OmeImage:
    """Open and validate an OME-Zarr image; raise :class:`InputError` on anything unusable."""
    path = str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"input image not found: {path}")
    if not p.is_dir():
        raise InputError(f"input image {path} is not a folder, so not an OME-Zarr image")
    try:
        group = zarr.open_group(path, mode="r")
    except Exception:
        raise InputError(f"{path} is not an OME-Zarr image (no zarr group metadata found)") from None
    try:
        multiscales, _ = multiscales_metadata(dict(group.attrs))
        ms = multiscales[0]
    except (KeyError, IndexError, TypeError):
        raise InputError(f"{path} is not an OME-Zarr image (no 'multiscales' metadata)") from None

    axes_meta = ms.get("axes")
    if not axes_meta:
        raise InputError(f"{path} has no 'axes' in its multiscales metadata")
    axes = tuple(a["name"] if isinstance(a, dict) else str(a) for a in axes_meta)
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
    spatial = [a for a in axes if a in SPATIAL]
    if len(spatial) < 3:
        raise InputError(
            f"{path} is {len(spatial)}D (axes {','.join(axes)}); traice needs a 3D image with z, y, x axes"
        )
    if [a for a in axes if a in SPATIAL] != list(SPATIAL):
        raise InputError(f"{path} has spatial axes in order {','.join(spatial)}; expected z,y,x")
    unknown = [a for a in axes if a not in SPATIAL + ("c", "t")]
    if unknown:
        raise InputError(f"{path} has unsupported axes {unknown}; expected (t,)(c,)z,y,x")

    datasets = ms.get("datasets") or []
    if not datasets:
        raise InputError(f"{path} lists no datasets in its multiscales metadata")

    levels = []
    for i, ds in enumerate(datasets):
        scale = None
        for t in ds.get("coordinateTransformations", []) + ms.get("coordinateTransformations", []):
            if t.get("type") == "scale" and "scale" in t:
                scale = [a * b for a, b in zip(scale, t["scale"])] if scale else list(t["scale"])
        if scale is None:
            raise InputError(f"{path} has no scale metadata for level {ds.get('path', i)} (coordinateTransformations)")
        if len(scale) != len(axes):
            raise InputError(f"{path} level {ds['path']} scale has {len(scale)} values for {len(axes)} axes")
        try:
            arr = zarr.open_array(str(p / ds["path"]), mode="r")
        except Exception:
            raise InputError(f"{path} is missing its level-{i} array '{ds.get('path')}'") from None
        if arr.ndim != len(axes):
            raise InputError(f"{path} level {ds['path']} has {arr.ndim} dimensions but {len(axes)} axes")
        spacing, shape = [], []
        for ax, unit, s, n in zip(axes, units, scale, arr.shape):
            if ax in SPATIAL:
                if unit not in UNIT_TO_UM:
                    raise InputError(f"{path} axis {ax} has unit '{unit}'; use micrometer, nanometer or millimeter")
                if not (isinstance(s, (int, float)) and s > 0 and math.isfinite(s)):
                    raise InputError(f"{path} axis {ax} has invalid scale {s!r}")
                spacing.append(float(s) * UNIT_TO_UM[unit])
                shape.append(int(n))
            elif ax == "t" and n != 1:
                raise InputError(f"{path} has {n} time points; traice processes one 3D volume")
        levels.append(Level(ds["path"], tuple(spacing), tuple(shape)))

    n_channels = arr_channels(path, levels[0].path, axes)
    if n_channels > 1 and channel is None:
        raise InputError(f"{path} has {n_channels} channels; set 'channel' in the config to choose one (0-{n_channels - 1})")
    if channel is not None and not 0 <= channel < max(n_channels, 1):
        raise InputError(f"{path} has {n_channels} channel(s); 'channel: {channel}' is out of range")
    if min(levels[0].shape) < 1:
        raise InputError(f"{path} is empty (shape {levels[0].shape})")
    return OmeImage(path, levels, channel, axes)


def arr_channels(path: str, level_path: str, axes: Sequence[str]) -> int:
    if "c" not in axes:
        return 1
    return int(zarr.open_array(str(Path(path) / level_path), mode="r").shape[list(axes).index("c")])


# --------------------------------------------------------------------------- writing
