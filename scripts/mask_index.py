"""Snakemake script: one index of every stored per-cell claim."""
from traice.io.claims import collect_index
from traice.io.joblog import start_job

start_job(snakemake.log[0])
collect_index(snakemake.input, snakemake.output[0])
