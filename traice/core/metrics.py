"""Scores against ground truth: point matching (soma precision, recall, F1), Dice and clDice per cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from skimage.morphology import skeletonize


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


def cldice(pred: np.ndarray, true: np.ndarray) -> float:
    """Centreline Dice (Shit et al. 2021) of two boolean masks: the harmonic mean of
    topology precision ``|S(pred) & true| / |S(pred)|`` and sensitivity ``|S(true) & pred| / |S(true)|``,
    ``S`` the skeleton (scikit-image, on the voxel grid). 1.0 when both are empty, 0.0 when one is."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    if not pred.any() or not true.any():
        return float(pred.any() == true.any())
    skel_pred, skel_true = skeletonize(pred), skeletonize(true)
    tprec = np.logical_and(skel_pred, true).sum() / max(skel_pred.sum(), 1)
    tsens = np.logical_and(skel_true, pred).sum() / max(skel_true.sum(), 1)
    return float(2 * tprec * tsens / (tprec + tsens)) if tprec + tsens else 0.0


def per_cell_dice(pred_labels: np.ndarray, true_labels: np.ndarray, pairs: list[tuple[int, int]],
                  score=dice) -> np.ndarray:
    """``score`` (default Dice; or :func:`cldice`) of each (pred_id, true_id) pair of label values,
    computed in their joint bounding box."""
    pred_boxes = ndimage.find_objects(pred_labels)
    true_boxes = ndimage.find_objects(true_labels)
    out = []
    for p, t in pairs:
        pb = pred_boxes[p - 1] if 0 < p <= len(pred_boxes) else None
        tb = true_boxes[t - 1] if 0 < t <= len(true_boxes) else None
        if pb is None or tb is None:
            out.append(0.0 if (pb is None) != (tb is None) else 1.0)
            continue
        box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(pb, tb))
        out.append(score(pred_labels[box] == p, true_labels[box] == t))
    return np.asarray(out, dtype=float)


def panoptic_quality(pred_labels: np.ndarray, true_labels: np.ndarray, min_iou: float = 0.5) -> dict[str, float]:
    """Panoptic quality of an instance label image against the truth (Kirillov et al. 2019).

    Instances match when their IoU exceeds ``min_iou`` (> 0.5 makes the match
    unique); ``PQ = sum of matched IoUs / (TP + FP / 2 + FN / 2)`` = segmentation
    quality (mean matched IoU) x recognition quality (an F1). Returns
    ``{"pq", "sq", "rq", "tp", "fp", "fn"}``; PQ is 1.0 when both images are empty.
    """
    pred = np.asarray(pred_labels).ravel()
    true = np.asarray(true_labels).ravel()
    both = (pred > 0) | (true > 0)
    pairs, overlap = np.unique(np.stack([pred[both], true[both]]), axis=1, return_counts=True)
    pred_ids, pred_size = np.unique(pred[pred > 0], return_counts=True)
    true_ids, true_size = np.unique(true[true > 0], return_counts=True)
    size_p = dict(zip(pred_ids.tolist(), pred_size.tolist()))
    size_t = dict(zip(true_ids.tolist(), true_size.tolist()))
    ious = []
    for (p, t), n in zip(pairs.T.tolist(), overlap.tolist()):
        if p and t:
            iou = n / (size_p[p] + size_t[t] - n)
            if iou > min_iou:
                ious.append(iou)
    tp = len(ious)
    fp, fn = len(size_p) - tp, len(size_t) - tp
    denominator = tp + 0.5 * fp + 0.5 * fn
    pq = float(sum(ious) / denominator) if denominator else 1.0
    return {"pq": pq, "sq": float(np.mean(ious)) if ious else 0.0, "rq": tp / denominator if denominator else 1.0,
            "tp": tp, "fp": fp, "fn": fn}
