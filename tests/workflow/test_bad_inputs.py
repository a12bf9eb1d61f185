"""A battery of bad inputs and settings: each stops before any job with one line naming the problem, writes
nothing, and leaves the input as it was. And what is not refused is not answered wrongly in silence."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from helpers import cli, run_workflow, small_config
from traice.io.lock import LOCK

pytestmark = pytest.mark.workflow

DEMO = {"demo": {"synthetic": {"seed": 0}}}
BOX = {"start_um": [0, 0, 0], "stop_um": [10, 40, 40]}


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def _refused(tmp: Path, config: dict, dry_run: bool = True) -> str:
    """Run Snakemake on ``config``; assert it stopped with an ``error:`` line first on stderr and no traceback;
    return that line. Without ``dry_run`` the run gets as far as its start (the lock), after Snakemake's banner:
    the ``error:`` line is then the last."""
    cfg = tmp / "bad.yaml"
    config = {"results": str(tmp / "results"), **config}
    cfg.write_text(yaml.safe_dump(config))
    out = cli((["-n"] if dry_run else []) + ["--cores", "1", "--configfile", str(cfg)], tmp)
    assert out.returncode != 0, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    line = lines[0] if dry_run else lines[-1]
    assert line.startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    return line


@pytest.fixture
def image(write_image):
    """A small real input (uint16, 8 x 64 x 64 voxels of 1.25 x 0.4 x 0.4 µm)."""
    return write_image(np.random.default_rng(0).poisson(100, size=(8, 64, 64)).astype(np.uint16))


@pytest.mark.parametrize("config, message", [
    ({"samples": {}}, "samples: {} should be non-empty"),
    ({"samples": DEMO, "detect": {"soma_radius_um": [6, 3]}}, "detect.soma_radius_um [6, 3]: expected [smallest, largest]"),
    ({"samples": DEMO, "plan": {"tile_shap": [1, 2, 3]}}, "plan: Additional properties are not allowed ('tile_shap'"),
])
def test_bad_settings_are_refused_in_one_line(tmp_path, config, message):
    """End to end through Snakemake's command line (the library-level battery is tests/test_config.py)."""
    assert message in _refused(tmp_path, config)
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_that_is_not_there_is_refused_up_front(tmp_path):
    line = _refused(tmp_path, {"samples": DEMO, "detect": {"device": "cuda"}})
    assert "detect.device cuda: this machine has no usable CUDA GPU" in line


def test_boxes_outside_a_real_image_are_refused(tmp_path, image):
    far = {"start_um": [0, 500, 500], "stop_um": [5, 600, 600]}
    line = _refused(tmp_path, {"samples": {"a": str(image)}, "regions": {"far": far}})
    assert "sample 'a': regions 'far'" in line and "does not overlap the image" in line


def test_a_2d_image_is_refused(tmp_path):
    import zarr

    path = tmp_path / "flat.ome.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.create_array("0", shape=(64, 64), dtype=np.uint16, dimension_names=("y", "x"))
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.4, 0.4]}]}]}]}
    assert "sample 'a'" in _refused(tmp_path, {"samples": {"a": str(path)}})


def test_inputs_and_results_never_overlap(tmp_path, write_image):
    """Every direction of overlap is refused before any job, and the input is unchanged byte for byte."""
    data = np.random.default_rng(1).poisson(100, size=(8, 64, 64)).astype(np.uint16)
    results = tmp_path / "R"
    inside = write_image(data, name="R/s1/segmentation.ome.zarr")   # the input is a would-be output
    before = _checksum(inside)
    for samples, res, message in [
        ({"s1": str(inside)}, results, "lies inside the results folder"),
        ({"s1": str(inside)}, inside / "out", "lies inside the input"),
    ]:  # the other directions: tests/test_config.py
        line = _refused(tmp_path, {"samples": samples, "results": str(res)})
        assert message in line and "never writes to its inputs" in line, line
        assert _checksum(inside) == before
    assert sorted(p.name for p in results.iterdir()) == ["s1"]  # nothing beside the input was written


def test_a_results_folder_held_by_a_live_run_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        folder = tmp_path / "results" / "small"
        folder.mkdir(parents=True)
        (folder / LOCK).write_text(
            f'{{"host": "{socket.gethostname()}", "pid": {holder.pid}, "cwd": "/elsewhere", "started": "now"}}')
        line = _refused(tmp_path, small_config(tmp_path), dry_run=False)
        assert "is in use by another traice run" in line and f"pid {holder.pid}" in line and "/elsewhere" in line
        assert sorted(p.name for p in folder.iterdir()) == [LOCK]  # no job ran
    finally:
        holder.kill()
        holder.wait()


def _float_image(write_image, name: str, holes: bool) -> Path:
    from traice.synth import SynthParams, synthesize

    brain = synthesize(SynthParams(shape=(24, 256, 256), cells=6, seed=5))
    data = brain.image.astype(np.float32)
    if holes:
        data[0, 0, 0] = np.inf
        data[3, 100:104, 7:9] = np.nan
        data[-1, -1, -1] = -np.inf
    return write_image(data, name=name)


@pytest.mark.long
def test_non_finite_voxels_read_as_background_and_are_counted(tmp_path, write_image):
    """One +Inf voxel once cost every cell of a tile; now the cells are those of the same image without holes."""
    cfg = {**small_config(tmp_path), "samples": {"clean": str(_float_image(write_image, "clean.ome.zarr", False)),
                                                   "holes": str(_float_image(write_image, "holes.ome.zarr", True))}}
    run_workflow(cfg, tmp_path)
    clean, holes = (pd.read_parquet(tmp_path / "results" / s / "cells.parquet") for s in ("clean", "holes"))
    assert len(clean) >= 4
    np.testing.assert_allclose(holes[["z", "y", "x"]].to_numpy(), clean[["z", "y", "x"]].to_numpy(), atol=1)
    counts = yaml.safe_load((tmp_path / "results" / "holes" / "run.json").read_text())["counts"]
    assert counts["non_finite_voxels_sampled"] >= 1
