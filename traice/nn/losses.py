"""Training loss of the segmentation models: Dice + Focal + clDice.

All functions take one logit channel and a binary target of the same shape,
``(B, 1, Z, Y, X)``, and an optional per-voxel weight map of that shape
(stage 2 up-weights voxels far from the soma, so that thin distal processes
count). The weight enters every term as a weight on voxel sums:

- Dice: ``1 - (2 * sum(w*p*t) + s) / (sum(w*p) + sum(w*t) + s)`` per sample;
- Focal: the weighted mean ``sum(w * fl) / sum(w)`` over the batch;
- clDice: the weighted sums of its topology precision and sensitivity,
  ``Tprec = (sum(w * S(p) * t) + s) / (sum(w * S(p)) + s)`` and
  ``Tsens = (sum(w * S(t) * p) + s) / (sum(w * S(t)) + s)``, with ``S`` the
  soft skeleton, and ``1 - 2 Tprec Tsens / (Tprec + Tsens)`` per sample.

So a voxel of weight 0 does not count in any term, and a weight of 1
everywhere gives the unweighted losses (those of MONAI's ``DiceLoss``,
``FocalLoss`` and ``SoftclDiceLoss`` with the same smoothing).

Why not MONAI's loss classes as they are: ``DiceLoss`` and ``SoftclDiceLoss``
accept only per-class weights, not a voxel weight map, so the two formulas are
written here (a few lines each); the focal term is MONAI's ``FocalLoss``
(``reduction="none"``), weighted and averaged here, and the soft skeleton is
MONAI's ``soft_skel`` (iterated soft openings; erosion is a min of axis-wise
3-voxel min-pools, dilation a 3x3x3 max-pool).
"""

from __future__ import annotations

import torch
from monai.losses import FocalLoss
from monai.losses.cldice import soft_skel
from torch import nn

EPS = 1e-6


def soft_skeleton(prob: torch.Tensor, iters: int = 5) -> torch.Tensor:
    """Soft skeleton of a probability map ``(B, C, Z, Y, X) -> (B, C, Z, Y, X)``, values in [0, 1].

    Structures up to about ``iters`` voxels in radius are thinned to their
    centre line; thicker ones keep a shell-like partial skeleton.
    """
    return soft_skel(prob, iters)


def _weights(weight: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    """The weight map as a tensor of ``target``'s shape (ones when None)."""
    if weight is None:
        return torch.ones_like(target)
    return torch.broadcast_to(weight.to(target.dtype), target.shape)


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim != 5 or logits.shape[1] != 1:
        raise ValueError(f"expected logits (B, 1, Z, Y, X), got {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} differs from logits {tuple(logits.shape)}")


def _sum_per_sample(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B,)``."""
    return x.flatten(1).sum(dim=1)


def dice_loss(
    prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, smooth: float = 1.0
) -> torch.Tensor:
    """Weighted soft Dice loss, averaged over the batch.

    ``prob, target, weight: (B, 1, Z, Y, X)``; returns a scalar in [0, 1].
    """
    w = _weights(weight, target)
    intersection = _sum_per_sample(w * prob * target)
    total = _sum_per_sample(w * prob) + _sum_per_sample(w * target)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> torch.Tensor:
    """Weighted mean of the sigmoid focal loss ``-(1 - p_t)**gamma * log(p_t)`` (times alpha_t if given).

    ``logits, target, weight: (B, 1, Z, Y, X)``; returns a scalar.
    """
    per_voxel = FocalLoss(gamma=gamma, alpha=alpha, reduction="none")(logits, target)
    w = _weights(weight, target)
    return (w * per_voxel).sum() / w.sum().clamp_min(EPS)


def cldice_loss(
    prob: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    iters: int = 5,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Weighted soft clDice loss (Shit et al. 2021), averaged over the batch.

    ``prob, target, weight: (B, 1, Z, Y, X)``; returns a scalar in [0, 1]:
    0 when the prediction equals the target, near 1 when they are disjoint.
    """
    w = _weights(weight, target)
    skel_pred = soft_skeleton(prob, iters)
    skel_true = soft_skeleton(target, iters)
    tprec = (_sum_per_sample(w * skel_pred * target) + smooth) / (_sum_per_sample(w * skel_pred) + smooth)
    tsens = (_sum_per_sample(w * skel_true * prob) + smooth) / (_sum_per_sample(w * skel_true) + smooth)
    return (1.0 - 2.0 * tprec * tsens / (tprec + tsens).clamp_min(EPS)).mean()


class SegmentationLoss(nn.Module):
    """``dice_weight * Dice + focal_weight * Focal + cldice_weight * clDice`` on one logit channel.

    ``forward(logits, target, weight=None)`` with ``logits, target, weight:
    (B, 1, Z, Y, X)`` (target in {0, 1}) returns a scalar; :meth:`terms`
    returns the three unweighted terms, for logging.

    Defaults: equal weights (trAIce3D names the three terms, not their
    weights), focal gamma 2 without alpha balancing, smoothing 1 (keeps
    windows with an empty target well defined: the Dice term then tends to 0
    as the prediction empties), and 5 skeleton iterations (thickest processes
    are about 2-3 um, at most ~8 voxels across at 0.4 um in y/x). For soma
    detection (blobs, no topology to keep) set ``cldice_weight=0``.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        focal_weight: float = 1.0,
        cldice_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: float | None = None,
        skeleton_iters: int = 5,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.focal_weight = focal_weight
        self.cldice_weight = cldice_weight
        self.gamma = gamma
        self.alpha = alpha
        self.skeleton_iters = skeleton_iters
        self.smooth = smooth

    def terms(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"dice", "focal", "cldice"}`` (clDice only when its weight is non-zero)."""
        _check(logits, target)
        logits = logits.float()  # sums over ~10^6 voxels overflow float16 under autocast
        target = target.float()
        prob = torch.sigmoid(logits)
        out = {
            "dice": dice_loss(prob, target, weight, self.smooth),
            "focal": focal_loss(logits, target, weight, self.gamma, self.alpha),
        }
        if self.cldice_weight:
            out["cldice"] = cldice_loss(prob, target, weight, self.skeleton_iters, self.smooth)
        return out

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of :meth:`terms`' output (for callers that log the terms too)."""
        total = self.dice_weight * terms["dice"] + self.focal_weight * terms["focal"]
        if "cldice" in terms:
            total = total + self.cldice_weight * terms["cldice"]
        return total

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return self.combine(self.terms(logits, target, weight))
