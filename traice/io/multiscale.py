"""Write OME-Zarr (NGFF 0.5) multiscale images and label images: whole, or block by block at every level."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from traice.core.geometry import Box, grid
from traice.io.ome import SPATIAL, multiscales_metadata


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
    source: str | Path | None = None,
) -> list[tuple[int, int, int]]:
    """Create an empty NGFF 0.5 multiscale group (arrays for every level, metadata).

    A label group (``label``) links back to its image ``source`` (NGFF ``image-label``
    ``source.image``, written relative to the label group) when one is given.

    Chunks of level ``k`` cover exactly ``footprint`` level-0 voxels, so a writer
    that owns a block of level-0 chunks owns whole chunks at every level.
    Returns the cumulative downsampling factor of each level.
    """
    # ome-zarr-py's writer imports dask and xarray (3 s); the jobs that only fill blocks never need it
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import add_metadata, write_multiscales_metadata

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
        meta = {"version": "0.5"}
        if source is not None:
            meta["source"] = {"image": os.path.relpath(Path(source).absolute(), path.absolute())}
        add_metadata(group, {"image-label": meta}, fmt=FormatV05())
    return factors


def level_factors(path: str | Path) -> list[tuple[int, int, int]]:
    """Cumulative downsampling factors of a multiscale group written by :func:`create_multiscale`."""
    group = zarr.open_group(str(path), mode="r")
    ms, _ = multiscales_metadata(dict(group.attrs))
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
    source: str | Path | None = None,
) -> None:
    """Write a whole in-memory (z, y, x) volume as an NGFF 0.5 multiscale image or label image (of ``source``)."""
    create_multiscale(path, data.shape, spacing, data.dtype, footprint, label=label, name=name, source=source)
    for box in grid(Box.from_shape(data.shape), footprint):
        write_block(path, box, data[box.slices], label=label)


def add_labels(image_path: str | Path, name: str, data: np.ndarray, spacing: Sequence[float]) -> None:
    """Add a label image ``labels/{name}`` to an existing OME-Zarr image (NGFF labels group)."""
    from ome_zarr.format import FormatV05

    labels = zarr.open_group(str(Path(image_path) / "labels"), mode="a", zarr_format=3)
    write_multiscale(Path(image_path) / "labels" / name, data, spacing, label=True, name=name, source=image_path)
    existing = dict(labels.attrs).get("ome", {}).get("labels", [])
    labels.attrs["ome"] = {"version": FormatV05().version, "labels": sorted(set(existing) | {name})}
