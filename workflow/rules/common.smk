# Config validation, samples and helpers shared by every rule.
import os
import sys

from snakemake.utils import validate

# The library lives beside the Snakefile: importable here and in every job,
# whichever environment (venv, conda env, cluster node) runs it.
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in [workflow.basedir, os.environ.get("PYTHONPATH")] if p)
)

import yaml

from traice.config import (check_config, check_inputs, check_models, check_schema, is_converted, is_synthetic,
                           sample_atlas, sample_image, sample_source, with_defaults)
from traice.core.batching import n_batches
from traice.core.errors import InputError
from traice.stages.segment.params import NEEDS_MAPS
from traice.io.lock import acquire, release
from traice.io.tables import read_json

# The embedded defaults under what the user gave (--configfile, --config), key by
# key; a user who names samples gets exactly those, never the demo sample as well.
# (Not the `configfile:` directive: it prints a line before any error of ours.)
_merged = with_defaults(yaml.safe_load(open(workflow.source_path("../../config/config.yaml"))), dict(config))
config.clear()
config.update(_merged)

# Every check before any job; a bad input or setting ends the run with one line naming it.
try:
    check_schema(config, yaml.safe_load(open(workflow.source_path("../schemas/config.schema.yaml"))))
    validate(config, workflow.source_path("../schemas/config.schema.yaml"))  # fills the schema's defaults
    check_config(config, jobs_run_here=workflow.local_exec and workflow.is_main_process)
    check_inputs(config["samples"], config["channel"], config["roi"], config["results"], config["regions"],
                 config["segment"]["method"])
    check_models(config)
except InputError as err:
    sys.exit(f"error: {err}")

RESULTS = config["results"]
SAMPLES = list(config["samples"])


def out(path):
    """A per-sample output of the contract: {results}/{sample}/path."""
    return os.path.join(RESULTS, "{sample}", path)


def work(path):
    """A per-sample intermediate file: {results}/{sample}/work/path."""
    return os.path.join(RESULTS, "{sample}", "work", path)


wildcard_constraints:
    sample="|".join(SAMPLES),
    b=r"\d+",
    k=r"\d+",


def samples_where(kind):
    """A wildcard pattern matching the samples of one kind (synthetic, converted); none: matches nothing."""
    names = [name for name, spec in config["samples"].items() if kind(spec)]
    return "|".join(names) if names else "(?!)"


def source_files(spec):
    """The files a converted sample is made from (so that a changed plane redoes the conversion)."""
    from traice.io.convert import source_paths

    return source_paths(sample_source(spec)[0])


def image_channel(wildcards):
    """The channel to read: the configured one, except in a converted sample (converted with its channel)."""
    return None if is_converted(config["samples"][wildcards.sample]) else config["channel"]


def atlas_files(wildcards):
    """The sample's atlas annotation and structure table ({} without an atlas), as named inputs."""
    atlas = sample_atlas(config["samples"][wildcards.sample])
    return {"annotation": atlas["annotation"], "structures": atlas["structures"]} if atlas else {}


def image_of(wildcards):
    return sample_image(wildcards.sample, config["samples"][wildcards.sample], RESULTS)


# Input functions answer from small files only (plan.json, the merge's cell count), never from the cell
# table; a step that waits for many jobs waits for one gathering job (maps_index, mask_index,
# stitch_summary), so the DAG has about one edge per job, not one per pair of jobs (docs/scale.md).


def plan_info(wildcards):
    """``plan.json`` of the sample (batch counts, stitch blocks)."""
    return read_json(checkpoints.plan.get(sample=wildcards.sample).output.plan)


def detect_outputs(wildcards, name):
    n = plan_info(wildcards)["tile_batches"]
    return expand(work(name), sample=wildcards.sample, b=range(n))


def detect_batches(wildcards):
    return detect_outputs(wildcards, "somas/batch_{b}.parquet")


def detect_maps(wildcards):
    return detect_outputs(wildcards, "maps/batch_{b}.zarr")


def segment_maps(wildcards):
    """The index of the one-pass maps, for the segment methods that own their foreground."""
    return work("maps/index.parquet") if config["segment"]["method"] in NEEDS_MAPS else []


def n_cell_batches(wildcards, section):
    """How many jobs the cells this run processes (those in the ROI) need, at ``config[section]``'s
    ``cells_per_job`` and ``max_jobs`` (:func:`traice.core.batching.batch_size`)."""
    count = read_json(checkpoints.merge.get(sample=wildcards.sample).output.to_process)
    return n_batches(count["to_process"], config[section]["cells_per_job"], config[section]["max_jobs"])


def segment_batches(wildcards):
    n = n_cell_batches(wildcards, "segment")
    return expand(work("masks/batch_{b}.zarr"), sample=wildcards.sample, b=range(n))


def stitch_flags(wildcards):
    ids = plan_info(wildcards)["stitch_block_ids"]
    return expand(work("stitch/block_{k}.done"), sample=wildcards.sample, k=ids)


def morphology_batches(wildcards):
    n = n_cell_batches(wildcards, "morphology")
    return expand(work("morphology/batch_{b}"), sample=wildcards.sample, b=range(n))


def all_outputs(wildcards):
    names = ["run.json", "report.html", "qc", "cells.parquet", "segmentation.ome.zarr",
             "morphology.parquet", "morphology.csv", "sholl.parquet", "swc", "regions.parquet"]
    return expand(out("{name}"), sample=SAMPLES, name=names)


# One results folder, one writer: each sample's results folder is locked while
# this run works in it (traice.io.lock), whatever the working directory.
def results_folders():
    return [os.path.join(RESULTS, sample) for sample in SAMPLES]


onstart:
    try:
        for folder in results_folders():
            acquire(folder)
    except InputError as err:
        sys.exit(f"error: {err}")


onsuccess:
    for folder in results_folders():
        release(folder)


onerror:
    for folder in results_folders():
        release(folder)
