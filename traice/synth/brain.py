"""Synthetic microglia fields with ground truth, deterministic from a seed.

What it draws, because real volumes have it (see DESIGN.md): ellipsoidal,
randomly oriented somas (3-6 µm radius) with tortuous, tapering, branching
processes (arbor radius 20-35 µm); cortex-like spacing with some touching
pairs; cells cut by the volume borders; per-cell brightness varying several-fold
with thick processes nearly as bright as dim somas; autofluorescent puncta
(some soma-sized); bright process-free perivascular macrophages and faint
vessels (distractors, not cells); an anisotropic Gaussian PSF; an uneven
background; intensity falling with depth; Poisson-Gaussian camera noise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from traice.core.geometry import Box, distance_um
from traice.io.multiscale import add_labels, write_multiscale
from traice.io.tables import write_table
from traice.synth.arbor import random_arbor
from traice.synth.raster import ellipsoid_mask, random_rotation, tree_bounds, tube_mask


@dataclass(frozen=True)
class SynthParams:
    shape: tuple[int, int, int] = (32, 1024, 1024)
    spacing: tuple[float, float, float] = (1.25, 0.4, 0.4)
    cells: int = 60
    seed: int = 0
    soma_radius_um: tuple[float, float] = (3.0, 6.0)
    traced_soma_radius_um: tuple[float, float] | None = None  # render_traces: draw each soma's radius from this
                                                              # range instead of the trace's (at least 5 µm)
    arbor_radius_um: tuple[float, float] = (20.0, 35.0)
    min_distance_um: float = 30.0        # between somas, except touching pairs
    touching_fraction: float = 0.1
    brightness_sigma: float = 0.45       # log-normal spread of per-cell brightness
    process_brightness: tuple[float, float] = (0.45, 0.8)  # relative to the soma, at the soma
    process_falloff: float = 0.0         # share of the process brightness lost at the arbor's far end (linear in distance)
    puncta_per_cell: float = 3.0
    large_puncta_fraction: float = 0.15  # soma-sized puncta among them
    macrophages: int = 2                 # bright, process-free, elongated
    vessels: int = 2
    psf_sigma_um: tuple[float, float, float] = (0.8, 0.25, 0.25)
    background: float = 0.08
    depth_decay_um: float = 120.0
    photons: float = 60.0
    read_noise: float = 3.0
    offset: float = 100.0


@dataclass
class SyntheticBrain:
    """A synthetic volume and its truth; all arrays (z, y, x)."""

    image: np.ndarray          # uint16 camera counts
    cells: np.ndarray          # uint32 instance labels (soma + arbor), 0 = background
    somas: np.ndarray          # uint32 soma-only labels
    truth: pd.DataFrame        # one row per cell: cell_id, z_um, y_um, x_um, z, y, x, ...
    params: SynthParams = field(default_factory=SynthParams)


def _place_somas(rng: np.random.Generator, p: SynthParams, extent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soma centres (N, 3) µm and radii (N,) µm: dart throwing plus touching pairs."""
    centres: list[np.ndarray] = []
    radii: list[float] = []
    attempts = 0
    while len(centres) < p.cells and attempts < p.cells * 500:
        attempts += 1
        r = rng.uniform(*p.soma_radius_um)
        if centres and rng.random() < p.touching_fraction:
            j = int(rng.integers(len(centres)))
            d = rng.normal(size=3) * np.array([0.3, 1.0, 1.0])
            c = centres[j] + d / np.linalg.norm(d) * (radii[j] + r + rng.uniform(0.0, 1.5))
            others = [k for k in range(len(centres)) if k != j]
        else:
            c = rng.uniform(0, 1, size=3) * extent
            others = list(range(len(centres)))
        if np.any(c < 0) or np.any(c >= extent):
            continue
        if others and np.min(np.linalg.norm(np.asarray(centres)[others] - c, axis=1)) < p.min_distance_um:
            continue
        centres.append(c)
        radii.append(r)
    return np.asarray(centres).reshape(-1, 3), np.asarray(radii)


def _stamp(target: np.ndarray, box: Box, mask: np.ndarray, value: float) -> None:
    view = target[box.slices]
    np.maximum(view, np.where(mask, np.float32(value), np.float32(0)), out=view)


@dataclass
class CellSpec:
    """One cell to draw: an oriented ellipsoidal soma and a traced arbor (µm, image frame)."""

    centre_um: np.ndarray        # (3,) soma centre
    semi_axes_um: np.ndarray     # (3,) soma ellipsoid semi-axes
    rotation: np.ndarray         # (3, 3) body to image axes
    points_um: np.ndarray        # (N, 3) arbor nodes; node 0 is the soma
    radii_um: np.ndarray         # (N,) process radii (node 0 ignored)
    parents: np.ndarray          # (N,) parent index, -1 for the root
    brightness: float            # soma intensity
    process_brightness: float    # process intensity

    @property
    def soma_radius_um(self) -> float:
        return float(np.cbrt(np.prod(self.semi_axes_um)))


def random_cell(rng: np.random.Generator, centre: np.ndarray, radius_um: float, p: SynthParams) -> CellSpec:
    """A microglia-like cell at ``centre``: random soma shape, orientation, arbor and brightness."""
    bright = float(np.clip(rng.lognormal(0.0, p.brightness_sigma), 0.35, 3.0))
    proc = bright * rng.uniform(*p.process_brightness)
    pts, rad, par = random_arbor(rng, centre, radius_um, rng.uniform(*p.arbor_radius_um))
    semi = radius_um * rng.uniform(0.8, 1.2, size=3)
    semi *= radius_um / np.cbrt(np.prod(semi))  # keep the equivalent radius
    return CellSpec(centre, semi, random_rotation(rng), pts, rad, par, bright, proc)


def synthesize(params: SynthParams = SynthParams()) -> SyntheticBrain:
    """Generate a synthetic field; the same ``params`` always give the same volume."""
    rng = np.random.default_rng(params.seed)
    extent = np.asarray(params.shape) * np.asarray(params.spacing)
    centres, soma_r = _place_somas(rng, params, extent)
    specs = [random_cell(rng, c, r, params) for c, r in zip(centres, soma_r)]
    return render_scene(specs, rng, params)


def render_scene(specs: list[CellSpec], rng: np.random.Generator, p: SynthParams) -> SyntheticBrain:
    """Draw cells, distractors and the microscope (PSF, background, depth, noise) into ``p.shape``.

    Cells are numbered 1..N in the order given; a voxel claimed by several cells
    goes to the brightest there. Cells entirely outside the volume get no label
    and no truth row.
    """
    shape = tuple(p.shape)
    spacing = np.asarray(p.spacing)
    bounds = Box.from_shape(shape)
    extent = np.asarray(shape) * spacing
    signal = np.zeros(shape, np.float32)
    best = np.zeros(shape, np.float32)
    cells = np.zeros(shape, np.uint32)
    somas = np.zeros(shape, np.uint32)
    rows = []
    for i, cell in enumerate(specs, start=1):
        c, semi = cell.centre_um, cell.semi_axes_um
        rad = cell.radii_um.copy()
        rad[0] = 0.0  # the soma is drawn as an ellipsoid, not as a node ball
        box = tree_bounds(cell.points_um, np.maximum(rad, semi.max()), spacing).intersect(bounds)
        if box.empty:
            continue
        intensity = np.where(tube_mask(cell.points_um, rad, cell.parents, box, spacing),
                             np.float32(cell.process_brightness), np.float32(0))
        if p.process_falloff > 0:
            reach = max(float(np.linalg.norm(cell.points_um - c, axis=1).max()), 1.0)
            near = 1.0 - p.process_falloff * np.minimum(distance_um(box.shape, c / spacing - box.start, spacing) / reach, 1.0)
            intensity *= near.astype(np.float32)
        soma_box = Box.from_um(c - semi.max() - 1, c + semi.max() + 1, spacing).intersect(box)
        soma_mask = np.zeros(box.shape, bool)
        soma_mask[soma_box.relative_to(box).slices] = ellipsoid_mask(c, semi, cell.rotation, soma_box, spacing)
        intensity[soma_mask] = cell.brightness
        claim = intensity > best[box.slices]
        best[box.slices][claim] = intensity[claim]
        cells[box.slices][claim] = i
        somas[box.slices][soma_mask & claim] = i
        np.maximum(signal[box.slices], intensity, out=signal[box.slices])
        rows.append(dict(
            cell_id=i, z_um=c[0], y_um=c[1], x_um=c[2], z=c[0] / spacing[0], y=c[1] / spacing[1], x=c[2] / spacing[2],
            soma_radius_um=cell.soma_radius_um,
            arbor_radius_um=float(np.linalg.norm(cell.points_um - c, axis=1).max()),
            brightness=cell.brightness, touching=False,
        ))
    truth = pd.DataFrame(rows, columns=["cell_id", "z_um", "y_um", "x_um", "z", "y", "x", "soma_radius_um",
                                        "arbor_radius_um", "brightness", "touching"])
    if len(truth) > 1:
        xyz = truth[["z_um", "y_um", "x_um"]].to_numpy()
        dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) + np.eye(len(xyz)) * 1e9
        gap = dist - truth["soma_radius_um"].to_numpy()[:, None] - truth["soma_radius_um"].to_numpy()[None]
        truth["touching"] = gap.min(axis=1) < 2.0

    _add_distractors(rng, p, signal, spacing, bounds, extent)

    blurred = ndimage.gaussian_filter(signal, sigma=np.asarray(p.psf_sigma_um) / spacing)
    background = p.background * _uneven_field(rng, shape, spacing)
    depth = np.exp(-(np.arange(shape[0]) * spacing[0]) / p.depth_decay_um)[:, None, None]
    expected = (p.photons * (blurred + background) * depth).astype(np.float32)
    counts = rng.poisson(expected).astype(np.float32) + rng.normal(0.0, p.read_noise, size=shape).astype(np.float32)
    image = np.clip(np.rint(counts + p.offset), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return SyntheticBrain(image, cells, somas, truth, p)


def _uneven_field(rng: np.random.Generator, shape, spacing: np.ndarray, waves: int = 4) -> np.ndarray:
    """Smooth multiplicative background in [0.5, 1.5]: a few random plane waves (150-400 µm)."""
    axes = [np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing)]
    field_ = np.zeros(shape, np.float32)
    for _ in range(waves):
        k = rng.normal(size=3) * np.array([0.3, 1.0, 1.0])
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(150.0, 400.0))
        phase = [np.float32(k_ * a) for k_, a in zip(k, axes)]
        field_ += np.cos(phase[0][:, None, None] + phase[1][None, :, None] + phase[2][None, None, :] + rng.uniform(0, 2 * np.pi))
    return 1.0 + 0.5 * field_ / waves


def _add_distractors(rng, p: SynthParams, signal: np.ndarray, spacing: np.ndarray, bounds: Box, extent: np.ndarray) -> None:
    """Puncta, perivascular macrophages and faint vessels: bright things that are not microglia."""
    eye = np.eye(3)
    n_puncta = int(round(p.puncta_per_cell * p.cells))
    for _ in range(n_puncta):
        c = rng.uniform(0, 1, size=3) * extent
        large = rng.random() < p.large_puncta_fraction
        r = rng.uniform(2.0, 3.5) if large else rng.uniform(0.4, 1.2)
        box = Box.from_um(c - r - 1, c + r + 1, spacing).intersect(bounds)
        if not box.empty:
            _stamp(signal, box, ellipsoid_mask(c, [r, r, r], eye, box, spacing), rng.uniform(0.6, 2.0))
    for _ in range(p.macrophages):
        c = rng.uniform(0, 1, size=3) * extent
        semi = np.array([3.0, 9.0, 3.5])
        box = Box.from_um(c - 10, c + 10, spacing).intersect(bounds)
        if not box.empty:
            _stamp(signal, box, ellipsoid_mask(c, semi, random_rotation(rng), box, spacing), rng.uniform(1.5, 2.5))
    for _ in range(p.vessels):
        a = rng.uniform(0, 1, size=3) * extent
        b = rng.uniform(0, 1, size=3) * extent
        a[1:] = np.where(rng.random(2) < 0.5, 0.0, extent[1:])  # enter through a side
        pts = np.stack([a, b])
        rad = np.full(2, rng.uniform(2.5, 4.0))
        box = tree_bounds(pts, rad, spacing).intersect(bounds)
        if not box.empty:
            _stamp(signal, box, tube_mask(pts, rad, np.array([-1, 0]), box, spacing), 0.12)


def truth_path(image_path: str | Path) -> Path:
    """Where the truth table of a synthetic image lives: beside it, ``X.ome.zarr`` -> ``X.truth.parquet``."""
    image_path = Path(image_path)
    stem = image_path.name.removesuffix(".zarr").removesuffix(".ome")
    return image_path.with_name(f"{stem}.truth.parquet")


def write_synthetic(brain: SyntheticBrain, path: str | Path) -> None:
    """Write the image (NGFF 0.5), labels ``cells`` and ``somas``, and the truth table beside it."""
    spacing = brain.params.spacing
    write_multiscale(path, brain.image, spacing, name="synthetic")
    add_labels(path, "cells", brain.cells, spacing)
    add_labels(path, "somas", brain.somas, spacing)
    write_table(brain.truth, truth_path(path))
    (Path(path) / "synth_params.json").write_text(json.dumps(asdict(brain.params), indent=2) + "\n")
