"""Snakemake script: one index of every stored per-cell claim."""
from traice.io.claims import collect_index
from traice.io.joblog import log_to

log_to(snakemake.log[0])
collect_index(snakemake.input, snakemake.output[0])
