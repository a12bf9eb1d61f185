"""Snakemake script: train a model (resumes from the checkpoint beside the outputs)."""
import sys
from pathlib import Path

from traice.train import TrainConfig, train, training_sources

sys.stderr = open(snakemake.log[0], "w")
t = dict(snakemake.params.train)
sources = training_sources(t.pop("traces"), t.pop("synthetic"), t.pop("seeds_per_field"), folds=t.pop("folds"), fold=t.pop("fold"))
cfg = TrainConfig(task=snakemake.rule.removeprefix("train_"), **{k: tuple(v) if isinstance(v, list) else v for k, v in t.items()})
train(cfg, sources, Path(snakemake.output.model).parent)
