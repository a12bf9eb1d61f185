"""The DAG stays proportional to the jobs: batches capped per step, about one dependency edge per job.

A whole brain cannot run in a test; its DAG can be built. ``bench/dag.py``'s
``prepare`` leaves what plan, detect and merge would (a metadata-only image, the
real plan, empty detections and maps, a synthetic cell table), then Snakemake
builds the DAG of everything after them.
"""

from __future__ import annotations

import re
import sys

import pytest

from helpers import ROOT, cli

sys.path.insert(0, str(ROOT / "bench"))
from dag import prepare  # noqa: E402

pytestmark = pytest.mark.workflow

CAPS = {
    "plan": {"tile_shape": [16, 128, 128], "tiles_per_job": 1, "max_jobs": 20},
    "segment": {"cells_per_job": 2, "max_jobs": 25},
    "morphology": {"cells_per_job": 2, "max_jobs": 20},
    "stitch": {"chunk": [16, 128, 128], "chunks_per_job": [1, 1, 1], "max_jobs": 60},
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("dag")
    config_path, _, _ = prepare(out / "brain", (64, 1024, 1024), 400, CAPS)
    return config_path


def test_each_step_keeps_to_its_job_cap(sample):
    run = cli(["-n", "--quiet", "rules", "--cores", "1", "--rerun-triggers", "mtime", "--configfile", str(sample)], sample.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, re.M))
    assert int(counts["segment"]) == 25 and int(counts["morphology_batch"]) == 20  # 400 cells: 16 and 20 per job
    assert 30 < int(counts["stitch"]) <= 60  # 128 blocks of one chunk, grown to fit


def test_dependency_edges_grow_with_the_jobs_not_their_pairs(sample):
    dot = cli(["--dag", "--quiet", "all", "--cores", "1", "--rerun-triggers", "mtime", "--configfile", str(sample)], sample.parent)
    assert dot.returncode == 0, dot.stderr[-3000:]
    jobs = len(re.findall(r"^\s*\d+\[", dot.stdout, re.M))
    edges = len(re.findall(r"^\s*\d+ -> \d+", dot.stdout, re.M))
    # a handful of inputs per job (plan, cells, labels, one index); every morphology job waiting on every
    # stitch block and every segment job on every detect job's maps would add 20 x 60 + 25 x 20 edges
    assert jobs > 100 and edges < 5 * jobs, (jobs, edges)
