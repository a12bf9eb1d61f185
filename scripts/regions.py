"""Snakemake script: per-region counts, density and median morphology."""
from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.regions import write_regions

start_job(snakemake.log[0])
i = snakemake.input
atlas = {"annotation": i.annotation, "structures": i.structures} if "annotation" in i.keys() else None
write_regions(snakemake.wildcards.sample, Plan.read(i.plan), i.cells, i.morphology, snakemake.params.regions,
              snakemake.output[0], atlas)
