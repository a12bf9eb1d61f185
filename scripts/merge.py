"""Snakemake script: merge tile detections into cells.parquet."""
from pathlib import Path

from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.io.tables import write_json
from traice.stages.merge import merge_files
from traice.stages.update import base_dir

start_job(snakemake.log[0])
plan = Plan.read(snakemake.input.plan)
cells = Path(snakemake.output.cells)
previous = base_dir(cells.parent) / cells.name if plan.update else None
merged, without_processes = merge_files(snakemake.input.somas, plan, snakemake.params.dedupe_um, cells, previous,
                                         sample=snakemake.wildcards.sample)
write_json({"cells": len(merged), "to_process": int(plan.cells_inside(merged).sum()),
            "detections_without_processes": without_processes}, snakemake.output.to_process)
