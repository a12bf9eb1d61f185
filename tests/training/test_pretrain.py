"""Denoising pretraining: corruption, unlabelled image blocks, the loss, and pretrained weights starting stage 1."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from traice.cli import main
from traice.nn.checkpoints import load_model
from traice.nn.losses import DenoisingLoss
from traice.nn.unet import TransformerUNet3d
from traice.training.data import Corruption, corrupt, image_blocks, pretrain_window
from traice.training.loop import train
from traice.training.recipes import from_pretrained

from test_train import SOURCES, TINY, _volume

PRETRAIN = dataclasses.replace(TINY, task="pretrain")


def test_corruption_blurs_adds_noise_and_masks_whole_patches():
    clean = np.zeros((16, 64, 64), np.float32)
    clean[6:10, 20:40, 20:40] = 3.0
    rng = np.random.default_rng(0)
    masked = corrupt(clean, rng, Corruption(noise=(0.0, 0.0), blur=(0.0, 0.0), mask_share=0.5))
    # a patch is either untouched or all background
    blocks = masked.reshape(8, 2, 8, 8, 8, 8).transpose(0, 2, 4, 1, 3, 5).reshape(512, -1)
    source = clean.reshape(8, 2, 8, 8, 8, 8).transpose(0, 2, 4, 1, 3, 5).reshape(512, -1)
    zeroed = (blocks == 0).all(axis=1) & (source != 0).any(axis=1)
    kept = (blocks == source).all(axis=1)
    assert (zeroed | kept).all() and zeroed.any() and kept[(source != 0).any(axis=1)].any()
    noisy = corrupt(clean, rng, Corruption(noise=(0.5, 0.5), blur=(0.0, 0.0), mask_share=0.0))
    assert np.std(noisy - clean) == pytest.approx(0.5, rel=0.05)
    blurred = corrupt(clean, rng, Corruption(noise=(0.0, 0.0), blur=(1.5, 1.5), mask_share=0.0))
    assert blurred.max() < 3.0 and blurred.sum() == pytest.approx(clean.sum(), rel=1e-3)


def test_pretrain_windows_prefer_signal_and_keep_the_clean_target():
    volume = _volume()  # one soma in a 20 x 100 x 100 volume
    rng = np.random.default_rng(1)
    chosen = np.mean([pretrain_window(volume, (8, 32, 32), rng)[1].any() for _ in range(200)])
    uniform = np.mean([volume.image[z:z + 8, y:y + 32, x:x + 32].any()
                       for z, y, x in rng.integers(0, [13, 69, 69], size=(400, 3))])
    assert chosen > 2 * uniform  # the brightest of four draws: about 1 - (1 - p)^4 of windows hold the soma
    corrupted, clean = pretrain_window(volume, (8, 32, 32), rng)
    assert corrupted.shape == clean.shape == (8, 32, 32) and not np.array_equal(corrupted, clean)


def test_denoising_loss_is_zero_for_the_clean_window_and_grows_with_noise():
    clean = torch.zeros(1, 1, 16, 32, 32)
    clean[:, :, 6:10, 10:20, 10:20] = 3.0
    loss = DenoisingLoss()
    assert float(loss(clean, clean)) == pytest.approx(0.0, abs=1e-5)
    a = float(loss(clean + 0.1 * torch.randn_like(clean), clean))
    b = float(loss(clean + 0.5 * torch.randn_like(clean), clean))
    assert 0 < a < b
    terms = loss.terms(clean + 0.5, clean)
    assert float(terms["mse"]) == pytest.approx(0.25) and float(loss.combine(terms)) == pytest.approx(
        0.25 + 10 * float(terms["ssim"]))


def test_image_blocks_spread_over_a_user_image_and_split_train_from_val(write_image):
    data = np.random.default_rng(0).poisson(30, (64, 1100, 1100)).astype(np.uint16)  # 2 x 3 x 3 blocks
    path = write_image(data)
    train_blocks, val_blocks = image_blocks(path, part="train"), image_blocks(path, part="val")
    assert len(train_blocks) + len(val_blocks) == 16 and len(val_blocks) == 4
    assert {v.name for v in train_blocks}.isdisjoint(v.name for v in val_blocks)
    assert all(v.image.shape[0] == 32 and v.spacing == (1.25, 0.4, 0.4) and len(v.centres) == 0 for v in train_blocks)
    assert abs(float(np.median(train_blocks[0].image.astype(np.float32)))) < 0.1  # background at 0, as inference


def test_image_blocks_come_from_the_tissue_not_the_empty_space_around_it(write_image):
    """A whole-brain stack's empty space (0 here, two thirds of the image along x) gives no pretraining block,
    and the blocks are normalised with the tissue's background, not the space's."""
    data = np.zeros((32, 512, 1536), np.uint16)
    data[..., 512:1024] = np.random.default_rng(1).poisson(30, (32, 512, 512))
    path = write_image(data)
    blocks = image_blocks(path, part="train") + image_blocks(path, part="val")
    starts = [int(v.name.rsplit("-", 1)[1]) for v in blocks]
    assert blocks and set(starts) == {512}  # blocks of 512 voxels along x: the tissue's
    assert abs(float(np.median(blocks[0].image.astype(np.float32)))) < 0.1


def test_image_blocks_of_coarser_voxels_reach_pretraining_as_the_networks_see_them(write_image):
    data = np.random.default_rng(1).poisson(30, (16, 256, 300)).astype(np.uint16)  # 2x the grid's voxels: 1 x 2 blocks
    path = write_image(data, spacing=(2.5, 0.8, 0.8))
    val, train_blocks = image_blocks(path, part="val"), image_blocks(path, part="train")
    assert len(val) == 1 and len(train_blocks) == 1
    block = val[0].image.astype(np.float32)
    assert block.shape == (32, 512, 512) and val[0].spacing == (1.25, 0.4, 0.4)  # the grid, not the file's voxels
    assert abs(float(np.median(block))) < 0.1
    # white noise on the grid, as the networks were trained with (interpolated, neighbours would correlate at ~0.8)
    assert np.corrcoef(block[:, :, :-1].ravel(), block[:, :, 1:].ravel())[0, 1] < 0.3


def test_pretrain_trains_on_images_and_starts_stage_one(tmp_path, write_image, float32_cpu):
    image = write_image(np.random.default_rng(0).poisson(30, (32, 128, 128)).astype(np.uint16))
    sources = {"train": [("image", {"path": str(image), "part": "train"}), *SOURCES["train"]],
               "val": SOURCES["val"]}
    summary = train(PRETRAIN, sources, tmp_path / "pretrain", tmp_path / "cache", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "pretrain" / "metrics.csv")))
    assert summary["steps"] == 4 and [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["mse"]) > 0 and 0 < float(r["ssim"]) <= 2 and float(r["val_loss"]) > 0 for r in rows)
    pretrained = load_model(tmp_path / "pretrain" / "model.pt")
    # stage 1 from the pretrained weights: everything but the head and the unused position rows is copied
    soma = train(dataclasses.replace(TINY, init=str(tmp_path / "pretrain" / "model.pt"), steps=0), SOURCES,
                 tmp_path / "soma", tmp_path / "cache", progress=False)
    assert soma["steps"] == 0
    started = load_model(tmp_path / "soma" / "model.pt").state_dict()
    for name, value in pretrained.state_dict().items():
        if not name.startswith("head."):
            torch.testing.assert_close(started[name], value, msg=name)


def test_pretrained_weights_of_another_window_or_size_start_what_they_fit():
    small = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 64, 64))
    large = TransformerUNet3d(embed_dim=8, depths=[1, 1, 1, 1], window=(16, 128, 128))
    from_pretrained(large, small)
    n = len(small.pos_embed.y)
    assert len(large.pos_embed.y) == 2 * n
    torch.testing.assert_close(large.pos_embed.y[:n], small.pos_embed.y)
    big, base = large.state_dict(), small.state_dict()
    for name in base:
        if not name.startswith(("head.", "pos_embed.")):
            torch.testing.assert_close(big[name], base[name], msg=name)
    with pytest.raises(ValueError, match="another size"):
        from_pretrained(TransformerUNet3d(embed_dim=16, depths=[1, 1, 1, 1], window=(16, 64, 64)), small)


def test_pretrain_command_refuses_what_is_not_an_image_before_training(tmp_path):
    with pytest.raises(SystemExit, match="error: .*not_here"):
        main(["train", "pretrain", str(tmp_path / "out"), "--images", str(tmp_path / "not_here.ome.zarr")])
    with pytest.raises(SystemExit, match="error: --images: unlabelled images train only the pretrain task"):
        main(["train", "soma", str(tmp_path / "out"), "--images", str(tmp_path / "x.ome.zarr")])
    assert not (tmp_path / "out").exists()
