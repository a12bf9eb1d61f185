"""Snakemake script: stitch one block of label chunks."""
import sys

import pandas as pd

from traice.io.tables import read_json, write_json
from traice.plan import stitch_blocks
from traice.region import kept_ids, plan_boxes
from traice.stitch import stitch_block

sys.stderr = open(snakemake.log[0], "w")
plan = read_json(snakemake.input.plan)
block = stitch_blocks(plan)[int(snakemake.wildcards.k)]
keep = kept_ids(pd.read_parquet(snakemake.input.cells), plan)
voxels = stitch_block(snakemake.input.labels, block, pd.read_parquet(snakemake.input.index), plan_boxes(plan, "affected_boxes"), keep)
write_json({"block": block.as_row("block"), "labelled_voxels": voxels}, snakemake.output[0])
