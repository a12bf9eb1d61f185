"""Snakemake script: morphology and SWC skeletons of one cell batch."""
import sys

from traice.io.plan import Plan
from traice.stages.morphology import morphology_batch

sys.stderr = open(snakemake.log[0], "w")
morphology_batch(
    snakemake.input.labels, snakemake.input.cells, snakemake.input.index, Plan.read(snakemake.input.plan),
    int(snakemake.wildcards.b), snakemake.params.cells_per_job, snakemake.output[0],
)
