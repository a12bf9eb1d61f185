"""Training data and the training loop, at toy scale on the CPU."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
from scipy import ndimage
import pytest
import torch

from traice.core.errors import InputError
from traice.nn.checkpoints import load_model
from traice.synth.traces import trace_fields
from traice.nn.checkpoints import load_prompted
from traice.training.loop import train
from traice.training.recipes import TrainConfig, training_sources
from traice.core.intensity import compress, expand
from traice.core.maps import OFFSET_SCALE_UM
from traice.training.data import (NO_AUGMENT, Augment, Volume, as_if_coarser, augment_pair, branch_window, cells_window,
                                  _source_name, crop_box, flip_turn, load_volumes, magnified, read_padded, soma_window,
                                  source_params)

from conftest import SHARED_DATA

TINY = TrainConfig(embed_dim=8, depths=(1, 1, 1, 1), window=(16, 64, 64), batch_size=2, steps=4, warmup=2,
                   eval_every=2, checkpoint_every=1, val_windows=2, threads=2)
SOURCES = {"train": [("synthetic", {"seed": 5, "shape": [16, 128, 128], "cells": 4})],
           "val": [("synthetic", {"seed": 6, "shape": [16, 128, 128], "cells": 4})]}


def _volume() -> Volume:
    somas = np.zeros((20, 100, 100), np.uint16)
    somas[8:12, 40:50, 60:70] = 1
    return Volume(somas.astype(np.float16), somas, somas, np.array([[10, 45, 65]], np.float32), "toy", (1.25, 0.4, 0.4))


def _two_cells() -> Volume:
    """Two cells: a soma block and a process each; cell 2's process runs next to cell 1's soma."""
    cells = np.zeros((20, 120, 120), np.uint16)
    cells[8:12, 30:40, 30:40] = 1
    cells[10, 40:70, 35] = 1           # cell 1's process
    cells[8:12, 80:90, 80:90] = 2
    cells[10, 35, 40:80] = 2           # cell 2's process
    image = (cells > 0).astype(np.float16)
    return Volume(image, cells, cells * 0, np.array([[10, 35, 35], [10, 85, 85]], np.float32), "two", (1.25, 0.4, 0.4))


def test_read_padded_fills_outside():
    a = np.arange(24).reshape(2, 3, 4)
    out = read_padded(a, np.array([-1, 0, 2]), np.array([1, 2, 6]), fill=-1)
    assert out.shape == (2, 2, 4)
    assert (out[0] == -1).all() and (out[1, :, :2] == a[0, :2, 2:]).all() and (out[1, :, 2:] == -1).all()


def test_crops_biased_to_cells_contain_the_soma():
    rng = np.random.default_rng(0)
    vol = _volume()
    for _ in range(20):
        start, stop = crop_box(vol, (16, 64, 64), rng, cell_bias=1.0)
        assert np.all(start <= vol.centres[0]) and np.all(vol.centres[0] < stop)


def test_hard_negative_windows_go_to_bright_things_that_are_no_cell():
    """A punctum and a macrophage-sized blob away from the cells are found once each (a speck is not, nor is the
    bright cell); with distractor_bias 1 every window holds one of them, with 0 the draws are as before."""
    from traice.training.data import bright_outside_cells

    vol = _two_cells()
    image = vol.image.astype(np.float32) * 3.0  # the cells are bright too
    image[8:12, 100:104, 10:14] = 3.0           # a soma-sized punctum (64 voxels)
    image[6:14, 5:25, 90:110] = 4.0             # a process-free macrophage
    image[10, 60, 100] = 5.0                    # one bright voxel: noise, not a thing
    vol.image = image.astype(np.float16)
    found = bright_outside_cells(vol)
    np.testing.assert_allclose(sorted(found.tolist()), [[9.5, 14.5, 99.5], [9.5, 101.5, 11.5]])
    vol.distractors = found
    rng = np.random.default_rng(0)
    for _ in range(20):
        start, stop = crop_box(vol, (16, 64, 64), rng, cell_bias=1.0, distractor_bias=1.0)
        assert any(np.all(start <= p) and np.all(p < stop) for p in found)
    plain = dataclasses.replace(vol, distractors=np.zeros((0, 3), np.float32))
    for seed in range(5):  # bias 0, or no distractors: the windows (and draws) of a volume without them
        for volume, bias in ((vol, 0.0), (plain, 0.3)):
            np.testing.assert_array_equal(crop_box(volume, (16, 64, 64), np.random.default_rng(seed), 0.7, distractor_bias=bias),
                                          crop_box(plain, (16, 64, 64), np.random.default_rng(seed), 0.7))


def test_faint_hard_negatives_lie_on_faint_things_away_from_the_cells():
    """A faint vessel (1.2 noise sigmas is the floor; it lies at about 2) away from the cells gives up to four points,
    each on it; a bright punctum is left to bright_outside_cells, a faint speck smaller than a soma is not a thing,
    and nothing is taken near a cell, however faint."""
    from traice.training.data import bright_outside_cells, cell_clearance, faint_outside_cells

    vol = _two_cells()
    image = vol.image.astype(np.float32) * 3.0
    image[7:13, 100:112, 5:115] = 0.6          # a faint vessel, 2.4 x 4.8 x 44 µm
    image[8:12, 60:70, 100:110] = 3.0          # a bright punctum, soma-sized
    image[2:4, 10:14, 100:104] = 0.6           # a faint speck, 2.5 x 1.6 x 1.6 µm
    image[12:16, 42:50, 40:60] = 0.6           # faint, but within 4 µm of cell 1's process
    vol.image = image.astype(np.float16)
    clearance = cell_clearance(vol)
    found = faint_outside_cells(vol, clearance=clearance)
    assert len(found) == 4
    for z, y, x in found.astype(int):
        assert 7 <= z < 13 and 100 <= y < 112 and 5 <= x < 115, (z, y, x)
    assert len(faint_outside_cells(vol, per_thing=2)) == 2
    np.testing.assert_allclose(bright_outside_cells(vol, clearance=clearance), bright_outside_cells(vol))
    with pytest.raises(ValueError, match="faint_distractors"):
        TrainConfig(task="soma", faint_distractors=True)


def _ball(shape, centre, radius_um, spacing=(1.25, 0.4, 0.4)) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius_um**2


def test_balanced_somas_weigh_small_somas_and_soma_sized_puncta_as_a_large_soma():
    """A 5 µm soma's voxels weigh 1, a 3 µm soma's (5/3)^3 (so each soma weighs about the same), a soma-sized
    punctum away from the cells the most (5, the cap); a bright thing beside a cell, a speck, the processes and the
    background weigh 1. A window asked for balanced somas has them, others have none."""
    from traice.training.data import BALANCE_MAX_WEIGHT, soma_weight

    shape = (24, 160, 160)
    big, small = _ball(shape, (12, 40, 40), 5.0), _ball(shape, (12, 40, 120), 3.0)
    punctum = _ball(shape, (12, 120, 120), 2.5)
    labels = np.zeros(shape, np.uint16)
    labels[big] = 1
    labels[small] = 2
    labels[12, 40:120, 40] = 1                  # cell 1's process, bright as its soma
    image = np.where(labels > 0, 3.0, 0.1).astype(np.float32)
    image[punctum] = 3.0
    image[11:14, 38:43, 53:56] = 3.0            # beside cell 1's soma, 0.2-1.2 µm from it
    image[3, 5, 5] = 5.0                        # one bright voxel: noise
    weight = soma_weight(image, labels, big | small, (1.25, 0.4, 0.4))
    assert weight.dtype == np.float32 and weight.shape == shape
    assert np.allclose(weight[big], 1.0, rtol=0.02)  # a ball on voxels: a little under 5 µm
    assert np.allclose(weight[small], (5 / 3) ** 3, rtol=0.15)
    assert np.allclose(weight[punctum], BALANCE_MAX_WEIGHT)
    rest = ~(big | small | punctum)
    assert np.all(weight[rest] == 1.0)           # the process, the thing beside the cell, the speck, the background
    vol = Volume(image.astype(np.float16), labels, (big | small).astype(np.uint16),
                 np.array([[12, 40, 40], [12, 40, 120]], np.float32), "balanced", (1.25, 0.4, 0.4))
    rng = np.random.default_rng(0)
    window = cells_window(vol, (16, 64, 64), rng, NO_AUGMENT, balanced_somas=True)
    assert window.soma_weight.shape == window.soma.shape and window.soma_weight.min() >= 1.0
    assert cells_window(vol, (16, 64, 64), rng, NO_AUGMENT).soma_weight is None
    with pytest.raises(ValueError, match="balanced_somas"):
        TrainConfig(task="branch", balanced_somas=True)
    with pytest.raises(ValueError, match="faint_distractors: needs distractor_bias"):
        TrainConfig(task="cells", faint_distractors=True)


def test_augmentation_moves_image_and_target_together():
    rng = np.random.default_rng(1)
    geometry_only = dataclasses.replace(NO_AUGMENT, flips=True, quarter_turns=True)
    for _ in range(10):
        image, target = soma_window(_volume(), (16, 64, 64), rng, dataclasses.replace(geometry_only, affine_p=1.0, rotate_deg=10))
        assert image.dtype == np.float32 and target.shape == (16, 64, 64)
        assert target.sum() > 0
        assert np.mean((image > 0.5) == (target > 0.5)) > 0.99  # rotation resamples the border voxels only
    image, target = augment_pair(np.ones((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.float32), rng, Augment())
    assert not np.allclose(image, 1.0) and (target == 0).all()  # intensity changes touch the image only


def test_a_window_seen_on_coarser_voxels_has_a_wider_line_the_same_signal_and_the_same_noise():
    """A one-voxel-thin line along x on the grid, seen as on 2x coarser voxels: wider in y (the coarser voxels
    cover more of it), about the same summed signal, background noise of about one sigma; factor 1 is the
    window itself."""
    rng = np.random.default_rng(0)
    noise_units = np.zeros((16, 64, 64), np.float32)
    noise_units[8, 32, :] = 30.0
    grid = compress(noise_units)
    np.testing.assert_allclose(as_if_coarser(grid, (1, 1, 1), rng), grid, atol=1e-5)

    seen = as_if_coarser(grid, (2.0, 2.0, 2.0), rng)
    assert seen.shape == grid.shape and seen.dtype == np.float32
    signal = expand(seen)
    profile = signal[6:11, :, 8:56].sum(axis=(0, 2))  # across the line, summed over z and x
    assert (profile > profile.max() / 4).sum() >= 3  # the grid's line is one voxel wide at any height
    assert 0.75 < profile[26:39].sum() / noise_units[6:11, :, 8:56].sum() < 1.25
    background = signal[:, :16]
    assert 0.8 < background.std() < 1.25  # one noise sigma, as on the grid; the texture mended as inference does
    with pytest.raises(ValueError, match="coarser_p"):
        TrainConfig(task="branch", coarser_p=0.5)


def test_cells_windows_on_coarser_voxels_keep_their_targets_on_the_grid():
    rng = np.random.default_rng(2)
    always = dataclasses.replace(NO_AUGMENT, coarser_p=1.0)
    plain = cells_window(_two_cells(), (16, 64, 64), np.random.default_rng(2), NO_AUGMENT)
    seen = cells_window(_two_cells(), (16, 64, 64), rng, always)
    np.testing.assert_array_equal(seen.foreground, plain.foreground)  # the same window, its targets untouched
    assert not np.allclose(seen.image, plain.image)


@pytest.mark.parametrize("crop", [(13, 51, 51), (20, 80, 80)])
def test_a_magnified_window_scales_the_cells_and_keeps_one_sigma_of_noise(crop):
    """A crop of white noise (one sigma) with a bright ball, resized onto a 16 x 64 x 64 window (about 1.25x
    larger, or 0.8x): the ball's soma target and its image scale with the window, the soma centre lands on the
    ball, and the background noise is one sigma in every voxel (enlarged: the interpolation's smoothing mended;
    shrunk: the averaging's gain given back phase by phase)."""
    rng = np.random.default_rng(3)
    window = (16, 64, 64)
    noise_units = rng.standard_normal(crop).astype(np.float32)
    zz, yy, xx = np.indices(crop)
    centre = (np.asarray(crop) - 1) / 2
    ball = ((zz - centre[0]) * 1.25) ** 2 + ((yy - centre[1]) * 0.4) ** 2 + ((xx - centre[2]) * 0.4) ** 2 <= 4.0 ** 2
    noise_units[ball] += 40.0
    labels = ball.astype(np.uint16)
    image, labels_out, somas, centres = magnified(compress(noise_units), labels, ball, centre[None], window, rng)
    assert image.shape == labels_out.shape == somas.shape == window and image.dtype == np.float32
    scale = np.prod(window) / np.prod(crop)
    assert abs(somas.sum() / (ball.sum() * scale) - 1) < 0.1  # the soma's volume in window voxels scales
    np.testing.assert_allclose(centres[0], (np.asarray(window) - 1) / 2, atol=0.5)
    np.testing.assert_allclose(ndimage.center_of_mass(somas), centres[0], atol=0.5)
    signal = expand(image)
    assert signal[somas].mean() > 30.0  # as bright as it was: the same tissue, larger or smaller
    background = signal[:, :, :12]
    for axis in range(3):  # by phase along each axis: no voxel quieter or noisier than one sigma
        per_plane = background.std(axis=tuple(a for a in range(3) if a != axis))
        assert np.all(np.abs(per_plane - 1.0) < 0.2), (axis, per_plane.min(), per_plane.max())
    assert 0.93 < background.std() < 1.07


def test_cells_windows_magnified_point_each_cell_at_its_own_soma():
    """Magnified or shrunk, every foreground voxel's offset still points into its own cell's soma block (the
    soma centres move with the labels), and the soma blocks are seen larger in some windows."""
    rng = np.random.default_rng(4)
    always = dataclasses.replace(NO_AUGMENT, magnify_p=1.0)
    volume = _two_cells()
    sizes = []
    for _ in range(8):
        w = cells_window(volume, (16, 64, 64), rng, always, cell_bias=1.0)
        assert w.image.shape == w.foreground.shape == w.offsets.shape[1:] == (16, 64, 64)
        voxels = np.argwhere(w.foreground > 0)
        target = voxels + w.offsets[:, w.foreground > 0].T * OFFSET_SCALE_UM / np.asarray(volume.spacing)
        inside = np.all((target >= 0) & (target <= np.asarray(w.foreground.shape) - 1), axis=1)
        hit = w.foreground[tuple(np.rint(target[inside]).astype(int).T)] > 0
        assert inside.any() and hit.mean() > 0.95
        blocks = ndimage.find_objects(ndimage.label(ndimage.binary_opening(w.foreground > 0, np.ones((1, 3, 3))))[0])
        sizes += [b[1].stop - b[1].start for b in blocks]
    assert max(sizes) >= 12  # a 10-voxel soma block seen larger (shrinking: the test above)
    with pytest.raises(ValueError, match="magnify_p"):
        TrainConfig(task="soma", magnify_p=0.5)


def test_training_sources_split_and_folds(tmp_path):
    for name in ("a", "b", "c", "d", "e", "f", "g"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cell.swc").write_text("1 1 0 0 0 5 -1\n")
    fixed = training_sources(tmp_path, synthetic=5)
    folders = lambda srcs: {s[1]["folder"] for s in srcs if s[0] == "traces"}  # noqa: E731
    assert folders(fixed["val"]) == {str(tmp_path / "a"), str(tmp_path / "g")}
    assert str(tmp_path / "d") not in folders(fixed["train"]) | folders(fixed["val"])  # test field: never used
    assert sum(s[0] == "synthetic" for s in fixed["val"]) == 1
    folds = [training_sources(tmp_path, folds=2, fold=k) for k in (0, 1)]
    assert folders(folds[0]["val"]) | folders(folds[1]["val"]) == folders(fixed["train"])
    assert not folders(folds[0]["val"]) & folders(folds[1]["val"])
    with pytest.raises(ValueError, match="fold 2"):
        training_sources(tmp_path, folds=2, fold=2)
    sized = training_sources(tmp_path, synthetic=5, traced_soma_radius_um=[3, 6])
    for part in ("train", "val"):  # validation sees the soma sizes training does
        traced = [s[1] for s in sized[part] if s[0] == "traces"]
        assert traced and all(s["traced_soma_radius_um"] == [3.0, 6.0] for s in traced), part
    assert all("traced_soma_radius_um" not in s[1] for s in sized["val"] if s[0] == "synthetic")
    assert all("traced_soma_radius_um" not in s[1] for s in fixed["train"] + fixed["val"])
    for bad in ([6, 3], [0, 4], [3]):
        with pytest.raises(InputError, match="traced soma radius"):
            training_sources(tmp_path, traced_soma_radius_um=bad)
    punctate = training_sources(tmp_path, synthetic=5, soma_sized_puncta=0.5, regimes=["confocal", "random"])
    for part in ("train", "val"):  # every rendering, traced and synthetic, validation too
        assert all(s[1]["large_puncta_fraction"] == 0.5 for s in punctate[part]), part
    assert all("large_puncta_fraction" not in s[1] for s in fixed["train"] + fixed["val"])
    assert {_source_name(*s) for s in punctate["train"]}.isdisjoint(_source_name(*s) for s in fixed["train"])  # own cache
    traced = next(s[1] for s in punctate["train"] if s[0] == "traces")
    assert source_params({k: v for k, v in traced.items() if k != "folder"}).large_puncta_fraction == 0.5
    for bad in (-0.1, 1.5):
        with pytest.raises(InputError, match="soma-sized puncta"):
            training_sources(tmp_path, soma_sized_puncta=bad)


def test_train_logs_saves_and_resumes_to_the_same_weights(tmp_path, float32_cpu):
    """Bitwise in float32; CPU bf16 kernels are not bitwise reproducible from run to run (docs/arbors.md)."""
    cache = tmp_path / "cache"
    straight = train(TINY, SOURCES, tmp_path / "straight", cache, progress=False)
    assert straight["steps"] == 4
    rows = list(csv.DictReader(open(tmp_path / "straight" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4] and all(float(r["loss"]) > 0 for r in rows)
    # a run stopped after 2 steps, then resumed to 4, ends where the straight run ends
    train(dataclasses.replace(TINY, steps=2), SOURCES, tmp_path / "resumed", cache, progress=False)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    train(TINY, SOURCES, tmp_path / "resumed", cache, progress=False)
    a, b = load_model(tmp_path / "straight" / "model.pt"), load_model(tmp_path / "resumed" / "model.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    x = torch.randn(1, 1, 16, 64, 64)
    assert a(x).shape == (1, 1, 16, 64, 64)


def test_rendered_traces_load_as_volumes(tmp_path):
    fields = SHARED_DATA / "morphomics_kxa"
    if not fields.exists():
        pytest.skip(f"real tracings not found at {fields}")
    folder = trace_fields(fields)[0]
    (vol,) = load_volumes([("traces", {"folder": str(folder), "seed": 0})], tmp_path)
    assert vol.image.shape == vol.somas.shape and len(vol.centres) == vol.cells.max()
    inside = vol.somas[tuple(np.rint(vol.centres).astype(int).T)]
    assert np.mean(inside > 0) > 0.9  # soma centres lie in their soma label


def test_flip_turn_moves_the_point_with_the_arrays():
    rng = np.random.default_rng(0)
    for _ in range(20):
        shape = (6, 10, 14)
        point = rng.integers(0, shape).astype(np.float32)
        marker = np.zeros(shape, np.float32)
        marker[tuple(point.astype(int))] = 1
        (moved,), new = flip_turn([marker], point, rng, Augment())
        assert tuple(np.argwhere(moved == 1)[0]) == tuple(new.astype(int))


def test_branch_window_targets_the_prompted_cell_only():
    vol = _two_cells()
    rng = np.random.default_rng(1)
    w = branch_window(vol, (8, 32, 32), (1, 2, 2), rng, NO_AUGMENT, shift=0.0, cell=0)
    assert w.image.shape == w.target.shape == w.weight.shape == (8, 32, 32)
    # the soma (10, 35, 35) in the coarse grid of a window starting at (6, 3, 3): ((10-6), (35-3-0.5)/2, ...)
    np.testing.assert_allclose(w.point, [4.0, 15.75, 15.75])
    assert w.target[4, 16, 16] == 1.0
    assert w.image[4, 16, 19:].sum() > 0 and w.target[4, 16, 19:].sum() == 0  # cell 2's process: image, not target
    assert w.weight[tuple(np.rint(w.point).astype(int))] < 1.1 and w.weight.max() <= 3.0
    for _ in range(10):  # shifted and augmented, the prompt still sits on its soma
        w = branch_window(vol, (8, 32, 32), (1, 2, 2), rng, Augment(affine_p=0.0), shift=0.125, cell=1)
        assert w.target[tuple(np.rint(w.point).astype(int))] == 1.0


def test_train_branch_from_stage1_weights(tmp_path):
    stage1 = tmp_path / "stage1"
    train(TINY, SOURCES, stage1, tmp_path / "cache", progress=False)
    cfg = dataclasses.replace(TINY, task="branch", init=str(stage1 / "model.pt"), window=(16, 64, 64),
                              input_step=(1, 2, 2), steps=2, batch_size=1)
    summary = train(cfg, SOURCES, tmp_path / "branch", tmp_path / "cache", progress=False)
    model = load_prompted(tmp_path / "branch" / "model.pt")
    assert summary["model"]["input_step"] == [1, 2, 2] and model.input_step == (1, 2, 2) and model.use_rcam
    assert model(torch.zeros(1, 1, 16, 64, 64), torch.tensor([[[8.0, 32.0, 32.0]]])).shape == (1, 1, 16, 64, 64)
    ablation = train(dataclasses.replace(cfg, rcam=False), SOURCES, tmp_path / "plain", tmp_path / "cache", progress=False)
    assert ablation["model"]["rcam"] is False


def test_cells_window_offsets_follow_flips_and_turns():
    """After any flip and quarter turn, every foreground voxel plus its offset lands on its own soma,
    found in the augmented window as the centre of that cell's soma block."""
    from traice.core.maps import OFFSET_SCALE_UM
    from traice.training.data import cells_window

    volume = _two_cells()
    volume.somas[:] = 0
    volume.somas[8:13, 30:41, 30:41] = 1  # soma blocks centred on the cells' centres
    volume.somas[8:13, 80:91, 80:91] = 2
    volume.centres[:] = [[10, 35, 35], [10, 85, 85]]
    geometry_only = dataclasses.replace(NO_AUGMENT, flips=True, quarter_turns=True)
    rng = np.random.default_rng(3)
    spacing = np.asarray(volume.spacing)[:, None]
    checked = 0
    for _ in range(12):
        w = cells_window(volume, (16, 64, 64), rng, geometry_only, cell_bias=1.0)
        fg = w.foreground > 0
        assert fg.any() and w.offsets.shape == (3, 16, 64, 64)
        votes = np.argwhere(fg).T + w.offsets[:, fg] * OFFSET_SCALE_UM / spacing
        somas = np.argwhere(w.soma > 0)
        centroid = somas.mean(0) if len(somas) else None
        # all votes land on at most two points, one of which is the centroid of the soma voxels in view
        points = np.unique(np.round(votes.T, 3), axis=0)
        assert len(points) <= 2
        if centroid is not None and len(points) == 1 and len(somas) == 5 * 11 * 11:  # one whole soma in view
            np.testing.assert_allclose(points[0], centroid, atol=1e-3)
            checked += 1
        assert (w.weight[fg] >= 1).all() and (w.weight[~fg] == 1).all()
    assert checked >= 3


def test_cells_init_from_a_one_pass_network_trains_it_further(tmp_path):
    """``cells --init`` with a one-pass network starts from all its weights, head included; another window is refused."""
    from traice.nn.checkpoints import save_model
    from traice.nn.prompted import stage1_config
    from traice.training.recipes import build, cells_from_stage1
    from traice.nn.unet import TransformerUNet3d

    stage1 = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64))
    one_pass, config = cells_from_stage1(stage1, (16, 64, 64))
    with torch.no_grad():
        one_pass.head.weight.normal_()  # unlike any head cells_from_stage1 would build
    save_model(one_pass, config, tmp_path / "cells.pt")
    model, rebuilt = build(TrainConfig(task="cells", init=str(tmp_path / "cells.pt"), window=(16, 64, 64)))
    assert rebuilt == stage1_config(one_pass)
    for name, value in one_pass.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    with pytest.raises(ValueError, match="window"):
        build(TrainConfig(task="cells", init=str(tmp_path / "cells.pt"), window=(16, 32, 32)))


def test_cells_without_full_resolution_keeps_every_other_weight(tmp_path):
    """``cells --no-full-resolution`` from a one-pass network: the encoder, the coarser decoder steps and
    the strided stem blocks keep their weights (the first strided block now reads the image: its
    convolutions over the input start afresh); the checkpoint rebuilds the same network."""
    from traice.nn.checkpoints import load_model, save_model
    from traice.nn.prompted import stage1_config
    from traice.training.recipes import build, without_full_resolution
    from traice.nn.unet import TransformerUNet3d

    torch.manual_seed(0)
    one_pass = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64), out_channels=5)
    save_model(one_pass, stage1_config(one_pass), tmp_path / "cells.pt")
    model, config = build(TrainConfig(task="cells", init=str(tmp_path / "cells.pt"), window=(16, 64, 64),
                                      full_resolution=False))
    assert not model.full_resolution and config["full_resolution"] is False and stage1_config(model) == config
    old, new = one_pass.state_dict(), model.state_dict()
    fresh = {k for k in new if k.startswith(("stem.0.conv1.", "stem.0.skip.0.", "head."))}
    for name, value in new.items():
        source = name.replace("stem.1.", "stem.2.").replace("stem.0.", "stem.1.") if name.startswith("stem.") else name
        if name in fresh:
            assert value.shape != old[source].shape or not torch.equal(value, old[source]), name
        else:
            assert torch.equal(value, old[source]), name
    assert torch.equal(model.head.bias, one_pass.head.bias.repeat_interleave(4))  # each sub-voxel: the old bias
    assert model(torch.randn(1, 1, 16, 64, 64)).shape == (1, 5, 16, 64, 64)
    save_model(model, config, tmp_path / "slim.pt")
    again = load_model(tmp_path / "slim.pt")
    assert not again.full_resolution and all(torch.equal(v, new[k]) for k, v in again.state_dict().items())
    with pytest.raises(ValueError, match="cells task only"):
        TrainConfig(task="soma", full_resolution=False)
    assert without_full_resolution(one_pass)[1] == config


def test_train_cells_without_full_resolution_fits_the_head_then_trains(tmp_path, float32_cpu):
    """``train`` with ``full_resolution=False`` from a one-pass network: the new head is fitted on training
    windows before the first step (not the 1 % start), the run trains, taught by the full network
    (``teacher``: its distillation term is logged), and saves the slimmer network."""
    from traice.nn.checkpoints import save_model
    from traice.nn.prompted import stage1_config
    from traice.nn.unet import TransformerUNet3d

    torch.manual_seed(0)
    one_pass = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64), out_channels=5)
    save_model(one_pass, stage1_config(one_pass), tmp_path / "cells.pt")
    cfg = dataclasses.replace(TINY, task="cells", init=str(tmp_path / "cells.pt"), full_resolution=False, steps=2,
                              lr=0.0, teacher=str(tmp_path / "cells.pt"))  # lr 0: the saved head is the fitted one
    summary = train(cfg, SOURCES, tmp_path / "slim", tmp_path / "cache", progress=False)
    assert summary["model"]["full_resolution"] is False
    rows = list(csv.DictReader(open(tmp_path / "slim" / "metrics.csv")))
    assert rows and all(float(r["distill"]) > 0 for r in rows)
    soma_only = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64))
    save_model(soma_only, stage1_config(soma_only), tmp_path / "soma.pt")
    with pytest.raises(ValueError, match="not a one-pass network"):  # before any volume is loaded
        train(dataclasses.replace(cfg, teacher=str(tmp_path / "soma.pt")), SOURCES, tmp_path / "other",
              tmp_path / "no-cache", progress=False)
    assert not (tmp_path / "no-cache").exists()
    model = load_model(tmp_path / "slim" / "model.pt")
    unfitted = one_pass.head.bias.repeat_interleave(4)
    assert not model.full_resolution and not torch.allclose(model.head.bias, unfitted)
    assert model.head.weight.abs().max() > 0.01 * one_pass.head.weight.abs().max()


def test_train_cells_with_balanced_somas_and_faint_hard_negatives(tmp_path, float32_cpu):
    """The loop takes the balanced soma weights into the soma loss, with the hard-negative windows on bright and
    faint things: the same two steps (same windows, same start) log other soma terms than without them, and the
    foreground's the same at the first step."""
    from traice.nn.checkpoints import save_model
    from traice.nn.prompted import stage1_config
    from traice.nn.unet import TransformerUNet3d

    one_pass = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64), out_channels=5)
    save_model(one_pass, stage1_config(one_pass), tmp_path / "cells.pt")
    cfg = dataclasses.replace(TINY, task="cells", init=str(tmp_path / "cells.pt"), steps=2, balanced_somas=True,
                              distractor_bias=0.5, faint_distractors=True)
    summary = train(dataclasses.replace(cfg, eval_every=1), SOURCES, tmp_path / "balanced", tmp_path / "cache",
                    progress=False)
    assert summary["steps"] == 2 and summary["config"]["balanced_somas"] is True
    train(dataclasses.replace(cfg, eval_every=1, balanced_somas=False), SOURCES, tmp_path / "plain", tmp_path / "cache",
          progress=False)
    balanced, plain = (list(csv.DictReader(open(tmp_path / run / "metrics.csv"))) for run in ("balanced", "plain"))
    assert len(balanced) == len(plain) == 2
    assert float(balanced[0]["fg_dice"]) == float(plain[0]["fg_dice"])  # the same windows and the same network
    assert float(balanced[0]["soma_focal"]) != float(plain[0]["soma_focal"])


def test_fit_head_recovers_a_head_the_features_can_give():
    """The least-squares head of a network without full resolution reproduces a teacher whose logits are
    a linear readout of the same features (the same network with another head), sub-voxels included."""
    import copy

    from traice.nn.unet import TransformerUNet3d
    from traice.training.recipes import fit_head

    torch.manual_seed(1)
    teacher = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64), out_channels=5,
                                full_resolution=False)
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.head.weight.normal_()
        student.head.bias.normal_()
    images = [torch.randn(2, 1, 16, 64, 64) for _ in range(2)]
    assert not torch.allclose(student(images[0]), teacher(images[0]), atol=0.1)
    student.train()
    fit_head(student, teacher, images)
    assert student.training and teacher.training  # modes restored
    with torch.no_grad():
        x = torch.randn(1, 1, 16, 64, 64)
        np.testing.assert_allclose(student.eval()(x).numpy(), teacher.eval()(x).numpy(), atol=1e-3)


def test_train_ownership_network_takes_the_one_pass_foreground(tmp_path):
    """``--foreground``: a stage-2 network (widened to two inputs) learns from image + foreground; the
    foreground of each volume is the one-pass network's, cached by volume and weights."""
    from traice.nn.checkpoints import save_model
    from traice.nn.prompted import PromptedUNet3d, stage1_config
    from traice.nn.unet import TransformerUNet3d

    torch.manual_seed(0)
    one_pass = TransformerUNet3d(embed_dim=8, depths=(1, 1, 1, 1), window=(16, 64, 64), out_channels=5)
    save_model(one_pass, stage1_config(one_pass), tmp_path / "one_pass.pt")
    stage2 = PromptedUNet3d(embed_dim=16, depths=(1, 1, 1, 1), window=(16, 64, 64), input_step=(1, 2, 2))
    save_model(stage2, stage2.config(), tmp_path / "stage2.pt")
    owner = dataclasses.replace(TINY, task="branch", init=str(tmp_path / "stage2.pt"), input_step=(1, 2, 2), steps=2,
                                batch_size=1, foreground=str(tmp_path / "one_pass.pt"))
    summary = train(owner, SOURCES, tmp_path / "owner", tmp_path / "cache", progress=False)
    model = load_prompted(tmp_path / "owner" / "model.pt")
    assert summary["model"]["in_channels"] == 2 and model.in_channels == 2
    assert len(list((tmp_path / "cache").glob("*.foreground-*.npy"))) == 2  # one training, one validation volume
    out = model(torch.zeros(1, 2, 16, 64, 64), torch.tensor([[[8.0, 32.0, 32.0]]]))
    assert out.shape == (1, 1, 16, 64, 64) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="window"):  # a stage-2 network of another window does not train on
        train(dataclasses.replace(owner, window=(16, 128, 128)), SOURCES, tmp_path / "other", tmp_path / "cache",
              progress=False)


def test_foreground_option_refuses_what_is_not_a_one_pass_network_before_training(tmp_path):
    from traice.cli import main
    from traice.weights import shipped_weights

    with pytest.raises(SystemExit, match="error: --foreground .*not a one-pass network \\(1 output"):
        main(["train", "branch", str(tmp_path / "out"), "--synthetic", "1", "--foreground", str(shipped_weights("soma"))])
    with pytest.raises(SystemExit, match="error: --foreground: only the branch task"):
        main(["train", "soma", str(tmp_path / "out"), "--synthetic", "1", "--foreground", "shipped"])
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so --device cuda is no error")
def test_a_gpu_this_machine_lacks_stops_training_with_one_line_before_any_data(tmp_path):
    from traice.cli import main

    with pytest.raises(SystemExit, match="^error: --device cuda: this machine has no usable CUDA GPU; use auto or cpu$"):
        main(["train", "cells", str(tmp_path / "out"), "--synthetic", "1", "--device", "cuda"])
    with pytest.raises(SystemExit, match="^error: --device cuda: this machine has no usable CUDA GPU"):
        main(["finetune", str(tmp_path / "im.ome.zarr"), str(tmp_path / "p.csv"), str(tmp_path / "a.pt"),
              "--device", "cuda"])
    assert not list(tmp_path.iterdir())


def test_an_option_the_task_does_not_take_stops_with_one_line_before_training(tmp_path):
    from traice.cli import main

    with pytest.raises(SystemExit, match="^error: faint_distractors: for the cells task only$"):
        main(["train", "soma", str(tmp_path / "out"), "--synthetic", "1", "--faint-distractors"])
    with pytest.raises(SystemExit, match="^error: coarser_p 0.5: .*for the soma and cells tasks only$"):
        main(["train", "branch", str(tmp_path / "out"), "--synthetic", "1", "--coarser", "0.5"])
    with pytest.raises(SystemExit, match="^error: soma-sized puncta 2.0: expected a share in \\[0, 1\\]$"):
        main(["train", "cells", str(tmp_path / "out"), "--synthetic", "1", "--soma-sized-puncta", "2"])
    assert not (tmp_path / "out").exists()
