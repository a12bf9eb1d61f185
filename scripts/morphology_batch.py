"""Snakemake script: morphology and SWC skeletons of one cell batch."""
from traice.io.joblog import log_to
from traice.io.plan import Plan
from traice.stages.morphology import morphology_batch

log_to(snakemake.log[0])
morphology_batch(
    snakemake.input.labels, snakemake.input.cells, snakemake.input.index, Plan.read(snakemake.input.plan),
    int(snakemake.wildcards.b), snakemake.params.cells_per_job, snakemake.params.max_jobs, snakemake.output[0],
    snakemake.input.maps or None,
)
