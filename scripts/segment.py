"""Snakemake script: segment the cells of one cell batch."""
from traice.config import from_config
from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.segment import SegmentParams, segment_batch

start_job(snakemake.log[0])
params = from_config(SegmentParams, snakemake.params.segment)
segment_batch(Plan.read(snakemake.input.plan), snakemake.input.cells, int(snakemake.wildcards.b), snakemake.output[0], params,
              snakemake.input.maps or None)
