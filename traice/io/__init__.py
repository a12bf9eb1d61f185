"""Input and output: OME-Zarr images and labels, tables."""
