"""Snakemake script: detect somas in one tile batch."""
from traice.config import from_config
from traice.io.joblog import start_job
from traice.io.plan import Plan
from traice.stages.detect import DetectParams, detect_batch

start_job(snakemake.log[0])
params = from_config(DetectParams, snakemake.params.detect)
detect_batch(Plan.read(snakemake.input.plan), int(snakemake.wildcards.b), snakemake.output.somas, params,
             snakemake.output.maps)
