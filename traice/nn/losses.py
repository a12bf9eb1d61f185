"""Training losses: Dice + Focal + clDice of the segmentation models, MSE + SSIM of denoising pretraining.

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

from typing import Sequence

import torch
from monai.losses import FocalLoss
from monai.losses.cldice import soft_skel
from torch import nn

from traice.core.maps import CHANNELS

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


def offset_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                spacing_ratio: Sequence[float]) -> dict[str, torch.Tensor]:
    """Offset-map terms on the voxels of ``mask``: ``{"offset_mse", "offset_grad"}``.

    ``pred, target: (B, 3, Z, Y, X)`` offsets from each voxel to its cell's
    soma in offset units; ``mask: (B, 1, Z, Y, X)`` in {0, 1};
    ``spacing_ratio`` (3,) the voxel size per axis in offset units.
    ``offset_mse`` is the mean squared error over masked voxels.
    ``offset_grad`` is HoVer-Net's gradient term: the squared error of the
    finite differences along z, y and x divided by the voxel size (so inside
    one cell the true derivative is -1 along its own axis, 0 across), over
    pairs of neighbouring masked voxels of the same cell (where the truth's
    difference is exactly that); it sharpens the map where cells meet.
    """
    pred, target, mask = pred.float(), target.float(), mask.float()
    mse = ((pred - target) ** 2 * mask).sum() / (3 * mask.sum().clamp_min(1.0))
    total, pairs = pred.new_zeros(()), pred.new_zeros(())
    for axis in range(3):
        dim, n, ratio = 2 + axis, pred.shape[2 + axis], float(spacing_ratio[axis])
        if n < 2:
            continue
        expected = torch.zeros(3, device=pred.device)
        expected[axis] = -ratio
        expected = expected.view(1, 3, 1, 1, 1)
        d_true = target.narrow(dim, 1, n - 1) - target.narrow(dim, 0, n - 1)
        d_pred = pred.narrow(dim, 1, n - 1) - pred.narrow(dim, 0, n - 1)
        same = mask.narrow(dim, 1, n - 1) * mask.narrow(dim, 0, n - 1)
        same = same * ((d_true - expected).abs().amax(1, keepdim=True) < 0.25 * ratio).float()
        total = total + (((d_pred - d_true) / ratio) ** 2 * same).sum() / 3
        pairs = pairs + same.sum()
    return {"offset_mse": mse, "offset_grad": total / pairs.clamp_min(1.0)}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, probabilities: int = 2) -> torch.Tensor:
    """How far the student's maps are from a teacher's (knowledge distillation).

    ``student, teacher: (B, C, Z, Y, X)`` logits of the same maps; the first ``probabilities``
    channels are probabilities, the rest values (the one-pass network's offsets). Binary
    cross-entropy of the student's probabilities against the teacher's (soft targets: its
    minimum is the teacher's own entropy, and every voxel tells the student how sure the teacher
    is), plus the squared difference of the other channels, each averaged over every voxel.
    """
    student, teacher = student.float(), teacher.float()
    soft = torch.sigmoid(teacher[:, :probabilities])
    loss = nn.functional.binary_cross_entropy_with_logits(student[:, :probabilities], soft)
    if student.shape[1] > probabilities:
        loss = loss + ((student[:, probabilities:] - teacher[:, probabilities:]) ** 2).mean()
    return loss


class CellMapsLoss(nn.Module):
    """The loss of the one-pass network's maps: soma, foreground and offsets to the own soma.

    ``forward(output, targets)``: ``output (B, 5, Z, Y, X)`` = soma logit,
    foreground logit, offsets (z, y, x); ``targets`` a dict of ``soma``,
    ``foreground`` ``(B, 1, ...)`` in {0, 1}, ``weight`` ``(B, 1, ...)`` the
    foreground's voxel weight (distal processes count more), optionally
    ``soma_weight`` ``(B, 1, ...)`` the soma's (balanced somas) and ``offsets``
    ``(B, 3, ...)``, and ``spacing_ratio`` (3,) the voxel size in offset units.
    Soma: Dice + Focal (blobs, no topology); foreground:
    Dice + Focal + clDice (clDice keeps thin processes connected); offsets:
    ``offset_weight`` times (MSE + ``grad_weight`` times the gradient MSE,
    :func:`offset_loss`) on the true foreground. The offset weight 3 brings
    the MSE (about 0.06 at the start, in offset units) nearer the scale of
    the Dice terms without letting it lead the shared decoder. :meth:`terms` returns every term, prefixed, for logging.
    """

    def __init__(self, offset_weight: float = 3.0, grad_weight: float = 0.1) -> None:
        super().__init__()
        self.soma = SegmentationLoss(1.0, 1.0, 0.0)
        self.foreground = SegmentationLoss(1.0, 1.0, 1.0)
        self.offset_weight = offset_weight
        self.grad_weight = grad_weight

    def terms(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if output.shape[1] != len(CHANNELS):
            raise ValueError(f"expected {len(CHANNELS)} output channels (soma, foreground, 3 offsets), got {tuple(output.shape)}")
        out = {f"soma_{k}": v for k, v in
               self.soma.terms(output[:, :1], targets["soma"], targets.get("soma_weight")).items()}
        out.update({f"fg_{k}": v for k, v in
                    self.foreground.terms(output[:, 1:2], targets["foreground"], targets.get("weight")).items()})
        out.update(offset_loss(output[:, 2:], targets["offsets"], targets["foreground"],
                               [float(v) for v in targets["spacing_ratio"]]))
        return out

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        total = sum(v for k, v in terms.items() if k.startswith(("soma_", "fg_")))
        return total + self.offset_weight * (terms["offset_mse"] + self.grad_weight * terms["offset_grad"])

    def forward(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.combine(self.terms(output, targets))


class DenoisingLoss(nn.Module):
    """Self-supervised pretraining loss (trAIce3D): ``MSE + ssim_weight * (1 - SSIM)`` between the network's
    output and the clean window, both ``(B, 1, Z, Y, X)`` in model-input units.

    SSIM is MONAI's ``SSIMLoss`` in 3D, over a (3, 7, 7) Gaussian window (sigma 0.5, 1.5, 1.5 voxels: the
    voxels are about three times longer in z) and a data range of 4 (model input runs from about 0 at the
    background to 4 at the brightest somas, :mod:`traice.core.intensity`).
    """

    def __init__(self, ssim_weight: float = 10.0, data_range: float = 4.0) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.ssim_weight = ssim_weight
        self.ssim = SSIMLoss(spatial_dims=3, data_range=data_range, win_size=(3, 7, 7), kernel_sigma=(0.5, 1.5, 1.5))

    def terms(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"mse", "ssim"}`` (``ssim`` is ``1 - SSIM``); ``weight`` is not used (every voxel counts)."""
        _check(output, target)
        output, target = output.float(), target.float()
        return {"mse": torch.mean((output - target) ** 2), "ssim": self.ssim(output, target)}

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return terms["mse"] + self.ssim_weight * terms["ssim"]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.combine(self.terms(output, target))
