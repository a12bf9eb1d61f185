"""The networks' voxel grid: images at any voxel size are resampled onto it on read and back after.

The networks were trained on 1.25 × 0.4 × 0.4 µm voxels (z, y, x; the
synthetic and rendered training fields). A block of an image at another
voxel size is resized onto that grid before the network sees it (linear
interpolation; anti-aliased where it shrinks) and the network's maps are
resized back onto the block, so tables, labels and morphology stay on the
input's own grid. Voxel sizes within 5 % of the grid are used as they are.
"""

from __future__ import annotations

import functools
import zlib
from typing import Sequence

import numpy as np
from skimage.transform import resize

from traice.core.intensity import compress, grid_stats, model_input, normalise

MODEL_SPACING_UM = (1.25, 0.4, 0.4)
TOLERANCE = 0.05


def needs_resampling(spacing: Sequence[float]) -> bool:
    """Whether voxels of ``spacing`` (µm) differ from the networks' grid by more than the tolerance."""
    return any(abs(s / m - 1) > TOLERANCE for s, m in zip(spacing, MODEL_SPACING_UM))


def grid_notes(spacing: Sequence[float]) -> list[str]:
    """What reading an image of ``spacing`` voxels (µm, z, y, x) onto the networks' grid means, in words, for
    ``traice inspect``; empty where the image is on the grid. What the notes say was measured in
    docs/inputs.md ("Which axis does what")."""
    if not needs_resampling(spacing):
        return []
    ratio = [s / m for s, m in zip(spacing, MODEL_SPACING_UM)]
    grid = " x ".join(f"{m:g}" for m in MODEL_SPACING_UM)
    notes = [f"the networks see it resampled onto their grid of {grid} µm (this voxel is {ratio[0]:.2g} x "
             f"{ratio[1]:.2g} x {ratio[2]:.2g} of the grid's); the results stay on this image's voxels"]
    if ratio[0] > 1 + TOLERANCE:
        notes.append("coarser along z than the grid: a process thinner than a voxel fills it, so cell volumes come "
                     "out larger than on finer voxels (docs/inputs.md, 'Which axis does what')")
    if max(ratio[1:]) > 1 + TOLERANCE:
        notes.append("coarser in the plane than the grid: the thinnest processes are lost, and more background "
                     "noise is called foreground (docs/inputs.md, 'Which axis does what')")
    return notes


def model_shape(shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, int, int]:
    """The shape of a ``shape`` block of ``spacing`` voxels on the networks' grid (the same µm extent)."""
    return tuple(max(1, round(n * s / m)) for n, s, m in zip(shape, spacing, MODEL_SPACING_UM))  # type: ignore[return-value]


def model_voxels(voxels: Sequence[int], spacing: Sequence[float]) -> tuple[int, int, int]:
    """The input voxels covering what ``voxels`` voxels of the networks' grid cover (e.g. a tile size)."""
    if not needs_resampling(spacing):
        return tuple(int(v) for v in voxels)  # type: ignore[return-value]
    return tuple(max(1, round(v * m / s)) for v, s, m in zip(voxels, spacing, MODEL_SPACING_UM))  # type: ignore[return-value]


def to_model_grid(block: np.ndarray, spacing: Sequence[float], shape: Sequence[int] | None = None) -> np.ndarray:
    """A ``(Z, Y, X)`` block resized onto the networks' grid: float32 of :func:`model_shape`, or of ``shape``
    where a caller needs an exact window (the extent in µm then differs by the rounding of the block's voxels)."""
    target = tuple(shape) if shape is not None else model_shape(block.shape, spacing)
    if target == block.shape:
        return block.astype(np.float32, copy=False)
    shrinks = any(t < n for t, n in zip(target, block.shape))
    return resize(block.astype(np.float32, copy=False), target, order=1, mode="edge", anti_aliasing=shrinks,
                  preserve_range=True).astype(np.float32, copy=False)


def grid_position(point: Sequence[float], block_shape: Sequence[int], grid_shape: Sequence[int]) -> np.ndarray:
    """A position in a block's voxels (from its start) as a position in the voxels of the block resized to
    ``grid_shape`` (:func:`to_model_grid`: voxel centres aligned, the block's edges on the grid's): ``(3,)``."""
    scale = np.asarray(grid_shape, float) / np.asarray(block_shape, float)
    return (np.asarray(point, float) + 0.5) * scale - 0.5


def shrink_to_grid(block: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """A ``(Z, Y, X)`` block resized onto the networks' grid along the axes where its voxels are finer, as
    :func:`to_model_grid` does (anti-aliased), and kept as it is along the others: float32.

    The noise of these voxels is the noise the network sees: averaging finer voxels lowers it, while
    interpolating between coarser ones only smooths it (:func:`traice.stages.plan.intensity_stats`)."""
    return to_model_grid(block, spacing, tuple(min(t, n) for t, n in zip(model_shape(block.shape, spacing), block.shape)))


@functools.lru_cache(maxsize=16)
def resampling_variance(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out,)``: the variance of each voxel of unit white noise along an axis of ``n_in`` voxels resized
    to ``n_out`` as :func:`to_model_grid` resizes it (read-only; a job's tiles share their shapes, so it is
    kept for the next block)."""
    weights = resize(np.eye(n_in, dtype=np.float32), (n_out, n_in), order=1, mode="edge",
                     anti_aliasing=n_out < n_in, preserve_range=True)
    variance = (weights.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    variance.flags.writeable = False
    return variance


def block_resampling_variance(in_shape: Sequence[int], out_shape: Sequence[int], axes: Sequence[int]) -> np.ndarray:
    """The variance of each voxel of unit white noise in a block of ``in_shape`` resized to ``out_shape`` as
    :func:`to_model_grid` resizes it, counting only the resizing along ``axes``: float32, one of ``out_shape``'s
    lengths along each of ``axes`` and 1 along the others (it broadcasts against the resized block); the
    product of :func:`resampling_variance` along those axes."""
    variance = np.ones((1, 1, 1), np.float32)
    for a in axes:
        along = resampling_variance(in_shape[a], out_shape[a])
        variance = variance * along.reshape([-1 if i == a else 1 for i in range(3)])
    return variance


def grid_input(block: np.ndarray, spacing: Sequence[float], stats: dict, shape: Sequence[int] | None = None) -> np.ndarray:
    """The networks' input for a raw ``(Z, Y, X)`` block of ``spacing`` voxels: float32 on the grid
    (:func:`to_model_grid`, of ``shape`` where given; the block as it is where its voxels are the grid's),
    normalised with :func:`traice.core.intensity.grid_stats`.

    The networks were trained on white noise of one sigma in every voxel; resizing changes that, and it is
    mended with noise drawn from a generator seeded by the block's values (the same block always gets the
    same input; overlapping blocks draw their own):

    - Where the block's voxels are finer, averaging them onto the grid leaves the noise's variance periodic
      from voxel to voxel (0.15-0.48 of a finer voxel's at 0.8x, period 4 grid voxels along each axis):
      each voxel gets the noise that brings it to the largest variance away from the block's edges
      (:func:`resampling_variance`), and the block is divided by that noise, so that it is one sigma
      everywhere (docs/inputs.md, "Even noise on finer voxels").
    - Where they are coarser, interpolation leaves the noise correlated over a coarse voxel: blobs a process
      wide, which the networks take for processes. The noise the interpolation smoothed away is put back:
      white noise of one sigma minus its own round trip through the coarse voxels (docs/inputs.md,
      "Coarser voxels")."""
    resized = needs_resampling(spacing) or (shape is not None and tuple(shape) != block.shape)
    on_grid = to_model_grid(block, spacing, shape) if resized else block
    finer = [a for a in range(3) if on_grid.shape[a] < block.shape[a]]
    coarse = tuple(min(n, t) for n, t in zip(block.shape, on_grid.shape))  # the block's voxels where fewer
    if not finer and coarse == on_grid.shape:
        return model_input(on_grid, grid_stats(stats))
    x = normalise(on_grid.astype(np.float32, copy=False), grid_stats(stats))
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(block).tobytes()))
    if finer:
        variance = block_resampling_variance(block.shape, on_grid.shape, finer)
        # the largest variance, the edge voxels' padding aside
        top = float(variance[tuple(slice(1, -1) if n > 2 else slice(None) for n in variance.shape)].max())
        mean = float(variance.mean())
        x += rng.standard_normal(x.shape, np.float32) * np.sqrt(np.maximum(top - variance, 0) / mean)
        x /= np.float32(np.sqrt(top / mean))
    if coarse != on_grid.shape:
        white = rng.standard_normal(x.shape, np.float32)
        through = resize(white, coarse, order=1, mode="edge", anti_aliasing=True, preserve_range=True)
        x += white - resize(through, x.shape, order=1, mode="edge", preserve_range=True).astype(np.float32)
    return compress(x)


def from_model_grid(maps: np.ndarray, shape: Sequence[int], probability_channels: int | None = None) -> np.ndarray:
    """Maps ``(C, z, y, x)`` on the networks' grid resized back onto a block of ``shape``: ``(C, *shape)`` float32.

    The first ``probability_channels`` channels (all when None) are probabilities that are thresholded
    later (the foreground at ``segment.probability``, 0.1 by default). Along the axes where the block is
    finer, each of its voxels takes the value of the grid voxel it lies in: linear interpolation between a
    thin process's grid voxel and the background would move a low threshold's crossing out by most of a grid
    voxel on each side and make every process fatter than on the grid. Along coarser axes, and for the
    other channels (offsets), values are interpolated linearly."""
    shape = tuple(shape)
    if maps.shape[1:] == shape:
        return maps
    n_prob = len(maps) if probability_channels is None else probability_channels
    finer = tuple(max(t, n) for t, n in zip(shape, maps.shape[1:]))  # finer axes at their size, others as they are

    def resized(channel: np.ndarray, target: tuple, order: int) -> np.ndarray:
        if channel.shape == target:
            return channel
        return resize(channel, target, order=order, mode="edge", anti_aliasing=False, preserve_range=True)

    return np.stack([resized(resized(channel, finer, 0) if i < n_prob else channel, shape, 1)
                     for i, channel in enumerate(maps)]).astype(np.float32, copy=False)
