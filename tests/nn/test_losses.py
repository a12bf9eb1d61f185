"""Dice, Focal and clDice terms against hand-written formulas and MONAI; weight maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss, SoftclDiceLoss

from traice.nn.losses import SegmentationLoss, cldice_loss, dice_loss, distillation_loss, focal_loss, soft_skeleton


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def thick_line(shape=(9, 15, 31), z=(2, 7), y=(5, 10), x=(4, 27)) -> torch.Tensor:
    """A (1, 1, Z, Y, X) volume with a 5x5-voxel bar along x."""
    v = torch.zeros(1, 1, *shape)
    v[0, 0, z[0] : z[1], y[0] : y[1], x[0] : x[1]] = 1
    return v


def logits_of(target: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Confident logits that predict ``target``."""
    return scale * (2 * target - 1)


def random_case(shape=(2, 1, 4, 6, 5)):
    logits = torch.randn(shape) * 2
    target = (torch.rand(shape) > 0.6).float()
    weight = torch.rand(shape)
    return logits, target, weight


def test_dice_matches_numpy_formula():
    logits, target, weight = random_case()
    p, t, w = torch.sigmoid(logits).numpy(), target.numpy(), weight.numpy()
    per_sample = [
        1 - (2 * (w[b] * p[b] * t[b]).sum() + 1) / ((w[b] * p[b]).sum() + (w[b] * t[b]).sum() + 1) for b in range(2)
    ]
    got = dice_loss(torch.sigmoid(logits), target, weight, smooth=1.0)
    assert got.item() == pytest.approx(float(np.mean(per_sample)), rel=1e-5)


def test_unweighted_dice_equals_monai():
    logits, target, _ = random_case()
    ours = dice_loss(torch.sigmoid(logits), target, smooth=1.0)
    monai = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)(logits, target)
    assert ours.item() == pytest.approx(monai.item(), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_matches_formula(gamma):
    logits, target, weight = random_case()
    p = 1 / (1 + np.exp(-logits.numpy().astype(np.float64)))
    t, w = target.numpy(), weight.numpy()
    pt = np.where(t == 1, p, 1 - p)
    fl = -((1 - pt) ** gamma) * np.log(pt)
    assert focal_loss(logits, target, gamma=gamma).item() == pytest.approx(fl.mean(), rel=1e-4)
    assert focal_loss(logits, target, weight, gamma=gamma).item() == pytest.approx((w * fl).sum() / w.sum(), rel=1e-4)


def test_soft_skeleton_of_thick_line_is_its_centre_line():
    line = thick_line()
    skel = soft_skeleton(line, iters=5)
    assert skel.shape == line.shape
    assert skel.sum() < 0.1 * line.sum()  # thinner
    off_line = skel * (1 - line)
    assert off_line.abs().max() == 0  # inside the bar
    centre = torch.zeros_like(line)
    centre[0, 0, 4, 7, :] = 1  # the bar's axis
    assert (skel * (1 - centre)).abs().max() < 1e-6  # on its axis
    assert (skel[0, 0, 4, 7, 7:24] > 0.99).all()  # and covering it away from the ends


def test_cldice_extremes():
    line = thick_line()
    assert cldice_loss(line, line).item() == pytest.approx(0.0, abs=1e-4)
    other = thick_line(y=(0, 5), z=(2, 7))  # a parallel bar that does not touch the first
    assert (other * line).sum() == 0
    assert cldice_loss(other, line).item() > 0.9
    assert cldice_loss(other, line).item() <= 1.0


def test_unweighted_cldice_equals_monai():
    target = thick_line()
    logits = torch.randn_like(target) + 4 * (2 * target - 1)
    prob = torch.sigmoid(logits)
    ours = cldice_loss(prob, target, iters=3, smooth=1.0)
    monai = SoftclDiceLoss(iter_=3, smooth_nr=1.0, smooth_dr=1.0, sigmoid=True)(logits, target)
    assert ours.item() == pytest.approx(monai.item(), abs=1e-4)


def test_perfect_prediction_has_near_zero_loss():
    target = thick_line()
    terms = SegmentationLoss().terms(logits_of(target), target)
    assert set(terms) == {"dice", "focal", "cldice"}
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-3), name


def test_total_is_the_weighted_sum_of_terms():
    logits, target, weight = random_case((1, 1, 8, 12, 12))
    loss = SegmentationLoss(dice_weight=0.5, focal_weight=2.0, cldice_weight=3.0, skeleton_iters=2)
    terms = loss.terms(logits, target, weight)
    expected = 0.5 * terms["dice"] + 2.0 * terms["focal"] + 3.0 * terms["cldice"]
    assert loss(logits, target, weight).item() == pytest.approx(expected.item(), rel=1e-6)
    no_cl = SegmentationLoss(cldice_weight=0.0)
    assert set(no_cl.terms(logits, target)) == {"dice", "focal"}


def test_zero_weight_region_does_not_count():
    target = thick_line()
    perfect = logits_of(target)
    wrong = perfect.clone()
    wrong[..., 20:] = -perfect[..., 20:]  # every voxel with x >= 20 predicted wrong
    weight = torch.ones_like(target)
    weight[..., 17:] = 0  # those errors (and a margin for the skeleton's reach) weigh nothing
    loss = SegmentationLoss()
    for name, value in loss.terms(wrong, target, weight).items():
        ref = loss.terms(perfect, target, weight)[name]
        assert value.item() == pytest.approx(ref.item(), abs=1e-4), name
    assert loss(wrong, target) > loss(wrong, target, weight) + 0.1


def test_up_weighting_errors_raises_the_loss():
    target = thick_line()
    logits = logits_of(target, scale=1.0)
    logits[..., 20:] = -logits[..., 20:]
    weight = torch.ones_like(target)
    heavier = weight.clone()
    heavier[..., 20:] = 5.0
    loss = SegmentationLoss()
    plain, weighted = loss.terms(logits, target, weight), loss.terms(logits, target, heavier)
    for name in plain:
        assert weighted[name] > plain[name], name


def test_gradient_reaches_logits_and_shapes_are_checked():
    target = thick_line()
    logits = torch.zeros_like(target, requires_grad=True)
    SegmentationLoss()(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        SegmentationLoss()(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 5))
    with pytest.raises(ValueError):
        SegmentationLoss()(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 4, 4, 4))


def test_offset_loss_is_zero_for_the_truth_and_sees_gradients():
    from traice.core.maps import offsets_to_soma
    from traice.nn.losses import offset_loss

    spacing = (1.25, 0.4, 0.4)
    ratio = [s / 40.0 for s in spacing]
    labels = np.zeros((6, 16, 16), np.int64)
    labels[1:5, 2:8, 2:14] = 1
    labels[1:5, 8:14, 2:14] = 2  # touching cells: the jump between them is not a gradient
    off = torch.from_numpy(offsets_to_soma(labels, np.array([[3.0, 5.0, 8.0], [3.0, 11.0, 8.0]]), spacing))[None]
    mask = torch.from_numpy(labels > 0).float()[None, None]
    terms = offset_loss(off, off, mask, ratio)
    assert float(terms["offset_mse"]) == 0.0 and float(terms["offset_grad"]) == 0.0
    shifted = offset_loss(off + 0.1, off, mask, ratio)  # a constant error: MSE only
    assert abs(float(shifted["offset_mse"]) - 0.01) < 1e-6 and float(shifted["offset_grad"]) < 1e-9
    rough = off + 0.01 * torch.randn_like(off)  # a noisy map: mostly a gradient error
    terms = offset_loss(rough, off, mask, ratio)
    assert float(terms["offset_grad"]) > 100 * float(terms["offset_mse"])


def test_cell_maps_loss_terms_and_checks():
    from traice.nn.losses import CellMapsLoss

    loss = CellMapsLoss()
    target = torch.zeros(1, 1, 8, 16, 16)
    target[..., 2:6, 4:12, 4:12] = 1
    batch = {"soma": target, "foreground": target, "weight": torch.ones_like(target),
             "offsets": torch.zeros(1, 3, 8, 16, 16), "spacing_ratio": torch.tensor([1.25, 0.4, 0.4]) / 40}
    good = torch.cat([20 * (2 * target - 1), 20 * (2 * target - 1), torch.zeros(1, 3, 8, 16, 16)], dim=1)
    terms = loss.terms(good, batch)
    assert set(terms) == {"soma_dice", "soma_focal", "fg_dice", "fg_focal", "fg_cldice", "offset_mse", "offset_grad"}
    assert float(loss(good, batch)) < 0.05
    assert float(loss(-good, batch)) > 2.0
    with pytest.raises(ValueError, match="5 output channels"):
        loss(good[:, :1], batch)
    speck = good.clone()
    speck[:, 0, 6:8, 0:2, 0:2] = 20.0            # a soma called where there is none
    weight = torch.ones_like(target)
    weight[..., 6:8, 0:2, 0:2] = 5.0             # balanced somas: a bright thing that is no cell
    plain, weighed = loss.terms(speck, batch), loss.terms(speck, {**batch, "soma_weight": weight})
    assert float(weighed["soma_focal"]) > 2 * float(plain["soma_focal"])
    assert float(weighed["soma_dice"]) > float(plain["soma_dice"])
    assert float(weighed["fg_dice"]) == float(plain["fg_dice"])  # the foreground keeps its own weight


def test_distillation_loss_is_least_where_the_student_is_the_teacher():
    """Soft-target cross-entropy on the probability channels, squared error on the rest: no gradient at the
    teacher's own maps, more loss for any other."""
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 4, 8, 8) * 3
    student = teacher.clone().requires_grad_(True)
    at_teacher = distillation_loss(student, teacher)
    at_teacher.backward()
    assert float(student.grad.abs().max()) < 1e-6
    for channels in (slice(0, 2), slice(2, 5)):  # probabilities and offsets each count
        moved = teacher.clone()
        moved[:, channels] += 0.5 * torch.randn_like(moved[:, channels])
        assert distillation_loss(moved, teacher) > at_teacher + 1e-3
