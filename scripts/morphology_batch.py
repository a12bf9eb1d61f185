"""Snakemake script: morphology and SWC skeletons of one cell batch."""
from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.morphology import morphology_batch

start_job(snakemake.log[0])
morphology_batch(
    snakemake.input.labels, snakemake.input.cells, snakemake.input.index, Plan.read(snakemake.input.plan),
    int(snakemake.wildcards.b), snakemake.params.cells_per_job, snakemake.params.max_jobs, snakemake.output[0],
    snakemake.input.maps or None,
)
