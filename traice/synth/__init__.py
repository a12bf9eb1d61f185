"""Synthetic microglia fields and trace rendering, for demos, tests and training."""

from traice.synth.brain import SynthParams, SyntheticBrain, synthesize, truth_path, write_synthetic

__all__ = ["SynthParams", "SyntheticBrain", "synthesize", "truth_path", "write_synthetic"]
