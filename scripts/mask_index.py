"""Snakemake script: one index of every stored per-cell claim."""
import sys

from traice.io.claims import collect_index

sys.stderr = open(snakemake.log[0], "w")
collect_index(snakemake.input, snakemake.output[0])
