"""Snakemake script: segment the cells of one cell batch."""
import sys
from pathlib import Path

from traice.config import from_config
from traice.segment import SegmentParams, segment_batch

sys.stderr = open(snakemake.log[0], "w")
params = from_config(SegmentParams, snakemake.params.segment)
segment_batch(Path(snakemake.input.plan).parent, snakemake.input.cells, int(snakemake.wildcards.b), snakemake.output[0], params)
