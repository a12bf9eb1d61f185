"""Snakemake script: train a model (resumes from the checkpoint beside the outputs)."""
from pathlib import Path

from traice.config import from_config
from traice.core.errors import InputError
from traice.io.joblog import start_job
from traice.training.loop import train
from traice.training.recipes import TrainConfig, training_sources

start_job(snakemake.log[0])
task = snakemake.rule.removeprefix("train_")
t = {k: v for k, v in snakemake.params.train.items() if k not in ("soma", "branch", "cells", "pretrain")}
t.update(snakemake.params.train[task])  # the task's own settings (window, steps, ...)
images = t.pop("images") or []
if images and task != "pretrain":
    raise InputError("train.images: unlabelled images train only the pretrain rule")
sources = training_sources(t.pop("traces"), t.pop("synthetic"), t.pop("seeds_per_field"), folds=t.pop("folds"), fold=t.pop("fold"),
                           regimes=t.pop("regimes"), images=images, channel=t.pop("channel"),
                           traced_soma_radius_um=t.pop("traced_soma_radius_um"),
                           soma_sized_puncta=t.pop("soma_sized_puncta"))
cfg = from_config(TrainConfig, t, task=task)
train(cfg, sources, Path(snakemake.output.model).parent)
