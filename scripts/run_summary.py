"""Snakemake script: run.json with counts, versions, config and timings."""
from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.report import write_run_summary

start_job(snakemake.log[0])
i = snakemake.input
write_run_summary(Plan.read(i.plan), i.cells, i.merged, i.morphology, snakemake.params.benchmarks, snakemake.params.config, snakemake.output[0])
