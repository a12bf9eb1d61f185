"""Snakemake script: one summary of the stitch blocks, the point every later step waits for."""
from traice.io.joblog import start_job
from traice.io.tables import read_json, write_json

start_job(snakemake.log[0])
blocks = [read_json(path) for path in snakemake.input]
write_json({"blocks": len(blocks), "labelled_voxels": sum(int(b["labelled_voxels"]) for b in blocks)}, snakemake.output[0])
