"""The workflow through ``--profile profiles/slurm`` on a real one-node Slurm gives the local run's results.

Brings Slurm up with ``scripts/slurm-local.sh`` (Debian's slurm-wlm and munge;
root and apt needed) and stops it afterwards. The node has 2 CPUs and one
(device-less) GPU, so the profile's cluster-sized requests are scaled down on
the command line, keeping ``gpu=1`` on the model rules. Without slurmdbd there
is no ``sacct``: status comes from ``squeue`` (MinJobAge=300 in the test cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

from helpers import ROOT, cli, small_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

FITS_THE_TEST_NODE = [
    "--set-resources",
    "detect:gpu=1", "detect:cpus_per_task=1", "detect:mem_mb=3000",
    "segment:gpu=1", "segment:cpus_per_task=1", "segment:mem_mb=3000",
    "stitch:mem_mb=2000", "synthesize:mem_mb=3000",
    "--default-resources", "mem_mb=2000", "cpus_per_task=1", "runtime=30",
]


def _why_no_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start munge, slurmctld and slurmd"
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        return "needs apt-get (or an installed slurm-wlm) to bring up a one-node Slurm"
    return None


@pytest.fixture(scope="session")  # stopped when the session ends: see tests/conftest.py
def slurm():
    reason = _why_no_slurm()
    if reason:
        pytest.skip(reason)
    script = ROOT / "scripts" / "slurm-local.sh"
    subprocess.run([str(script), "start"], check=True, timeout=900)
    yield
    subprocess.run([str(script), "stop"], check=False, timeout=60)


def test_slurm_profile_run_equals_local_run(slurm, reference_run, tmp_path):
    # other batches than the reference run's: fewer, larger detect and segment jobs (each Slurm job costs
    # seconds of start-up), nine one-chunk stitch blocks (one job array); results must not depend on batching
    config = small_config(tmp_path, plan={"tile_shape": [64, 256, 256], "tiles_per_job": 4},
                          segment={"method": "classical", "cells_per_job": 32}, stitch={"chunk": [32, 128, 128], "chunks_per_job": [1, 1, 1]})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = cli(["--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(tmp_path / "config.yaml"),
               "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
               *FITS_THE_TEST_NODE], tmp_path, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "submitted with SLURM jobid" in out.stdout + out.stderr
    assert "Submitted array job" in out.stdout + out.stderr  # the stitch blocks: one sbatch --array (profile)
    a, b = reference_run, tmp_path / "results" / "small"
    for table in ["cells", "morphology", "sholl", "regions"]:
        pd.testing.assert_frame_equal(pd.read_parquet(a / f"{table}.parquet"), pd.read_parquet(b / f"{table}.parquet"))
    for level in ["0", "1"]:
        np.testing.assert_array_equal(zarr.open_array(str(a / "segmentation.ome.zarr" / level), mode="r")[...],
                                      zarr.open_array(str(b / "segmentation.ome.zarr" / level), mode="r")[...])
    assert sorted(p.name for p in (a / "swc").iterdir()) == sorted(p.name for p in (b / "swc").iterdir())
