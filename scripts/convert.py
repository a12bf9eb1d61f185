"""Snakemake script: convert a microscope file (TIFF planes or stack) into the sample's OME-Zarr image."""
from traice.io.convert import convert
from traice.io.joblog import start_job

start_job(snakemake.log[0])
path, voxel_size_um = snakemake.params.source
print(convert(path, snakemake.output[0], snakemake.params.channel, voxel_size_um))
