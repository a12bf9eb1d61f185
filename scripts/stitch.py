"""Snakemake script: stitch one block of label chunks."""
import pandas as pd

from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.io.tables import write_json
from traice.stages.stitch import stitch_block

start_job(snakemake.log[0])
plan = Plan.read(snakemake.input.plan)
block = plan.stitch_blocks()[int(snakemake.wildcards.k)]
keep = plan.kept_ids(pd.read_parquet(snakemake.input.cells))
voxels = stitch_block(snakemake.input.labels, block, pd.read_parquet(snakemake.input.index), plan.affected_boxes, keep)
write_json({"block": block.as_row("block"), "labelled_voxels": voxels}, snakemake.output[0])
