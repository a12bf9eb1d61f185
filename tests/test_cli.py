"""The ``traice`` command line."""

from __future__ import annotations

import subprocess
import sys

import traice


def test_version_is_printed():
    out = subprocess.run([sys.executable, "-m", "traice.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"traice {traice.__version__}"


def test_every_argument_of_every_command_is_explained():
    from traice.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command").choices
    for name, command in sub.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"traice {name}: {action.dest} has no help"
