"""The demo volume for benchmarks: config/config.yaml's synthetic default (samples.demo), rendered as the workflow
renders it."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.synth import synthesize  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402


def demo_brain():
    """The demo's SyntheticBrain (32 x 1024 x 1024 voxels, 60 cells with the shipped config)."""
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["samples"]["demo"]["synthetic"]
    return synthesize(regime_params("default", **{k: tuple(v) if isinstance(v, list) else v for k, v in demo.items()}))
