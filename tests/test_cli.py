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


def test_finetune_options_reach_the_fine_tuning_settings():
    from traice.cli import finetune_config, parser
    from traice.training.finetune import FinetuneConfig

    given = finetune_config(parser().parse_args(["finetune", "im.ome.zarr", "p.csv", "a.pt", "--soma-radius", "3",
                                                  "--negative", "8", "15", "--no-norms"]))
    assert (given.soma_radius_um, given.negative_um, given.norms) == (3.0, (8.0, 15.0), False)
    plain = finetune_config(parser().parse_args(["finetune", "im.ome.zarr", "p.csv", "a.pt"]))
    assert plain == FinetuneConfig()
