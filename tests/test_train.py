"""Training data and the training loop, at toy scale on the CPU."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from traice.infer import load_model
from traice.synth.traces import trace_fields
from traice.train import TrainConfig, train, training_sources
from traice.trainset import NO_AUGMENT, Augment, Volume, augment_pair, crop_box, load_volumes, read_padded, soma_window

from conftest import SHARED_DATA

TINY = TrainConfig(embed_dim=8, depths=(1, 1, 1, 1), window=(16, 64, 64), batch_size=2, steps=4, warmup=2,
                   eval_every=2, checkpoint_every=1, val_windows=2, threads=2)
SOURCES = {"train": [("synthetic", {"seed": 5, "shape": [16, 128, 128], "cells": 4})],
           "val": [("synthetic", {"seed": 6, "shape": [16, 128, 128], "cells": 4})]}


def _volume() -> Volume:
    somas = np.zeros((20, 100, 100), np.uint16)
    somas[8:12, 40:50, 60:70] = 1
    return Volume(somas.astype(np.float16), somas, somas, np.array([[10, 45, 65]], np.float32), "toy")


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


def test_train_logs_saves_and_resumes_to_the_same_weights(tmp_path):
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
