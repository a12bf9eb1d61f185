"""Soma detection with stage 1 of trAIce3D, the transformer U-Net.

The network's soma probability (and, for the one-pass network, its foreground
and offset maps, :mod:`traice.core.maps`) over the tile's read box in Gaussian-blended
sliding windows (:func:`traice.nn.inferer.sliding_window_probabilities`,
input normalised with the plan's statistics of the whole image, so tiles have
no seams), thresholded; touching somas are split by a marker watershed on the
smoothed probability, and each soma's centroid is probability-weighted. A
block at another voxel size is resampled onto the networks' grid and its maps
back (:mod:`traice.core.grid`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from traice.core.grid import from_model_grid, grid_input
from traice.core.maps import PROBABILITY_CHANNELS
from traice.core.schema import HAS_PROCESSES, all_kept, kept_by_the_rule
from traice.stages.detect.params import DetectParams
from traice.stages.detect.processes import process_share
from traice.stages.detect.somas import split_somas


def load(params: DetectParams):
    """The network of ``params`` (``model``, or the shipped one-pass S weights), with its ``adapter``
    (:mod:`traice.nn.lora`) when one is set, averaged over its ``mirror`` axes (:mod:`traice.nn.mirror`)
    when they are set."""
    from traice.nn.checkpoints import load_model
    from traice.weights import shipped_weights

    model = load_model(params.model or shipped_weights("cells"))
    if params.adapter:
        from traice.nn.lora import apply_adapter

        model = apply_adapter(model, params.adapter)
    if params.mirror:
        from traice.nn.mirror import MirrorAverage

        model = MirrorAverage(model, params.mirror)
    return model


def detect_traice(block: np.ndarray, spacing, stats: dict, params: DetectParams, model) -> pd.DataFrame:
    """Somas in one raw (z, y, x) block from the stage-1 model; columns as :func:`detect_classical`,
    ``score`` = the soma's peak probability."""
    return detect_traice_maps(block, spacing, stats, params, model)[0]


def detect_traice_maps(block: np.ndarray, spacing, stats: dict, params: DetectParams, model) -> tuple[pd.DataFrame, np.ndarray | None]:
    """:func:`detect_traice` and, for a one-pass model (5 outputs), its maps ``(5, *block.shape)``
    (:mod:`traice.core.maps`), its detections without processes dropped; None for a soma-only model."""
    found, maps = detect_traice_marked(block, spacing, stats, params, model)
    return found[kept_by_the_rule(found)].drop(columns=HAS_PROCESSES).reset_index(drop=True), maps


def detect_traice_marked(block: np.ndarray, spacing, stats: dict, params: DetectParams, model) -> tuple[pd.DataFrame, np.ndarray | None]:
    """:func:`detect_traice_maps` with every detection kept and marked: column ``has_processes`` False where the
    process rule (:func:`mark_processes`) drops it. The workflow's detect step writes them all, so that the merge
    can count the dropped ones."""
    maps = network_maps(block, spacing, stats, params, model)
    found = somas_from_probability(maps[0], spacing, params)
    if maps.shape[0] != 5:
        return all_kept(found), None
    return mark_processes(found, maps, spacing, params), maps


def mark_processes(found: pd.DataFrame, maps: np.ndarray, spacing, params: DetectParams) -> pd.DataFrame:
    """``found`` (block voxels) with column ``has_processes``: at least ``params.min_processes`` of the shell around
    each soma is foreground in the one-pass ``maps`` (:mod:`traice.stages.detect.processes`); True for every
    detection when the rule is off (``min_processes`` 0) and where the evidence cannot be read (NaN)."""
    if params.min_processes <= 0 or found.empty:
        return all_kept(found)
    share = process_share(maps[0], maps[1], found[["z", "y", "x"]].to_numpy(), spacing, params.probability)
    return found.assign(**{HAS_PROCESSES: ~(share < params.min_processes)})


def network_maps(block: np.ndarray, spacing, stats: dict, params: DetectParams, model) -> np.ndarray:
    """The network's output maps ``(C, *block.shape)`` over one raw (z, y, x) block, on the block's voxels
    (channel 0: the soma probability)."""
    from traice.nn.inferer import sliding_window_maps

    spacing = np.asarray(spacing, dtype=float)
    maps = sliding_window_maps(model, grid_input(block, spacing, stats), model.window, params.overlap,
                               params.batch_size, params.device)
    return from_model_grid(maps, block.shape, PROBABILITY_CHANNELS)  # back onto the input's voxels


def somas_from_probability(prob: np.ndarray, spacing, params: DetectParams, mask: np.ndarray | None = None) -> pd.DataFrame:
    """Somas of a soma probability map (Z, Y, X) on voxels of ``spacing`` µm: the voxels above
    ``params.probability`` (or ``mask``), split at the maxima of the probability smoothed at half the smallest
    soma radius, probability-weighted centroids, the size filter of :func:`split_somas`."""
    spacing = np.asarray(spacing, dtype=float)
    blob = ndimage.gaussian_filter(prob, sigma=(params.soma_radius_um[0] / 2) / spacing)
    fg = prob > params.probability if mask is None else mask
    return split_somas(fg, blob, prob, prob, spacing, params.soma_radius_um)
