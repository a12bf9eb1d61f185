"""Snakemake script: run.json with counts, versions, config and timings."""
import sys

from traice.io.plan import Plan
from traice.stages.report import write_run_summary

sys.stderr = open(snakemake.log[0], "w")
i = snakemake.input
write_run_summary(Plan.read(i.plan), i.cells, i.morphology, snakemake.params.benchmarks, snakemake.params.config, snakemake.output[0])
