"""Imaging regimes: named ones as the issue describes confocal Iba1 stacks, random ones for training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from traice.synth import SynthParams, synthesize
from traice.synth.regimes import REGIMES, random_regime, regime_params


def test_confocal_regime_is_in_the_described_range():
    p = regime_params("confocal", seed=3)
    assert p.seed == 3 and 100 <= p.photons <= 200 and 20 <= p.photons * p.background <= 40
    assert 3 <= p.read_noise <= 4 and p.brightness_sigma == 0.6 and p.process_brightness == (0.5, 0.9)
    assert abs(np.exp(-50.0 / p.depth_decay_um) - 0.5) < 1e-9  # intensity halves over 50 µm of depth
    with pytest.raises(ValueError, match="unknown imaging regime"):
        regime_params("widefield")
    assert set(REGIMES) >= {"default", "confocal", "dim", "bright"}


def test_random_regimes_vary_and_keep_the_given_fields():
    rng = np.random.default_rng(0)
    drawn = [random_regime(rng, seed=5, shape=(8, 64, 64)) for _ in range(20)]
    assert all(d.seed == 5 and d.shape == (8, 64, 64) for d in drawn)
    photons = [d.photons for d in drawn]
    assert 50 <= min(photons) and max(photons) <= 300 and np.std(photons) > 20
    assert all(5 <= d.photons * d.background <= 45 and 0 <= d.process_falloff <= 0.6 for d in drawn)


def test_process_falloff_dims_distal_processes():
    """The same cells rendered with and without falloff: far from the soma the processes are dimmer, near it not."""
    base = SynthParams(shape=(16, 256, 256), cells=3, seed=2, read_noise=0.0, photons=1e4, puncta_per_cell=0,
                       macrophages=0, vessels=0)
    flat, faded = synthesize(base), synthesize(dataclasses.replace(base, process_falloff=0.6))
    assert np.array_equal(flat.cells, faded.cells)  # same layout and labels
    ratio = faded.image.astype(float) / np.maximum(flat.image.astype(float), 1.0)
    arbor = (flat.cells > 0) & (flat.somas == 0)
    spacing = np.asarray(base.spacing)
    own = flat.truth.set_index("cell_id").loc[flat.cells[arbor], ["z", "y", "x"]].to_numpy()
    distance = np.linalg.norm((np.argwhere(arbor) - own) * spacing, axis=1)
    near, far = ratio[arbor][distance < 6], ratio[arbor][distance > 20]
    assert np.median(far) < 0.85 * np.median(near)
