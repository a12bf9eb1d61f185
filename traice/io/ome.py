"""Read OME-Zarr (NGFF 0.4 / 0.5) images block by block; write multiscale images and labels.

Reading checks everything the pipeline relies on up front and raises
:class:`InputError` with a one-line message naming the problem, so a bad input
fails before any work starts.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr
from ome_zarr.format import FormatV05
from ome_zarr.writer import add_metadata, write_multiscales_metadata

from traice.core.errors import InputError
from traice.core.geometry import Box, grid

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

    def read(self, box: Box, level: int = 0, step: Sequence[int] = (1, 1, 1)) -> np.ndarray:
        """Voxels of ``box`` (in that level's voxels, every ``step``-th) as float32 (z, y, x)."""
        index: list[int | slice] = []
        spatial = iter(slice(a, b, k) for a, b, k in zip(box.start, box.stop, step))
        for ax in self.axes:
            if ax in SPATIAL:
                index.append(next(spatial))
            elif ax == "c":
                index.append(self.channel or 0)
            else:  # a singleton time axis
                index.append(0)
        return np.asarray(self.array(level)[tuple(index)], dtype=np.float32)


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


def _multiscales(attrs: dict) -> tuple[list, str]:
    if "ome" in attrs and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"], attrs["ome"].get("version", "0.5")
    if "multiscales" in attrs:
        return attrs["multiscales"], attrs["multiscales"][0].get("version", "0.4")
    raise KeyError


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
        multiscales, _ = _multiscales(dict(group.attrs))
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


def pyramid_factors(shape: Sequence[int], spacing: Sequence[float], min_size: int = 64, max_levels: int = 5) -> list[tuple[int, int, int]]:
    """Cumulative downsampling factors per level, level 0 = (1, 1, 1).

    Each level halves the axes whose voxels are clearly finer than the coarsest
    axis (towards isotropy), or all axes once isotropic; it stops when the
    largest in-plane size would fall below ``min_size``.
    """
    factors = [(1, 1, 1)]
    spacing = list(spacing)
    shape = list(shape)
    while len(factors) < max_levels:
        coarse = max(spacing)
        step = [2 if 2 * s <= 1.5 * coarse else 1 for s in spacing]
        if step == [1, 1, 1]:
            step = [2, 2, 2]
        new_shape = [math.ceil(n / f) for n, f in zip(shape, step)]
        if max(new_shape[1:]) < min_size or any(n < 1 for n in new_shape):
            break
        step = [f if n >= 2 * f else 1 for n, f in zip(shape, step)]
        if step == [1, 1, 1]:
            break
        shape = [math.ceil(n / f) for n, f in zip(shape, step)]
        spacing = [s * f for s, f in zip(spacing, step)]
        factors.append(tuple(a * f for a, f in zip(factors[-1], step)))
    return factors


def _datasets(spacing: Sequence[float], factors: Sequence[Sequence[int]]) -> list[dict]:
    return [
        {
            "path": str(i),
            "coordinateTransformations": [{"type": "scale", "scale": [s * f for s, f in zip(spacing, fac)]}],
        }
        for i, fac in enumerate(factors)
    ]


MIN_CHUNK = (8, 32, 32)  # smallest chunk of a downsampled level; fewer levels rather than tinier chunks
AXES = [{"name": ax, "type": "space", "unit": "micrometer"} for ax in SPATIAL]


def create_multiscale(
    path: str | Path,
    shape: Sequence[int],
    spacing: Sequence[float],
    dtype,
    footprint: Sequence[int],
    label: bool = False,
    name: str | None = None,
    fill_value=0,
) -> list[tuple[int, int, int]]:
    """Create an empty NGFF 0.5 multiscale group (arrays for every level, metadata).

    Chunks of level ``k`` cover exactly ``footprint`` level-0 voxels, so a writer
    that owns a block of level-0 chunks owns whole chunks at every level.
    Returns the cumulative downsampling factor of each level.
    """
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    factors = [
        fac for fac in pyramid_factors(shape, spacing)
        if all(c // f >= min(c, m) for c, f, m in zip(footprint, fac, MIN_CHUNK))
    ]
    if any(c % f for fac in factors for c, f in zip(footprint, fac)):
        raise ValueError(f"chunk footprint {tuple(footprint)} must be a multiple of every level factor {factors[-1]}")
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for i, fac in enumerate(factors):
        lshape = tuple(math.ceil(n / f) for n, f in zip(shape, fac))
        chunks = tuple(max(1, min(n, c // f)) for n, c, f in zip(lshape, footprint, fac))
        group.create_array(str(i), shape=lshape, chunks=chunks, dtype=dtype, fill_value=fill_value, dimension_names=SPATIAL)
    write_multiscales_metadata(group, _datasets(spacing, factors), fmt=FormatV05(), axes=AXES, name=name or path.stem)
    if label:
        add_metadata(group, {"image-label": {"version": "0.5"}}, fmt=FormatV05())
    return factors


def level_factors(path: str | Path) -> list[tuple[int, int, int]]:
    """Cumulative downsampling factors of a multiscale group written by :func:`create_multiscale`."""
    group = zarr.open_group(str(path), mode="r")
    ms, _ = _multiscales(dict(group.attrs))
    scales = [ds["coordinateTransformations"][0]["scale"] for ds in ms[0]["datasets"]]
    return [tuple(int(round(s / b)) for s, b in zip(sc, scales[0])) for sc in scales]


def write_block(path: str | Path, box: Box, data: np.ndarray, label: bool = False) -> None:
    """Write level-0 ``data`` at ``box`` and its downsampled versions into every level.

    ``box`` must start on a multiple of each level's factor (true for blocks of
    whole chunks). Labels are downsampled by taking every ``f``-th voxel (values
    stay valid ids); images by block means.
    """
    group = zarr.open_group(str(path), mode="r+")
    for i, fac in enumerate(level_factors(path)):
        arr = group[str(i)]
        if any(a % f for a, f in zip(box.start, fac)):
            raise ValueError(f"block {box} is not aligned to level {i} factors {fac}")
        lo = tuple(a // f for a, f in zip(box.start, fac))
        if label or fac == (1, 1, 1):
            small = data[tuple(slice(None, None, f) for f in fac)]
        else:
            small = _block_mean(data, fac).astype(arr.dtype)
        hi = tuple(min(l + n, s) for l, n, s in zip(lo, small.shape, arr.shape))
        arr[tuple(slice(a, b) for a, b in zip(lo, hi))] = small[tuple(slice(0, b - a) for a, b in zip(lo, hi))]


def _block_mean(data: np.ndarray, fac: Sequence[int]) -> np.ndarray:
    pad = [(0, (-n) % f) for n, f in zip(data.shape, fac)]
    d = np.pad(data.astype(np.float32), pad, mode="edge")
    s = d.shape
    d = d.reshape(s[0] // fac[0], fac[0], s[1] // fac[1], fac[1], s[2] // fac[2], fac[2])
    return np.rint(d.mean(axis=(1, 3, 5))) if np.issubdtype(data.dtype, np.integer) else d.mean(axis=(1, 3, 5))


def write_multiscale(
    path: str | Path,
    data: np.ndarray,
    spacing: Sequence[float],
    footprint: Sequence[int] = (32, 256, 256),
    label: bool = False,
    name: str | None = None,
) -> None:
    """Write a whole in-memory (z, y, x) volume as an NGFF 0.5 multiscale image or label image."""
    create_multiscale(path, data.shape, spacing, data.dtype, footprint, label=label, name=name)
    for box in grid(Box.from_shape(data.shape), footprint):
        write_block(path, box, data[box.slices], label=label)


def add_labels(image_path: str | Path, name: str, data: np.ndarray, spacing: Sequence[float]) -> None:
    """Add a label image ``labels/{name}`` to an existing OME-Zarr image (NGFF labels group)."""
    labels = zarr.open_group(str(Path(image_path) / "labels"), mode="a", zarr_format=3)
    write_multiscale(Path(image_path) / "labels" / name, data, spacing, label=True, name=name)
    existing = dict(labels.attrs).get("ome", {}).get("labels", [])
    add_metadata(labels, {"labels": sorted(set(existing) | {name})}, fmt=FormatV05())
