"""Run the workflow from tests: through Snakemake's Python API, or its command line.

Each run has its own working directory (Snakemake's ``.snakemake``: locks, metadata, logs), the test's
temporary folder, never the repository: tests run side by side (``pytest -n``) without sharing one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, ExecutionSettings, OutputSettings, ResourceSettings

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_workflow(config: dict, tmp: Path, cores: int = 2) -> None:
    """Run the whole workflow with ``config`` (written to ``tmp/config.yaml``) on local cores, in ``tmp``."""
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with SnakemakeApi(OutputSettings(quiet={Quietness.PROGRESS, Quietness.RULES})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=cores),
            config_settings=ConfigSettings(configfiles=[cfg]),
            snakefile=ROOT / "Snakefile",
            workdir=tmp,
        )
        dag = wf.dag(DAGSettings())
        dag.execute_workflow(executor="local", execution_settings=ExecutionSettings())


def small_config(tmp: Path, **extra) -> dict:
    """A synthetic sample small enough for tests (24 x 384 x 384 voxels, 10 cells), several jobs per stage.

    Orchestration tests detect with the fast classical baseline; the stage-1
    model is tested on its own (tests/stages/test_detect_traice.py) and in one workflow run.
    """
    cfg = {
        "samples": {"small": {"synthetic": {"seed": 3, "shape": [24, 384, 384], "cells": 10}}},
        "results": str(tmp / "results"),
        "plan": {"tile_shape": [64, 256, 256], "tiles_per_job": 2},
        "detect": {"method": "classical"},
        "segment": {"method": "classical", "cells_per_job": 6},
        "stitch": {"chunk": [32, 128, 128], "chunks_per_job": [1, 2, 2]},
    }
    cfg.update(extra)
    return cfg


def snakemake_command(args: list[str], workdir: Path) -> list[str]:
    """Snakemake's command line on the repository's Snakefile, working in ``workdir``."""
    return SNAKEMAKE + ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]


def cli(args: list[str], workdir: Path, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Snakemake's command line, as a user runs it, in ``workdir``."""
    return subprocess.run(snakemake_command(args, workdir), cwd=workdir, capture_output=True, text=True, timeout=timeout)


# A small registered atlas for the atlas tests: root (1) > grey (8) > {isocortex (315), hippocampus (1089)}; root > fiber tracts (1009)
STRUCTURES = [
    {"id": 1, "acronym": "root", "name": "root", "structure_id_path": [1]},
    {"id": 8, "acronym": "grey", "name": "Basic cell groups and regions", "structure_id_path": [1, 8]},
    {"id": 315, "acronym": "Isocortex", "name": "Isocortex", "structure_id_path": [1, 8, 315]},
    {"id": 1089, "acronym": "HPF", "name": "Hippocampal formation", "structure_id_path": [1, 8, 1089]},
    {"id": 1009, "acronym": "fiber tracts", "name": "fiber tracts", "structure_id_path": [1, 1009]},
]


def annotation(shape=(6, 48, 48)) -> np.ndarray:
    """Fiber tracts in the first plane; below it isocortex (x < half) and hippocampus; a corner outside."""
    ann = np.zeros(shape, np.uint32)
    ann[0] = 1009
    ann[1:, :, : shape[2] // 2] = 315
    ann[1:, :, shape[2] // 2:] = 1089
    ann[:, :4, :4] = 0
    return ann


def write_czi(path, channels, scale_um, origin=(0, 0), scale_factor=1.0, times=1):
    """A Zeiss CZI written by libCZI: one tile per plane at ``origin`` (y, x), scaling given in µm ×
    ``scale_factor`` (1e-6: metres, as ZEN writes it)."""
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as w:
        for t in range(times):
            for c, data in enumerate(channels):
                for z, plane in enumerate(data):
                    w.write(plane[..., None], plane={"C": c, "Z": z, "T": t}, location=(origin[1], origin[0]))
        w.write_metadata("cells", scale_x=scale_um[2] * scale_factor, scale_y=scale_um[1] * scale_factor,
                         scale_z=scale_um[0] * scale_factor)

