"""Snakemake script: generate a synthetic sample (image + truth)."""
from traice.config import from_config
from traice.io.joblog import start_job
from traice.synth import SynthParams, synthesize, write_synthetic

start_job(snakemake.log[0])
params = from_config(SynthParams, snakemake.params.synthetic)
write_synthetic(synthesize(params), snakemake.output.image)
