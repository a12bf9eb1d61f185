"""Snakemake script: merge tile detections into cells.parquet."""
import sys
from pathlib import Path

from traice.io.plan import Plan
from traice.stages.merge import merge_files
from traice.stages.update import base_dir

sys.stderr = open(snakemake.log[0], "w")
plan = Plan.read(snakemake.input.plan)
cells = Path(snakemake.output.cells)
previous = base_dir(cells.parent) / cells.name if plan.update else None
merge_files(snakemake.input.somas, plan, snakemake.params.dedupe_um, cells, previous)
