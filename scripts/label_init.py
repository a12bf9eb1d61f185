"""Snakemake script: create the empty multiscale label image, or take back the previous one for a region update."""
from pathlib import Path

from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.stitch import init_labels
from traice.stages.update import take_base_labels

start_job(snakemake.log[0])
plan = Plan.read(snakemake.input.plan)
labels = Path(snakemake.output[0])
if plan.update:
    take_base_labels(labels.parent, labels)
else:
    init_labels(labels, plan.shape, plan.spacing, plan.info["stitch_chunk"], image=plan.info["image"])
