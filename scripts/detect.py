"""Snakemake script: detect somas in one tile batch."""
import sys
from pathlib import Path

from traice.config import from_config
from traice.detect import DetectParams, detect_batch

sys.stderr = open(snakemake.log[0], "w")
params = from_config(DetectParams, snakemake.params.detect)
detect_batch(Path(snakemake.input.plan).parent, int(snakemake.wildcards.b), snakemake.output[0], params)
