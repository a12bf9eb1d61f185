"""Snakemake script: per-region counts, density and median morphology."""
import sys

from traice.io.plan import Plan
from traice.stages.regions import write_regions

sys.stderr = open(snakemake.log[0], "w")
i = snakemake.input
write_regions(snakemake.wildcards.sample, Plan.read(i.plan), i.cells, i.morphology, snakemake.params.regions, snakemake.output[0])
