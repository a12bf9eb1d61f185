"""Snakemake script: one index of the tiles in every detect job's maps."""
from traice.io.joblog import start_job
from traice.io.maps import write_map_index

start_job(snakemake.log[0])
write_map_index(snakemake.input, snakemake.output[0])
