"""Synthetic microglia fields and trace rendering, for demos, tests and training."""

from traice.synth.brain import SynthParams, SyntheticBrain, synthesize, truth_path, write_synthetic
from traice.synth.traces import render_swc

__all__ = ["SynthParams", "SyntheticBrain", "render_swc", "synthesize", "truth_path", "write_synthetic"]
