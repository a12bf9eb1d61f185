"""Snakemake script: gather morphology tables and SWC files."""
import sys

from traice.morphology import gather

sys.stderr = open(snakemake.log[0], "w")
o = snakemake.output
gather(snakemake.input, o.table, o.csv, o.sholl, o.swc)
