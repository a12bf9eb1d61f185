"""Shared fixtures: small synthetic images written as OME-Zarr."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from traice.io.multiscale import write_multiscale

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(items):
    """The Slurm test first, then the long tests, the other workflow tests, the rest (each in its own order).

    Slurm's client, once installed (the Slurm test installs it), makes every later ``snakemake`` start wait
    about 9 s whenever its daemons are down: the Slurm executor plugin's import asks ``scontrol show config``.
    So the daemons stay up until the session ends (the ``slurm`` fixture), and the test that starts them runs
    first. Longest first after it: with ``pytest -n`` (``make test``), the short ones fill the workers last.
    """
    def group(item):
        for rank, marker in enumerate(["slurm", "long", "workflow"]):
            if item.get_closest_marker(marker):
                return rank
        return 3

    items.sort(key=group)  # stable: each group keeps its order


@pytest.fixture
def write_image(tmp_path):
    """Write a (z, y, x) array as an NGFF 0.5 image; returns its path."""

    def _write(data: np.ndarray, spacing=(1.25, 0.4, 0.4), name: str = "image.ome.zarr") -> Path:
        path = tmp_path / name
        write_multiscale(path, data, spacing, footprint=(32, 128, 128))
        return path

    return _write


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """One uninterrupted local run of the small synthetic config; returns the sample's results folder.

    Under ``pytest -n`` the workers share it: the first to need it runs it while the others wait on a lock.
    """
    from filelock import FileLock

    from helpers import run_workflow, small_config

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this session's folder, above the workers' own
    tmp = shared / "reference"
    with FileLock(shared / "reference.lock"):
        if not (tmp / "results" / "small" / "run.json").exists():
            tmp.mkdir(exist_ok=True)
            run_workflow(small_config(tmp), tmp)
    return tmp / "results" / "small"


@pytest.fixture
def float32_cpu(monkeypatch):
    """Keep CPU inference in float32 (no bf16 autocast) for comparisons with float32 references."""
    from traice.nn.device import cpu_has_native_bf16

    monkeypatch.setenv("TRAICE_CPU_BF16", "0")
    cpu_has_native_bf16.cache_clear()
    yield
    cpu_has_native_bf16.cache_clear()
