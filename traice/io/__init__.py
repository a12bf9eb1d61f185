"""Input and output: OME-Zarr images and labels, tables, the plan of a run, per-cell claims, SWC files."""
