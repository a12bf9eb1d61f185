"""Snakemake script: merge tile detections into cells.parquet."""
import sys

from traice.io.tables import read_json
from traice.merge import merge_files

sys.stderr = open(snakemake.log[0], "w")
spacing = read_json(snakemake.input.plan)["spacing_um"]
merge_files(snakemake.input.somas, spacing, snakemake.params.dedupe_um, snakemake.output.cells)
