"""Workflow configuration helpers that need no Snakemake: samples, input checks, parameter objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from traice.core.errors import InputError
from traice.core.roi import roi_boxes
from traice.io.ome import open_image

T = TypeVar("T")


def from_config(cls: type[T], section: dict[str, Any] | None, **extra: Any) -> T:
    """Build a parameter dataclass from a config section (lists become tuples; unknown keys rejected)."""
    section = {**(section or {}), **extra}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(section) - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameter(s) {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})


def is_synthetic(spec: Any) -> bool:
    return isinstance(spec, dict) and "synthetic" in spec


def sample_image(sample: str, spec: Any, results: str) -> str:
    """Where a sample's input image is: its configured path, or where the workflow synthesises it."""
    if is_synthetic(spec):
        return str(Path(results) / sample / "input.ome.zarr")
    return str(spec)


def check_inputs(samples: dict[str, Any], channel: int | None, roi: dict | None = None) -> None:
    """Open every real input image once, before any job, and check the ROI lies in it; raise InputError naming the sample."""
    for name, spec in samples.items():
        if is_synthetic(spec):
            continue
        try:
            image = open_image(spec, channel)
            roi_boxes(roi, image.bounds, image.spacing)
        except InputError as err:
            raise InputError(f"sample '{name}': {err}") from None


def check_models(config: dict[str, Any]) -> None:
    """Raise InputError when a configured weights file (``detect.model``, ``segment.model``) is missing or of the wrong kind."""
    kinds = {"detect": None, "segment": "prompted"}  # the checkpoint kind each network method loads
    for section, kind in kinds.items():
        path = (config.get(section) or {}).get("model")
        if path is None or config[section].get("method") != "traice":
            continue
        if not Path(path).is_file():
            raise InputError(f"{section}.model {path}: no such file")
        from traice.nn.checkpoints import kind_name, load_checkpoint  # torch: only when a weights file is configured

        try:
            found = load_checkpoint(path).get("kind")
        except Exception as err:  # torch raises many types for a file that is not a checkpoint
            raise InputError(f"{section}.model {path}: not a traice checkpoint ({type(err).__name__})") from None
        if found != kind:
            raise InputError(f"{section}.model {path}: a {kind_name(found)} checkpoint, expected {kind_name(kind)}")
