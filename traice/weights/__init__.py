"""Model weights shipped with traice (trained by ``traice train``; how: ``README.md`` beside them)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIPPED = {"cells": HERE / "cells_S.pt", "soma": HERE / "soma_S.pt", "branch": HERE / "branch_S.pt",
           "ownership": HERE / "ownership_S.pt"}
"""``cells``: the one-pass network (detection's default); ``soma``: stage 1, soma only (it starts the others'
training); ``branch``: stage 2, the prompted network; ``ownership``: stage 2 given the image and the one-pass
foreground (``segment.method: prompted-growth``)."""


def shipped_weights(task: str) -> Path:
    """The weights file traice uses for ``task`` when the config names none."""
    if task not in SHIPPED:
        raise ValueError(f"no shipped weights for {task!r}; tasks with weights: {sorted(SHIPPED)}")
    path = SHIPPED[task]
    if not path.exists():
        raise FileNotFoundError(f"the shipped {task} weights are missing from the installation: {path}")
    return path
