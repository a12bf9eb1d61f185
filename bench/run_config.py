"""Run the workflow over a bench's own config: the step the end-to-end benches share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_config(config: dict, out: Path, cores: int, target: str = "rules") -> Path:
    """Write ``config`` to ``out/config.yaml`` and run the project's workflow on it (``target``, ``cores`` cores,
    from the repository root, as ``make demo`` runs it); returns the config's path. Stops the bench on failure."""
    path = Path(out) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", target,
                    "--configfile", str(path)], cwd=ROOT, check=True)
    return path
