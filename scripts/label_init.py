"""Snakemake script: create the empty multiscale label image."""
import sys

from traice.io.tables import read_json
from traice.stitch import init_labels

sys.stderr = open(snakemake.log[0], "w")
plan = read_json(snakemake.input.plan)
init_labels(snakemake.output[0], plan["shape"], plan["spacing_um"], plan["stitch_chunk"])
