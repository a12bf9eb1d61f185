"""A killed run resumes to the same result; the same input and config give byte-identical outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import cli, small_config, snakemake_command

pytestmark = pytest.mark.workflow

OUTPUTS = ["cells.parquet", "morphology.parquet", "morphology.csv", "sholl.parquet", "regions.parquet"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _kill_when_started(config: Path, marker: Path, timeout: float = 300) -> None:
    """Start (or resume) the workflow, SIGKILL Snakemake and all its jobs as soon as ``marker`` exists."""
    args = ["--cores", "2", "--configfile", str(config), "--rerun-incomplete"]
    proc = subprocess.Popen(snakemake_command(args, config.parent), cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"the workflow ended before reaching {marker.name}"
        assert time.time() < deadline, f"{marker.name} never appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.long
def test_killed_run_resumes_to_identical_outputs(reference_run, tmp_path):
    """Killed in the first detect job, resumed and killed again in the first stitch job, resumed to the end."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(small_config(tmp_path)))
    sample = tmp_path / "results" / "small"
    logs = sample / "work" / "logs"
    _kill_when_started(config, logs / "detect_0.log")
    assert not (sample / "cells.parquet").exists()
    assert cli(["--unlock", "--cores", "1", "--configfile", str(config)], tmp_path).returncode == 0
    _kill_when_started(config, logs / "stitch_0.log")
    assert (sample / "cells.parquet").exists() and not (sample / "run.json").exists()
    assert cli(["--unlock", "--cores", "1", "--configfile", str(config)], tmp_path).returncode == 0
    out = cli(["--cores", "2", "--configfile", str(config), "--rerun-incomplete"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # byte-identical tables, label image and skeletons: the same input and config give the same result
    for name in OUTPUTS:
        assert (sample / name).read_bytes() == (reference_run / name).read_bytes(), name
    assert _files(sample / "segmentation.ome.zarr") == _files(reference_run / "segmentation.ome.zarr")
    assert _files(sample / "swc") == _files(reference_run / "swc")
