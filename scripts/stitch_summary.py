"""Snakemake script: one summary of the stitch blocks, the point every later step waits for."""
from traice.io.joblog import log_to
from traice.io.tables import read_json, write_json

log_to(snakemake.log[0])
blocks = [read_json(path) for path in snakemake.input]
write_json({"blocks": len(blocks), "labelled_voxels": sum(int(b["labelled_voxels"]) for b in blocks)}, snakemake.output[0])
