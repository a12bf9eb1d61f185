"""Snakemake script: generate a synthetic sample (image + truth)."""
import sys

from traice.config import from_config
from traice.synth import SynthParams, synthesize, write_synthetic

sys.stderr = open(snakemake.log[0], "w")
params = from_config(SynthParams, snakemake.params.synthetic)
write_synthetic(synthesize(params), snakemake.output.image)
