"""Snakemake script: plan tiles and batches for one image."""
from pathlib import Path

from traice.config import from_config
from traice.io.joblog import start_job
from traice.stages.plan import PlanParams, write_plan

start_job(snakemake.log[0])
stitch = snakemake.params.stitch
params = from_config(PlanParams, snakemake.params.plan, stitch_chunk=stitch["chunk"],
                     stitch_chunks_per_job=stitch["chunks_per_job"], stitch_max_jobs=stitch["max_jobs"],
                     margin_um=snakemake.params.margin_um,
                     maps_cover_margin=snakemake.params.maps_cover_margin)
plan_dir = Path(snakemake.output.plan).parent
write_plan(snakemake.input.image, snakemake.params.channel, plan_dir, params, snakemake.params.roi, sample_dir=plan_dir.parents[1])
