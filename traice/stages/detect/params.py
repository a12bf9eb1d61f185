"""Settings of soma detection (config section ``detect``); the defaults here are the config's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectParams:
    method: str = "traice"         # traice (the one-pass network) | classical (baseline)
    soma_radius_um: tuple[float, float] = (3.0, 6.0)
    # classical
    smooth_um: float = 1.0
    opening_um: float = 4.0        # box width of the grey opening (erases thinner structures)
    background_um: float = 20.0    # Gaussian sigma of the local background
    threshold: float = 3.0         # in units of the image's background noise sigma
    # traice
    model: str | None = None       # weights file; None = the shipped one-pass S weights
    adapter: str | None = None     # LoRA adapter file over ``model`` (traice finetune); None = none
    probability: float = 0.5       # soma probability threshold
    min_processes: float = 0.005   # drop a detection with less process evidence (traice.stages.detect.processes); 0 = keep all
    overlap: float | tuple[float, float, float] = 0.25  # sliding-window overlap: one share, or one per axis (z, y, x)
    batch_size: int | None = None  # windows per forward pass; None: 2 on the CPU, 8 on a GPU (traice.nn.device.window_batch)
    mirror: str = ""               # axes to mirror each window along and average over (e.g. "yx": 4 passes); "" = none
    device: str = "auto"           # auto (cuda when present) | cpu | cuda
