"""Snakemake script: gather morphology tables and SWC files."""
import sys

from traice.morphology import gather

sys.stderr = open(snakemake.log[0], "w")
gather(snakemake.input, snakemake.output.table, snakemake.output.csv, snakemake.output.swc)
