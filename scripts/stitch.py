"""Snakemake script: stitch one block of label chunks."""
import sys

import pandas as pd

from traice.io.tables import read_json, write_json
from traice.plan import stitch_blocks
from traice.stitch import stitch_block

sys.stderr = open(snakemake.log[0], "w")
block = stitch_blocks(read_json(snakemake.input.plan))[int(snakemake.wildcards.k)]
voxels = stitch_block(snakemake.input.labels, block, pd.read_parquet(snakemake.input.index))
write_json({"block": block.as_row("block"), "labelled_voxels": voxels}, snakemake.output[0])
