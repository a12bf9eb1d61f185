"""Render traced cells (SWC, µm, root = soma) into an image with ground truth.

This is how users' own tracings, and the real microglia fields in
``../shared/data/morphomics_kxa`` (one folder = one field of view, all cells in
one frame), become training and benchmark volumes: the arbor label is the union
of tubes along the traces with their radii, the soma an ellipsoid at the root
(at least 5 µm radius, as in trAIce3D); the image is then made by the same
microscope model as the synthetic generator (PSF, background, depth
attenuation, noise, puncta and other distractors).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from traice.io.swc import SwcError, read_swc
from traice.synth.brain import CellSpec, SynthParams, SyntheticBrain, render_scene
from traice.synth.raster import random_rotation

MIN_SOMA_RADIUS_UM = 5.0
MIN_PROCESS_RADIUS_UM = 0.3


def read_field(folder: str | Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every readable SWC tree of a field of view (sorted by file name); malformed files skipped with a warning."""
    trees = []
    for path in sorted(Path(folder).glob("*.swc")):
        try:
            trees.append(read_swc(path))
        except SwcError as err:
            warnings.warn(f"skipping {err}", stacklevel=2)
    return trees


def traces_origin(trees: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], margin_um: float = 5.0) -> np.ndarray:
    """Where :func:`render_traces` puts the rendered volume's origin in the traces' frame: ``(3,)`` µm
    (a trace's position in the volume is its position minus this)."""
    return np.min([t[0].min(axis=0) for t in trees], axis=0) - margin_um


def render_traces(
    trees: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    params: SynthParams = SynthParams(),
    margin_um: float = 5.0,
) -> SyntheticBrain:
    """Render traced trees (µm, one shared frame) into a volume just large enough to hold them.

    The frame is shifted so the traces start ``margin_um`` from the volume's
    origin; ``params.shape`` is replaced by the size that fits. Per-cell
    brightness, soma orientation and the distractors come from ``params.seed``;
    each soma's radius is the trace root's (at least ``MIN_SOMA_RADIUS_UM``), or
    drawn from ``params.traced_soma_radius_um`` where that is set.
    """
    if not trees:
        raise ValueError("no traces to render")
    rng = np.random.default_rng(params.seed)
    spacing = np.asarray(params.spacing)
    lo = traces_origin(trees, margin_um)
    hi = np.max([t[0].max(axis=0) for t in trees], axis=0) + margin_um
    shape = tuple(int(v) for v in np.ceil((hi - lo) / spacing))
    p = dataclasses.replace(params, shape=shape, cells=len(trees))
    specs = []
    for points, radii, parents in trees:
        points = points - lo
        bright = float(np.clip(rng.lognormal(0.0, p.brightness_sigma), 0.35, 3.0))
        if p.traced_soma_radius_um is None:
            r = max(float(radii[0]), MIN_SOMA_RADIUS_UM)
        else:
            r = float(rng.uniform(*p.traced_soma_radius_um))
        semi = r * rng.uniform(0.85, 1.15, size=3)
        semi *= r / np.cbrt(np.prod(semi))
        specs.append(CellSpec(points[0], semi, random_rotation(rng), points, np.maximum(radii, MIN_PROCESS_RADIUS_UM),
                              parents, bright, bright * rng.uniform(*p.process_brightness)))
    return render_scene(specs, rng, p)


def render_swc(folder: str | Path, params: SynthParams = SynthParams()) -> SyntheticBrain:
    """Render one field of view (a folder of SWC files, µm, one shared frame, root = soma) with its labels.

    Labels: soma = an ellipsoid of at least ``MIN_SOMA_RADIUS_UM`` at each root;
    arbor = the union of tubes along the traces at their radii (see :func:`render_traces`).
    """
    return render_traces(read_field(folder), params)


def field_split(fields: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Fixed split of fields of view: every 6th (from the 1st) for validation, every 6th (from the 4th) for test.

    Fields are sorted by path first, so the split does not depend on listing order;
    with the 18 morphomics_kxa fields this gives 12 train, 3 validation, 3 test,
    spread over the three treatment groups.
    """
    ordered = sorted(Path(f) for f in fields)
    split: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for i, f in enumerate(ordered):
        split["val" if i % 6 == 0 else "test" if i % 6 == 3 else "train"].append(f)
    return split


def trace_fields(root: str | Path) -> list[Path]:
    """Folders under ``root`` that hold SWC files (one field of view each)."""
    return sorted({p.parent for p in Path(root).rglob("*.swc")})
