"""Snakemake script: morphology and SWC skeletons of one cell batch."""
import sys

from traice.io.tables import read_json
from traice.morphology import morphology_batch

sys.stderr = open(snakemake.log[0], "w")
spacing = read_json(snakemake.input.plan)["spacing_um"]
morphology_batch(
    snakemake.input.labels, snakemake.input.cells, snakemake.input.index, spacing,
    int(snakemake.wildcards.b), snakemake.params.cells_per_job, snakemake.output[0],
)
