"""Settings of per-cell segmentation (config section ``segment``); the defaults here are the config's defaults."""

from __future__ import annotations

from dataclasses import dataclass

METHOD_PROBABILITY = {"growth": 0.1, "votes": 0.1, "prompted-growth": 0.1, "prompted": 0.5}
"""``segment.probability`` when the config leaves it null: each method's own foreground threshold.
growth, votes and prompted-growth (growth's reach): 0.1, the highest Dice and PQ on the validation fields
(docs/arbors.md); prompted: 0.5, at which stage 2 was measured (docs/stage2.md). The classical method thresholds the image instead."""


@dataclass(frozen=True)
class SegmentParams:
    method: str = "growth"           # growth | votes | prompted-growth (one-pass foreground) | prompted (stage 2)
                                     # | classical (baseline)
    radius_um: float = 60.0          # maximum arbor radius (classical: also the window half-size)
    bridge_um: float = 3.0           # growth, votes, prompted-growth: a cell's path may cross breaks in its foreground this long
    model: str | None = None         # prompted, prompted-growth: stage-2 / ownership weights; None = shipped
    probability: float | None = None # growth, votes, prompted-growth, prompted: foreground probability threshold (None: METHOD_PROBABILITY)
    batch_size: int = 4              # prompted, prompted-growth: cells per forward pass
    device: str = "auto"             # prompted, prompted-growth: auto (cuda when present) | cpu | cuda
    smooth_um: float = 0.4
    soma_fraction: float = 0.15      # threshold = background + this * (soma - background) ...
    min_snr: float = 2.5             # ... but at least this many noise sigmas of the smoothed image
    decay_um: float = 30.0           # claim halves every decay_um * ln 2 from the soma
    cells_per_job: int = 32          # at least this many cells per job ...
    max_jobs: int = 1000             # ... and more once there would be more jobs than this

    def __post_init__(self) -> None:
        if self.probability is None:
            object.__setattr__(self, "probability", METHOD_PROBABILITY.get(self.method, 0.5))


NEEDS_MAPS = ("growth", "votes", "prompted-growth")
"""Segment methods that read the one-pass maps of the detect jobs (:mod:`traice.stages.segment.ownership`)."""
