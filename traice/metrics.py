"""Evaluation: point matching (soma F1) and overlap scores (Dice) against ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


@dataclass(frozen=True)
class PointMatch:
    """Hungarian matching of predicted to true points within ``max_distance_um``."""

    pairs: np.ndarray        # (K, 2) indices (pred, true)
    n_pred: int
    n_true: int

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        total = self.n_pred + self.n_true
        return 2 * self.tp / total if total else 1.0


def match_points(pred_um: np.ndarray, true_um: np.ndarray, max_distance_um: float = 6.0) -> PointMatch:
    """One-to-one matching minimising total distance; pairs farther than the limit do not count.

    ``pred_um`` (N, 3) and ``true_um`` (M, 3) are positions in µm.
    """
    pred_um = np.asarray(pred_um, dtype=float).reshape(-1, 3)
    true_um = np.asarray(true_um, dtype=float).reshape(-1, 3)
    if len(pred_um) == 0 or len(true_um) == 0:
        return PointMatch(np.zeros((0, 2), int), len(pred_um), len(true_um))
    dist = cdist(pred_um, true_um)
    cost = np.where(dist <= max_distance_um, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    ok = dist[rows, cols] <= max_distance_um
    return PointMatch(np.stack([rows[ok], cols[ok]], axis=1), len(pred_um), len(true_um))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0
