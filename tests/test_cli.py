"""The ``traice`` command line."""

from __future__ import annotations

import subprocess
import sys

import traice


def test_version_is_printed():
    out = subprocess.run([sys.executable, "-m", "traice.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"traice {traice.__version__}"
