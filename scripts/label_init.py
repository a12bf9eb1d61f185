"""Snakemake script: create the empty multiscale label image, or take back the previous one for a region update."""
import sys
from pathlib import Path

from traice.io.tables import read_json
from traice.region import take_base_labels
from traice.stitch import init_labels

sys.stderr = open(snakemake.log[0], "w")
plan = read_json(snakemake.input.plan)
labels = Path(snakemake.output[0])
if plan["update"]:
    take_base_labels(labels.parent, labels)
else:
    init_labels(labels, plan["shape"], plan["spacing_um"], plan["stitch_chunk"])
