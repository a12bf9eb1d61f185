"""Training volumes and random training windows for the models.

A training volume is an image already turned into model input (the same
normalisation as inference, :func:`traice.core.intensity.model_input`, with statistics
of the whole volume) plus its labels: the soma mask, the cell labels and the
soma centres. Volumes come from traced cells (SWC fields rendered by
:mod:`traice.synth.traces`, as users have them) and from the synthetic
generator; both are cached as ``.npz`` so a resumed or repeated training run
does not render them again.

Stage-1 windows (:func:`soma_window`) are random crops biased towards cells,
with augmentation: flips, quarter turns in the (y, x) plane (square voxels
there), a small in-plane rotation and scaling, intensity scale/offset/gamma
and added noise, and optionally a view as on coarser voxels
(:func:`as_if_coarser`). One-pass windows (:func:`cells_window`) may also show
their tissue magnified or shrunk (:func:`magnified`), so that a soma's size
alone does not tell it from a punctum or a trunk. Stage-2 windows (:func:`branch_window`) sit on one
cell, as inference places them (:mod:`traice.core.windows`), with that cell's arbor as the
target and its soma as the prompt; flips and quarter turns move the prompt
with the image. Pretraining windows (:func:`pretrain_window`) need no labels:
a window and its corruption (noise, blur, masked patches), from any image
(``("image", {"path"})`` sources read blocks of a user's OME-Zarr).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from traice.core.geometry import distance_um
from traice.core.grid import (MODEL_SPACING_UM, block_resampling_variance, grid_input, grid_position, model_voxels,
                              to_model_grid)
from traice.core.intensity import compress, expand, model_input, robust_stats
from traice.core.maps import OFFSET_SCALE_UM, decode_probability, offsets_to_soma
from traice.core.windows import block_mean, window_box, window_point
from traice.synth import SynthParams, render_swc, synthesize
from traice.synth.brain import SyntheticBrain
from traice.synth.regimes import random_regime, regime_params


BRANCH_SHIFT = 0.375
"""Stage-2 windows move by up to this share of the window from the soma, so that the prompt, not the centre, names the cell."""
BRANCH_WEIGHT_UM = 20.0
"""Stage-2 loss weight ``1 + d / BRANCH_WEIGHT_UM`` at ``d`` µm from the soma ..."""
BRANCH_MAX_WEIGHT = 3.0
"""... at most this: distal processes count more than the soma's bulk."""


@dataclass
class Volume:
    """One training volume: ``image`` (Z, Y, X) model input, stored as float16 to halve memory;
    ``cells`` (Z, Y, X) integer labels (0 = background, i = cell i); ``somas`` (Z, Y, X) soma labels;
    ``centres`` (N, 3) soma centres in voxels (row i-1 is cell i); ``name`` where it came from;
    ``spacing`` (z, y, x) µm per voxel."""

    image: np.ndarray
    cells: np.ndarray
    somas: np.ndarray
    centres: np.ndarray
    name: str
    spacing: tuple[float, float, float]
    distractors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    """(M, 3) centres of bright things away from every cell (:func:`bright_outside_cells`): hard-negative windows."""
    foreground: np.ndarray | None = None
    """(Z, Y, X) uint8 one-pass foreground probability (``round(255 p)``), the ownership network's second input
    (:func:`traice.training.foreground.attach_foreground`); None for one-channel training."""


def from_brain(brain: SyntheticBrain, name: str) -> Volume:
    """A rendered or synthetic field as a training volume (statistics of the whole field)."""
    stats = robust_stats(brain.image[:, ::2, ::2])
    centres = np.zeros((int(brain.cells.max(initial=0)), 3), np.float32)
    if len(brain.truth):
        centres[brain.truth["cell_id"].to_numpy() - 1] = brain.truth[["z", "y", "x"]].to_numpy(np.float32)
    labels = np.uint16 if brain.cells.max(initial=0) < 2**16 else np.uint32
    return Volume(model_input(brain.image, stats).astype(np.float16), brain.cells.astype(labels),
                  brain.somas.astype(labels), centres, name, tuple(float(v) for v in brain.params.spacing))


def load_volumes(sources: Sequence[tuple[str, dict]], cache: str | Path) -> list[Volume]:
    """Build (or read from ``cache``) each source: ``("traces", {"folder", "seed"})``, ``("synthetic", {SynthParams
    fields})`` or ``("image", {"path", "channel", "part"})`` (unlabelled blocks of an OME-Zarr image:
    :func:`image_blocks`)."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    volumes = []
    for kind, spec in sources:
        if kind == "image":
            volumes += image_blocks(spec["path"], spec.get("channel"), spec.get("part", "train"))
            continue
        name = _source_name(kind, spec)
        path = cache / f"{name}.npz"
        if path.exists():
            with np.load(path) as f:
                volumes.append(Volume(f["image"], f["cells"], f["somas"], f["centres"], name, tuple(f["spacing"].tolist())))
            continue
        if kind == "traces":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # malformed SWC files are skipped with a warning
                brain = render_swc(spec["folder"], source_params({k: v for k, v in spec.items() if k != "folder"}))
        elif kind == "synthetic":
            brain = synthesize(source_params(spec))
        else:
            raise ValueError(f"unknown training source {kind!r}")
        volume = from_brain(brain, name)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, image=volume.image, cells=volume.cells, somas=volume.somas, centres=volume.centres,
                 spacing=np.asarray(volume.spacing))
        tmp.replace(path)
        volumes.append(volume)
    return volumes


IMAGE_BLOCK = (32, 512, 512)
"""Unlabelled training blocks of a user's image, in voxels of the networks' grid (what so many cover in its own) ..."""
IMAGE_MAX_BLOCKS = 16
"""... at most this many per image (128 Mvoxel as float16: 256 MB), evenly spread over it; every fifth validates."""


def image_blocks(path: str | Path, channel: int | None = None, part: str = "train") -> list[Volume]:
    """Unlabelled volumes from an OME-Zarr image for pretraining: up to :data:`IMAGE_MAX_BLOCKS` blocks spread
    evenly over level 0 where it holds the tissue's core (:func:`traice.stages.plan.image_tissue`,
    :func:`traice.core.tissue.tissue_core`; blocks ``0, 5, 10, ...`` of them are ``part="val"``, the others
    ``"train"``; a single block trains), each the µm extent of :data:`IMAGE_BLOCK` grid voxels, resampled and
    normalised as inference does (:func:`traice.core.grid.grid_input`, with the statistics of the image's tissue):
    volumes on the networks' grid.
    No labels: empty cells, somas and centres. Not cached: a block reads as fast from the image as from a cache."""
    from traice.core.tissue import tissue_core
    from traice.io.ome import open_image
    from traice.stages.plan import image_tissue, intensity_stats, spread_evenly, tissue_blocks

    if part not in ("train", "val"):
        raise ValueError(f"part must be train or val, not {part!r}")
    image = open_image(path, channel)
    tissue = image_tissue(image)
    stats = intensity_stats(image, tissue=tissue)
    core = (tissue_core(*tissue), tissue[1])  # not a block that the mask's blurred edge barely reaches
    chosen = spread_evenly(tissue_blocks(image, model_voxels(IMAGE_BLOCK, image.spacing), core), IMAGE_MAX_BLOCKS)
    none = np.zeros((1, 1, 1), np.uint8)
    name = Path(path).name.removesuffix(".zarr").removesuffix(".ome")
    validates = [len(chosen) > 1 and i % 5 == 0 for i in range(len(chosen))]  # one block only: it trains
    return [Volume(grid_input(image.read(box), image.spacing, stats).astype(np.float16), none, none,
                   np.zeros((0, 3), np.float32), f"image-{name}-{'-'.join(map(str, box.start))}",
                   tuple(float(v) for v in MODEL_SPACING_UM))
            for box, val in zip(chosen, validates) if val == (part == "val")]


def source_params(spec: dict) -> SynthParams:
    """The rendering parameters of a source: SynthParams fields, plus an optional ``regime``, a name of
    :data:`traice.synth.regimes.REGIMES` or ``"random"`` (:func:`~traice.synth.regimes.random_regime`, drawn from the seed)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "regime"}
    regime = spec.get("regime")
    if regime is None:
        return SynthParams(**fields)
    if regime == "random":
        return random_regime(np.random.default_rng([int(fields.get("seed", 0)), 7]), **fields)
    return regime_params(regime, **fields)


def _source_name(kind: str, spec: dict) -> str:
    if kind == "traces":
        regime = f"-{spec['regime']}" if spec.get("regime") else ""
        sizes = "-soma{}to{}".format(*spec["traced_soma_radius_um"]) if spec.get("traced_soma_radius_um") else ""
        puncta = f"-puncta{spec['large_puncta_fraction']}" if "large_puncta_fraction" in spec else ""
        return f"traces-{Path(spec['folder']).name}-seed{spec['seed']}{regime}{sizes}{puncta}"
    return "synthetic-" + "-".join(f"{k}{'x'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in sorted(spec.items()))


@dataclass(frozen=True)
class Augment:
    flips: bool = True
    quarter_turns: bool = True
    rotate_deg: float = 15.0              # in-plane (y, x) rotation, uniform in +-rotate_deg
    scale: tuple[float, float] = (0.9, 1.1)
    intensity_scale: tuple[float, float] = (0.7, 1.3)
    intensity_shift: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    noise: float = 0.1                    # std of added Gaussian noise, model-input units
    affine_p: float = 0.5                 # probability of the rotation/scaling
    coarser_p: float = 0.0                # probability of the view on coarser voxels (:func:`as_if_coarser`) ...
    coarser: tuple[float, float] = (1.25, 2.5)  # ... that many times coarser (log-uniform; z and y = x drawn apart)
    magnify_p: float = 0.0                # cells: probability of the window's tissue seen larger or smaller ...
    magnify: tuple[float, float] = (0.8, 1.25)  # ... by a factor drawn log-uniformly from this range (:func:`magnified`)


NO_AUGMENT = Augment(flips=False, quarter_turns=False, rotate_deg=0.0, scale=(1.0, 1.0), intensity_scale=(1.0, 1.0),
                     intensity_shift=0.0, gamma=(1.0, 1.0), noise=0.0, affine_p=0.0)


def crop_box(volume: Volume, window: Sequence[int], rng: np.random.Generator, cell_bias: float = 0.7,
             extra: Sequence[int] = (0, 0, 0), distractor_bias: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (voxels, may reach outside the volume) of a window of ``window + 2*extra``.

    With probability ``distractor_bias`` the window contains one of the volume's
    ``distractors`` (a hard negative: lipofuscin, a macrophage, a vessel), else with
    probability ``cell_bias`` a random soma (either placed anywhere but the
    window's outer eighth), otherwise it is uniform over the volume.
    """
    shape = np.asarray(volume.image.shape)
    size = np.asarray(window) + 2 * np.asarray(extra)
    points = np.zeros((0, 3), np.float32)
    if distractor_bias > 0 and len(volume.distractors) and rng.random() < distractor_bias:
        points = volume.distractors
    elif len(volume.centres) and rng.random() < cell_bias:
        points = volume.centres
    if len(points):
        centre = points[rng.integers(len(points))]
        jitter = rng.uniform(-0.375, 0.375, size=3) * np.asarray(window)
        start = np.rint(centre + jitter - size / 2).astype(int)
    else:
        start = np.array([rng.integers(0, max(n - s, 0) + 1) for n, s in zip(shape, size)])
    return start, start + size


DISTRACTOR_LEVEL = 1.5
"""Model input (arcsinh units) a distractor voxel exceeds: about 6.4 background noise sigmas."""
DISTRACTOR_CLEARANCE_UM = 4.0
"""... and its distance from every cell's foreground (soma or process), in µm."""
THING_MIN_VOXELS = 20
"""The fewest connected voxels above :data:`DISTRACTOR_LEVEL` that make a bright thing rather than noise."""


def cell_clearance(volume: Volume) -> np.ndarray:
    """Each voxel's distance (µm) from the nearest voxel of any cell (soma or process): ``(Z, Y, X)`` float64."""
    return ndimage.distance_transform_edt(volume.cells == 0, sampling=volume.spacing)


def bright_outside_cells(volume: Volume, min_voxels: int = THING_MIN_VOXELS, clearance: np.ndarray | None = None) -> np.ndarray:
    """Centres of the bright things of ``volume`` that are not microglia (lipofuscin puncta, perivascular
    macrophages, vessels), where the hard-negative windows of :func:`crop_box` go: ``(M, 3)`` float32 voxels.

    A bright thing is a connected set of at least ``min_voxels`` voxels brighter than
    :data:`DISTRACTOR_LEVEL` and at least :data:`DISTRACTOR_CLEARANCE_UM` from every cell's foreground.
    Each counts once, whatever its size, so small soma-sized clumps are drawn as often as macrophages.
    ``clearance``: :func:`cell_clearance` of ``volume``, where a caller has it already."""
    clearance = cell_clearance(volume) if clearance is None else clearance
    labels, n = ndimage.label((volume.image > DISTRACTOR_LEVEL) & (clearance >= DISTRACTOR_CLEARANCE_UM))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.flatnonzero(sizes[1:] >= min_voxels) + 1
    if not len(keep):
        return np.zeros((0, 3), np.float32)
    return np.asarray(ndimage.center_of_mass(np.ones_like(labels, np.uint8), labels, keep), np.float32).reshape(-1, 3)


FAINT_LEVEL = 0.4
"""Model input (arcsinh units), smoothed over :data:`FAINT_SMOOTH_UM`, a faint thing exceeds: about 1.2 background
noise sigmas, which a faint vessel (about 2 sigmas per voxel) does and the smoothed noise does not ..."""
FAINT_SMOOTH_UM = 1.0
"""... (the Gaussian's sigma in µm) ..."""
FAINT_MIN_UM3 = 35.0
"""... over at least a ball of 2 µm radius."""


def faint_outside_cells(volume: Volume, per_thing: int = 4, clearance: np.ndarray | None = None) -> np.ndarray:
    """Points on the faint things of ``volume`` that are not microglia (faint vessels, the brighter patches of an
    uneven background), hard-negative windows for :func:`crop_box` beside :func:`bright_outside_cells`:
    ``(M, 3)`` float32 voxels.

    A faint thing is a connected set of at least :data:`FAINT_MIN_UM3` where the input smoothed over
    :data:`FAINT_SMOOTH_UM` exceeds :data:`FAINT_LEVEL` but nowhere :data:`DISTRACTOR_LEVEL` (the bright things are
    :func:`bright_outside_cells`'), at least :data:`DISTRACTOR_CLEARANCE_UM` from every cell's foreground. A vessel
    crosses many windows, so each thing gives up to ``per_thing`` of its voxels, evenly spread in scan order (its
    centre of mass may lie off a curved vessel). ``clearance``: as for :func:`bright_outside_cells`."""
    spacing = np.asarray(volume.spacing, float)
    smooth = ndimage.gaussian_filter(volume.image.astype(np.float32), FAINT_SMOOTH_UM / spacing)
    clearance = cell_clearance(volume) if clearance is None else clearance
    labels, n = ndimage.label((smooth > FAINT_LEVEL) & (clearance >= DISTRACTOR_CLEARANCE_UM))
    min_voxels = FAINT_MIN_UM3 / float(np.prod(spacing))
    points = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == k
        inside = np.argwhere(own)
        if len(inside) < min_voxels or smooth[box][own].max() > DISTRACTOR_LEVEL:
            continue
        chosen = inside[np.linspace(0, len(inside) - 1, min(per_thing, len(inside))).round().astype(int)]
        points.append(chosen + [s.start for s in box])
    return np.concatenate(points).astype(np.float32) if points else np.zeros((0, 3), np.float32)


BALANCE_SOMA_UM3 = 4.0 / 3.0 * np.pi * 5.0**3
"""With balanced somas (:func:`soma_weight`), every soma and every bright thing that is no cell weighs in the soma
loss as much as a ball of this volume (µm³; radius 5 µm) ..."""
BALANCE_MAX_WEIGHT = 5.0
"""... with at most this weight per voxel (a 3 µm soma gets 4.6) ..."""
BALANCE_CLEARANCE_UM = 2.0
"""... the bright things at least this far from every cell's foreground (past the blur around a soma)."""


def soma_weight(image: np.ndarray, labels: np.ndarray, somas: np.ndarray, spacing: Sequence[float],
                min_voxels: int = THING_MIN_VOXELS) -> np.ndarray:
    """The soma loss's voxel weights of one window with balanced somas: ``(Z, Y, X)`` float32, at least 1.

    ``image`` model input, ``labels`` cell labels and ``somas`` the soma mask, all ``(Z, Y, X)`` in the window.
    A soma's voxels (``somas`` by the cell of ``labels``) and a bright thing's (a connected set of at least
    ``min_voxels`` voxels of ``image`` above :data:`DISTRACTOR_LEVEL`, at least :data:`BALANCE_CLEARANCE_UM` from
    every cell) each weigh ``min(BALANCE_SOMA_UM3 / volume, BALANCE_MAX_WEIGHT)``, at least 1, with the volume
    of its part in the window; every other voxel 1. Voxel-wise losses pay for a soma by its voxels, so a 3 µm soma
    missed or a soma-sized punctum called costs a fifth of a 5 µm soma; balanced, each thing costs about the same.
    """
    voxel_um3 = float(np.prod(spacing))

    def per_thing(things: np.ndarray, count: int) -> np.ndarray:
        sizes = np.bincount(things.ravel(), minlength=count + 1).astype(np.float64)
        weights = np.clip(BALANCE_SOMA_UM3 / np.maximum(sizes, 1.0) / voxel_um3, 1.0, BALANCE_MAX_WEIGHT)
        weights[sizes < min_voxels] = 1.0  # specks of noise and slivers at the window's faces stay as they are
        weights[0] = 1.0
        return weights.astype(np.float32)[things]

    owners = np.where(somas, labels, 0).astype(np.int64)
    weight = per_thing(owners, int(owners.max(initial=0)))
    if labels.any():
        clearance = ndimage.distance_transform_edt(labels == 0, sampling=spacing)
        bright = (image > DISTRACTOR_LEVEL) & (clearance >= BALANCE_CLEARANCE_UM)
    else:
        bright = image > DISTRACTOR_LEVEL
    things, count = ndimage.label(bright)
    return np.maximum(weight, per_thing(things, count))  # somas and bright things do not overlap


def read_padded(array: np.ndarray, start: np.ndarray, stop: np.ndarray, fill=0) -> np.ndarray:
    """``array[start:stop]`` with the part outside the array filled with ``fill``."""
    out = np.full(tuple(stop - start), fill, dtype=array.dtype)
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, array.shape)
    if np.all(hi > lo):
        out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = array[tuple(slice(a, b) for a, b in zip(lo, hi))]
    return out


def soma_window(volume: Volume, window: Sequence[int], rng: np.random.Generator, augment: Augment = Augment(),
                cell_bias: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """A random window for soma detection: image (Z, Y, X) float32 and soma target (Z, Y, X) float32 in {0, 1}."""
    window = np.asarray(window)
    rotate = augment.affine_p > 0 and rng.random() < augment.affine_p
    extra = np.array([0, window[1] // 4, window[2] // 4]) if rotate else np.zeros(3, int)
    start, stop = crop_box(volume, window, rng, cell_bias, extra)
    image = read_padded(volume.image, start, stop, 0.0).astype(np.float32)  # outside: background level, as inference pads
    target = read_padded(volume.somas, start, stop, 0) > 0
    if rotate:
        image, target = _rotate_scale(image, target, rng, augment, window)
    return augment_pair(maybe_coarser(image, rng, augment), target.astype(np.float32), rng, augment)


def _rotate_scale(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, augment: Augment,
                  window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate and scale in the (y, x) plane about the centre, cropping the margin back to ``window``."""
    angle = np.deg2rad(rng.uniform(-augment.rotate_deg, augment.rotate_deg))
    scale = rng.uniform(*augment.scale)
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    matrix = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    centre_in = (np.asarray(image.shape) - 1) / 2
    centre_out = (window - 1) / 2
    offset = centre_in - matrix @ centre_out
    image = ndimage.affine_transform(image, matrix, offset, output_shape=tuple(window), order=1, mode="nearest")
    target = ndimage.affine_transform(target.astype(np.float32), matrix, offset, output_shape=tuple(window), order=1) > 0.5
    return image, target


def augment_pair(image: np.ndarray, target: np.ndarray, rng: np.random.Generator,
                 augment: Augment) -> tuple[np.ndarray, np.ndarray]:
    """Flips, quarter turns in (y, x), intensity scale/shift/gamma and noise; the same geometry for the target."""
    (image, target), _ = flip_turn([image, target], None, rng, augment)
    return augment_intensity(image, rng, augment), np.ascontiguousarray(target, dtype=np.float32)


def flip_turn(arrays: Sequence[np.ndarray], point: np.ndarray | None, rng: np.random.Generator,
              augment: Augment) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Random flips on each axis and a quarter turn in (y, x), the same for all ``arrays`` (one shape)
    and for ``point`` (3,) or points (N, 3) in their voxel frame (None: no point)."""
    arrays = list(arrays)
    shape = np.asarray(arrays[0].shape)
    point = None if point is None else np.asarray(point, dtype=np.float32).copy()
    if augment.flips:
        for axis in range(3):
            if rng.random() < 0.5:
                arrays = [np.flip(a, axis) for a in arrays]
                if point is not None:
                    point[..., axis] = shape[axis] - 1 - point[..., axis]
    if augment.quarter_turns:
        k = int(rng.integers(4))
        arrays = [np.rot90(a, k, axes=(1, 2)) for a in arrays]
        if point is not None:
            for _ in range(k):  # np.rot90 once moves voxel (y, x) of an (Y, X) plane to (X - 1 - x, y)
                y = point[..., 1].copy()
                point[..., 1] = shape[2] - 1 - point[..., 2]
                point[..., 2] = y
                shape[1], shape[2] = shape[2], shape[1]
    return [np.ascontiguousarray(a) for a in arrays], point


def as_if_coarser(image: np.ndarray, factor: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """A model-input window ``(Z, Y, X)`` on the networks' grid as the networks see the same tissue imaged on
    voxels ``factor`` (z, y, x; each >= 1) times coarser: float32 of the same shape.

    Back in noise units (:func:`traice.core.intensity.expand`), the window is averaged onto the coarser voxels
    (anti-aliased: a larger voxel covers more tissue), its noise, which the averaging lowered, topped up to one
    sigma again (each voxel of a scanning microscope is a sample with its own noise, whatever its size), and
    resampled onto the grid by :func:`traice.core.grid.grid_input`, as inference resamples a coarser image, the
    mended noise texture included. The targets stay on the grid, so the network is asked for the grid's thin
    processes from their coarser, wider view (docs/inputs.md, "Training on coarser views")."""
    coarse = tuple(max(1, round(n / f)) for n, f in zip(image.shape, factor))
    if coarse == image.shape:
        return image.astype(np.float32)
    spacing = tuple(m * n / c for m, n, c in zip(MODEL_SPACING_UM, image.shape, coarse))

    def averaged(block: np.ndarray) -> np.ndarray:
        return resize(block, coarse, order=1, mode="edge", anti_aliasing=True, preserve_range=True).astype(np.float32)

    left = float(averaged(rng.standard_normal(image.shape, np.float32)).std())  # of one sigma of white noise
    coarser = averaged(expand(image))
    coarser += rng.standard_normal(coarse, np.float32) * np.float32(np.sqrt(max(0.0, 1.0 - left**2)))
    return grid_input(coarser, spacing, {"median": 0.0, "sigma": 1.0}, shape=image.shape)


def magnified(image: np.ndarray, labels: np.ndarray, somas: np.ndarray, centres: np.ndarray,
              window: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A crop resized onto ``window`` voxels: its tissue seen ``window / crop`` times its size, as if its cells were
    that much larger (or smaller), imaged on the same voxels with the same noise.

    ``image`` (model input), ``labels`` (cell labels) and ``somas`` (soma mask) are the crop ``(z, y, x)``;
    ``centres`` ``(N, 3)`` the somas in the crop's voxels. Returns them on the window, centres in its voxels.
    The labels and the soma mask take the crop voxel each window voxel's centre lies in; the image, in noise
    units (:func:`traice.core.intensity.expand`), is resized as :func:`traice.core.grid.to_model_grid` resizes:

    - enlarged (every axis as long or longer), by :func:`traice.core.grid.grid_input`, which puts back the
      noise that the interpolation smoothed away, as it does for coarser voxels at inference;
    - shrunk, averaged (anti-aliased), which lowers the noise unevenly from voxel to voxel
      (:func:`traice.core.grid.block_resampling_variance`); each voxel's is topped up to one sigma again, so that a
      smaller cell is no brighter against the noise than the larger one was.
    """
    shape = tuple(int(w) for w in window)
    index = [np.clip(((np.arange(w) + 0.5) * n / w).astype(int), 0, n - 1) for w, n in zip(shape, image.shape)]
    labels, somas = labels[np.ix_(*index)], somas[np.ix_(*index)]
    centres = grid_position(centres, image.shape, shape).astype(np.float32).reshape(-1, 3)
    noise_units = expand(image)
    if all(w >= n for w, n in zip(shape, image.shape)):
        return grid_input(noise_units, MODEL_SPACING_UM, {"median": 0.0, "sigma": 1.0}, shape=shape), labels, somas, centres
    averaged = to_model_grid(noise_units, MODEL_SPACING_UM, shape)
    variance = block_resampling_variance(image.shape, shape, range(3))
    averaged += rng.standard_normal(shape, np.float32) * np.sqrt(np.maximum(1.0 - variance, 0.0))
    return compress(averaged), labels, somas, centres


def maybe_magnified(rng: np.random.Generator, augment: Augment) -> float:
    """The magnification of the next window: with probability ``augment.magnify_p`` drawn log-uniformly from
    ``augment.magnify``, else 1."""
    if not augment.magnify_p or rng.random() >= augment.magnify_p:
        return 1.0
    return float(np.exp(rng.uniform(*np.log(augment.magnify))))


def maybe_coarser(image: np.ndarray, rng: np.random.Generator, augment: Augment) -> np.ndarray:
    """With probability ``augment.coarser_p``, :func:`as_if_coarser` by a factor drawn log-uniformly from
    ``augment.coarser`` for z and, apart, for y = x; else ``image`` as it is."""
    if not augment.coarser_p or rng.random() >= augment.coarser_p:
        return image
    z, yx = np.exp(rng.uniform(*np.log(augment.coarser), size=2))
    return as_if_coarser(image, (z, yx, yx), rng)


def augment_intensity(image: np.ndarray, rng: np.random.Generator, augment: Augment) -> np.ndarray:
    """Gamma (sign-preserving), scale, shift and added noise of random strength: float32."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    gamma = rng.uniform(*augment.gamma)
    if gamma != 1.0:
        image = np.sign(image) * np.abs(image) ** gamma
    image = image * rng.uniform(*augment.intensity_scale) + rng.uniform(-augment.intensity_shift, augment.intensity_shift)
    if augment.noise:
        image = image + rng.normal(0.0, augment.noise * rng.random(), size=image.shape).astype(np.float32)
    return image.astype(np.float32)


@dataclass
class BranchWindow:
    """One stage-2 training sample, all in the coarse window grid ``window`` (Z, Y, X):
    ``image`` model input, ``target`` the prompted cell's share of each coarse voxel in [0, 1]
    (other cells are background), ``weight`` the loss weight, ``point`` (3,) the prompt (its soma),
    ``foreground`` the one-pass foreground probability in [0, 1] where the volume has one (else None)."""

    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    point: np.ndarray
    foreground: np.ndarray | None = None


def branch_window(volume: Volume, window: Sequence[int], step: Sequence[int], rng: np.random.Generator,
                  augment: Augment = Augment(), shift: float = BRANCH_SHIFT, weight_um: float = BRANCH_WEIGHT_UM,
                  max_weight: float = BRANCH_MAX_WEIGHT, cell: int | None = None) -> BranchWindow:
    """A window on one cell (random unless ``cell``, a row of ``volume.centres``), placed as inference places it
    (:func:`traice.core.windows.window_box`) after a random shift of up to ``shift`` of the window per axis.

    The loss weight is ``min(1 + d / weight_um, max_weight)`` with ``d`` the distance
    from the soma in µm, so distal processes count more than the soma's bulk.
    """
    if not len(volume.centres):
        raise ValueError(f"{volume.name} has no cells")
    cell = int(rng.integers(len(volume.centres))) if cell is None else int(cell)
    extent = np.asarray(window) * np.asarray(step)
    offset = np.rint(rng.uniform(-shift, shift, size=3) * extent).astype(int)
    centre = volume.centres[cell]
    box = window_box(centre, extent, volume.image.shape, offset)
    start, stop = np.asarray(box.start), np.asarray(box.stop)
    image = block_mean(read_padded(volume.image, start, stop, 0.0), step)
    target = block_mean(read_padded(volume.cells, start, stop, 0) == cell + 1, step)
    point = window_point(centre, box, step)
    coarse_spacing = np.asarray(volume.spacing) * np.asarray(step)  # µm per coarse voxel
    weight = np.minimum(1.0 + distance_um(window, point, coarse_spacing) / weight_um, max_weight)
    arrays = [image, target, weight]
    if volume.foreground is not None:
        arrays.append(block_mean(decode_probability(read_padded(volume.foreground, start, stop, 0)), step))
    arrays, point = flip_turn(arrays, point, rng, augment)
    foreground = arrays[3].astype(np.float32) if len(arrays) > 3 else None
    return BranchWindow(augment_intensity(arrays[0], rng, augment), arrays[1].astype(np.float32),
                        arrays[2].astype(np.float32), point, foreground)


@dataclass
class CellsWindow:
    """One training sample of the one-pass network, all (Z, Y, X) float32 unless said:
    ``image`` model input; ``soma`` and ``foreground`` targets in {0, 1}; ``weight`` the
    foreground's loss weight; ``offsets`` (3, Z, Y, X) to each voxel's own soma
    (:func:`traice.core.maps.offsets_to_soma`); ``soma_weight`` the soma's loss weight with balanced somas
    (:func:`soma_weight`), else None (every voxel 1)."""

    image: np.ndarray
    soma: np.ndarray
    foreground: np.ndarray
    weight: np.ndarray
    offsets: np.ndarray
    soma_weight: np.ndarray | None = None


def cells_window(volume: Volume, window: Sequence[int], rng: np.random.Generator, augment: Augment = Augment(),
                 cell_bias: float = 0.7, weight_um: float = BRANCH_WEIGHT_UM,
                 max_weight: float = BRANCH_MAX_WEIGHT, distractor_bias: float = 0.0,
                 balanced_somas: bool = False) -> CellsWindow:
    """A random window (as :func:`crop_box`) with the one-pass targets: every cell's soma and foreground,
    and offsets to the own soma, computed after the flips and quarter turns (which move the somas too) and
    any magnification (``augment.magnify_p``: :func:`magnified`; offsets and distances then in the µm the
    network sees).

    The foreground weight is ``min(1 + d / weight_um, max_weight)`` with ``d``
    the distance to the own soma in µm, so distal processes count more; ``balanced_somas`` adds the
    soma's weight (:func:`soma_weight`, from the window before its intensity is augmented).
    """
    magnification = maybe_magnified(rng, augment)
    crop = np.maximum(1, np.rint(np.asarray(window) / magnification)).astype(int)
    start, stop = crop_box(volume, crop, rng, cell_bias, distractor_bias=distractor_bias)
    image = read_padded(volume.image, start, stop, 0.0)
    labels = read_padded(volume.cells, start, stop, 0)
    somas = read_padded(volume.somas, start, stop, 0) > 0
    centres = np.asarray(volume.centres, np.float32).reshape(-1, 3) - start
    if tuple(crop) != tuple(window):
        image, labels, somas, centres = magnified(image, labels, somas, centres, window, rng)
    (image, labels, somas), centres = flip_turn([image, labels, somas], centres, rng, augment)
    offsets = offsets_to_soma(labels, centres, volume.spacing)
    foreground = (labels > 0).astype(np.float32)
    distance = np.sqrt((offsets**2).sum(0)) * OFFSET_SCALE_UM
    weight = np.where(foreground > 0, np.minimum(1.0 + distance / weight_um, max_weight), 1.0).astype(np.float32)
    balance = soma_weight(image, labels, somas, volume.spacing) if balanced_somas else None
    image = maybe_coarser(image, rng, augment)
    return CellsWindow(augment_intensity(image, rng, augment), somas.astype(np.float32), foreground, weight, offsets,
                       balance)


@dataclass(frozen=True)
class Corruption:
    """How a pretraining window is corrupted, in model-input units and voxels; each strength is drawn
    uniformly per window from its range."""

    noise: tuple[float, float] = (0.1, 0.6)      # std of added Gaussian noise (background noise is about 0.33)
    blur: tuple[float, float] = (0.0, 1.5)       # Gaussian blur sigma in y, x voxels (z: a third of it)
    mask_share: float = 0.25                     # share of patches set to the background level, 0
    mask_patch: tuple[int, int, int] = (2, 8, 8)  # the network's patch: a masked token must be inferred from others


def corrupt(clean: np.ndarray, rng: np.random.Generator, corruption: Corruption = Corruption()) -> np.ndarray:
    """Blur, noise and masked patches on a (Z, Y, X) window (each dimension a multiple of ``mask_patch``): float32."""
    sigma = rng.uniform(*corruption.blur)
    out = ndimage.gaussian_filter(clean, (sigma / 3, sigma, sigma)) if sigma > 0 else clean.copy()
    out = out + rng.normal(0.0, rng.uniform(*corruption.noise), size=out.shape).astype(np.float32)
    grid_shape = [n // p for n, p in zip(out.shape, corruption.mask_patch)]
    keep = rng.random(grid_shape) >= corruption.mask_share
    for axis, p in enumerate(corruption.mask_patch):
        keep = np.repeat(keep, p, axis=axis)
    return (out * keep).astype(np.float32)


PRETRAIN_CANDIDATES = 4
"""A pretraining window is the brightest (mean) of this many uniform draws: a volume is mostly background,
and a denoiser learns little from empty windows."""


def pretrain_window(volume: Volume, window: Sequence[int], rng: np.random.Generator, augment: Augment = Augment(),
                    corruption: Corruption = Corruption()) -> tuple[np.ndarray, np.ndarray]:
    """A pretraining sample: ``(corrupted, clean)``, each (Z, Y, X) float32, from a random window (no labels),
    flipped and turned."""
    crops = []
    for _ in range(PRETRAIN_CANDIDATES):
        start, stop = crop_box(volume, window, rng, cell_bias=0.0)
        crops.append(read_padded(volume.image, start, stop, 0.0).astype(np.float32))
    clean = max(crops, key=lambda c: float(c.mean()))
    (clean,), _ = flip_turn([clean], None, rng, augment)
    return corrupt(clean, rng, corruption), clean
