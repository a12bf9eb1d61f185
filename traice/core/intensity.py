"""Intensity statistics and normalisation: raw counts to the units every method works in.

The statistics are computed once per image (:func:`traice.stages.plan.intensity_stats`
samples the full-resolution image) and shared by every tile, window and cell,
so the same voxel gets the same value everywhere and tiles have no seams::

    raw (Z, Y, X) counts
      -> normalise    (raw - median) / sigma       background-noise units: 0 = background, 1 = one sigma
                                                   (NaN and ±Inf voxels read as background, 0;
                                                   none reads darker than -EMPTY_SIGMAS)
      -> model_input  arcsinh(normalised / 3)      the networks' input, float32
"""

from __future__ import annotations

import numpy as np

from traice.core.errors import InputError

MAD_TO_SIGMA = 1.4826
"""A normal distribution's standard deviation per median absolute deviation."""

ASINH_SCALE = 3.0
"""Noise sigmas over which :func:`model_input` stays linear before it turns logarithmic."""

EMPTY_SIGMAS = 6.0
"""How far below the background a voxel reads at most, in noise sigmas. The noise does not reach that far and
cells only add light, so what lies further down is empty space, such as the 0 a stitched whole-brain volume
holds where no tile was (:func:`normalise`)."""


def background_noise(data: np.ndarray, background: float) -> float:
    """Noise sigma at ``background`` from the voxels at or under it: their median absolute deviation.

    Only the lower half is used: cells add bright voxels, never dark ones. Where that
    deviation is 0, most lower voxels sit exactly at the background, and it says nothing:
    integer counts whose noise is under a count take their root mean square deviation
    instead, and an image clipped at its background (a background-subtracted stack, half
    its voxels 0) has no noise below it, so the voxels above it are measured as the lower
    half would be (cells are a few per cent of them). 0.0 when every voxel is the background.
    """
    data = np.asarray(data, dtype=np.float64)
    below = background - data[data <= background]
    if below.size and np.median(below) > 0:
        return MAD_TO_SIGMA * float(np.median(below))
    if below.size and below.any():
        return float(np.sqrt(np.mean(below**2)))
    above = data[data > background] - background
    return MAD_TO_SIGMA * float(np.median(above)) if above.size else 0.0


def robust_stats(data: np.ndarray) -> dict[str, float]:
    """Median (background level), MAD-based noise sigma and percentiles of raw voxel values (any shape).

    Non-finite voxels (NaN, ±Inf) are left out and counted (``non_finite``);
    InputError when no voxel is finite.
    """
    data = np.asarray(data).ravel()
    finite = np.isfinite(data)
    non_finite = int(data.size - np.count_nonzero(finite))
    if non_finite:
        data = data[finite]
    if data.size == 0:
        raise InputError(f"the image has no finite voxel among the {non_finite} sampled (all NaN or infinite)")
    median = float(np.median(data))
    p1, p99, p999 = (float(v) for v in np.percentile(data, [1, 99, 99.9]))
    sigma = max(background_noise(data, median), 1e-6)
    return {"median": median, "sigma": sigma, "p1": p1, "p99": p99, "p99_9": p999, "non_finite": non_finite}


def grid_stats(stats: dict) -> dict:
    """The statistics to normalise an image's blocks with once they are resampled onto the networks' grid:
    ``stats`` with the median and sigma measured on the resampled voxels (``grid_median``, ``grid_sigma``,
    :func:`traice.stages.plan.intensity_stats`) where the plan has them, else ``stats`` itself.

    Finer voxels than the grid's are averaged on the way, which lowers their noise: normalised with the
    noise of the input's own voxels, a cell would look dimmer to the network than it is."""
    if "grid_sigma" not in stats:
        return stats
    return {**stats, "median": stats["grid_median"], "sigma": stats["grid_sigma"]}


def normalise(block: np.ndarray, stats: dict) -> np.ndarray:
    """Raw counts to background-noise units: 0 = background level, 1 = one noise sigma.

    ``(Z, Y, X)`` -> same shape; float32 for float32 or integer input.
    Non-finite voxels (NaN, ±Inf: a float image's holes or overflow) read as
    background, 0, so they neither make nor hide a cell. No voxel reads darker
    than :data:`EMPTY_SIGMAS` below the background: empty space beside the
    tissue (the 0 of a stitched volume, tens of sigmas down) would otherwise be
    a deep, sharp-edged hole in the windows that straddle it, unlike anything
    the networks were trained on. A clamp, not a reset to the background, so
    the order of voxels is kept: in tissue whose own background lies that far
    below the image's, a reset would turn faint cells that still read under
    the background into dips in a flat plane.
    """
    out = (block - np.float32(stats["median"])) / np.float32(stats["sigma"])
    if np.issubdtype(out.dtype, np.floating):
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.maximum(out, -EMPTY_SIGMAS, out=out)
    return out


def model_input(raw: np.ndarray, stats: dict) -> np.ndarray:
    """The networks' input from raw counts: ``arcsinh(normalise(raw, stats) / 3)``.

    ``(Z, Y, X)`` any numeric dtype ``-> (Z, Y, X) float32``.

    ``arcsinh(x / 3)`` is about ``x / 3`` within three sigmas of the background
    (noise stays linear, near +-0.3) and logarithmic above, so somas several-fold
    brighter than faint ones or than thick processes land within a few units of
    each other. It is odd-symmetric, so background stays centred on 0. Training
    and inference both use this function.
    """
    return compress(normalise(np.asarray(raw, dtype=np.float32), stats))


def compress(normalised: np.ndarray) -> np.ndarray:
    """Noise units to the networks' input, ``arcsinh(normalised / 3)``: same shape, float32."""
    return np.arcsinh(normalised / np.float32(ASINH_SCALE)).astype(np.float32, copy=False)


def expand(compressed: np.ndarray) -> np.ndarray:
    """The inverse of :func:`compress`: the networks' input back to noise units, ``3 sinh(x)``: same shape, float32."""
    return (np.float32(ASINH_SCALE) * np.sinh(np.asarray(compressed, dtype=np.float32))).astype(np.float32, copy=False)
