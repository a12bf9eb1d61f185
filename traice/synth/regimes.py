"""Named imaging regimes for rendering, and random ones for training.

A regime is a set of :class:`~traice.synth.brain.SynthParams` fields that
describe the microscope and the staining, not the cells' layout:

- ``default``: the generator's own defaults (the demo volume);
- ``confocal``: confocal Iba1 stacks of mouse cortex as labs image them,
  soma centres 100-200 photons above a background of 20-40 per voxel, read
  noise 3-4, per-cell brightness log-normal with sigma 0.6, processes at
  0.5-0.9 of their soma's brightness near it and fading along the arbor,
  intensity halving over 50 µm of depth;
- ``dim`` and ``bright``: the same at half and twice the signal;
- ``lightsheet``: a modality far from the training one, for fine-tuning
  benchmarks: 2 × 1 × 1 µm voxels, a broad axial PSF (sigma 2.5 µm in z,
  0.6 µm in y, x), low signal (40 photons) over a high, even background and
  sCMOS read noise, little depth attenuation.

:func:`random_regime` draws a regime around this range for training, so a
network sees more than one microscope.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from traice.synth.brain import SynthParams

_CONFOCAL = dict(photons=150.0, background=0.2, read_noise=3.5, brightness_sigma=0.6, process_brightness=(0.5, 0.9),
                 process_falloff=0.5, depth_decay_um=50.0 / math.log(2))
REGIMES: dict[str, dict] = {
    "default": {},
    "confocal": _CONFOCAL,
    "dim": {**_CONFOCAL, "photons": 75.0, "background": 0.4},
    "bright": {**_CONFOCAL, "photons": 300.0, "background": 0.1},
    "lightsheet": dict(spacing=(2.0, 1.0, 1.0), psf_sigma_um=(2.5, 0.6, 0.6), photons=40.0, background=0.5,
                       read_noise=2.0, brightness_sigma=0.5, process_brightness=(0.4, 0.7), process_falloff=0.4,
                       depth_decay_um=400.0),
}
"""Regime name -> the SynthParams fields it sets (``dim`` and ``bright`` keep the confocal background in photons)."""


def regime_params(name: str, **fields) -> SynthParams:
    """SynthParams of the named regime, with ``fields`` (seed, shape, cells, ...) on top."""
    if name not in REGIMES:
        raise ValueError(f"unknown imaging regime {name!r}; choose from {sorted(REGIMES)}")
    return SynthParams(**{**REGIMES[name], **fields})


def random_regime(rng: np.random.Generator, **fields) -> SynthParams:
    """A random regime spanning dim to bright confocal and widefield-like stacks, with ``fields`` on top.

    Signal 50-300 photons (log-uniform), background 5-45 photons, read noise
    2-4, brightness spread 0.3-0.7, processes 0.35-0.95 of the soma, falloff
    0-0.6 along the arbor, depth halving over 35-150 µm, PSF 0.8-1.4 times
    the default.
    """
    photons = float(np.exp(rng.uniform(np.log(50.0), np.log(300.0))))
    low = rng.uniform(0.35, 0.6)
    psf = rng.uniform(0.8, 1.4)
    drawn = dict(
        photons=photons,
        background=rng.uniform(5.0, 45.0) / photons,
        read_noise=rng.uniform(2.0, 4.0),
        brightness_sigma=rng.uniform(0.3, 0.7),
        process_brightness=(low, min(low + rng.uniform(0.2, 0.4), 0.95)),
        process_falloff=rng.uniform(0.0, 0.6),
        depth_decay_um=rng.uniform(35.0, 150.0) / math.log(2),
        psf_sigma_um=tuple(float(v) * psf for v in SynthParams.psf_sigma_um),
    )
    return dataclasses.replace(SynthParams(**drawn), **fields)
