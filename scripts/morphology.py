"""Snakemake script: gather morphology tables and SWC files (over the previous result's kept cells in a region update)."""
from pathlib import Path

import pandas as pd

from traice.io.joblog import start_job
from traice.io.atlas import Atlas
from traice.io.plan import Plan
from traice.stages.morphology import gather
from traice.stages.update import base_dir

start_job(snakemake.log[0])
plan = Plan.read(snakemake.input.plan)
o = snakemake.output
base = base_dir(Path(o.table).parent) if plan.update else None
i = snakemake.input
atlas = Atlas.open(i.annotation, i.structures, plan.shape, plan.spacing) if "annotation" in i.keys() else None
gather(i.batches, o.table, o.csv, o.sholl, o.swc, base, plan.kept_ids(pd.read_parquet(i.cells)),
       sample=snakemake.wildcards.sample, atlas=atlas)
