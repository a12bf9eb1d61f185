"""Sliding-window inference, its blending weight, input normalisation and checkpoints (tiny model, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from traice.core.intensity import model_input
from traice.core.windows import padding, window_starts
from traice.nn.checkpoints import load_checkpoint, load_model, save_model
from traice.nn.device import pick_device
from traice.nn.inferer import gaussian_importance, sliding_window_probabilities
from traice.nn import MODEL_SIZES, build_model

monai_utils = pytest.importorskip("monai.data.utils")
monai_inferers = pytest.importorskip("monai.inferers")

WINDOW = (16, 64, 64)
TINY = dict(embed_dim=8, depths=(1, 1, 1, 1), window=WINDOW)


@pytest.fixture(autouse=True)
def _seed(float32_cpu):
    """A fixed seed, and float32 on the CPU: these tests compare with MONAI's float32 inference."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    model = build_model("S", **TINY).eval()
    # Random init gives logits near 0 (probabilities near 0.5); scale the head so
    # the output varies over (0, 1) and blending differences would show.
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return model


def monai_probabilities(model: nn.Module, volume: np.ndarray, window, overlap, batch: int) -> np.ndarray:
    """MONAI's sliding window with Gaussian blending on sigmoid(model(x)), as the reference; the model in the
    channels-last layout, as ours runs it (the instance norms' arithmetic differs a little between layouts)."""
    model.to(memory_format=torch.channels_last_3d)
    try:
        with torch.inference_mode():
            out = monai_inferers.sliding_window_inference(
                torch.from_numpy(volume)[None, None], window, batch, lambda x: torch.sigmoid(model(x)),
                overlap=overlap, mode="gaussian", sigma_scale=0.125, padding_mode="constant", cval=0.0,
            )
    finally:
        model.to(memory_format=torch.contiguous_format)  # the module's shared model as the other tests expect it
    return out[0, 0].numpy()


@pytest.mark.parametrize("window", [(16, 64, 64), (16, 256, 256), (7, 33, 20), (1, 5, 2)])
def test_gaussian_importance_equals_monai(window):
    ours = gaussian_importance(window)
    ref = monai_utils.compute_importance_map(window, mode="gaussian", sigma_scale=0.125)
    assert ours.shape == window and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
    assert float(ours.min()) > 0


def test_gaussian_importance_shape_of_the_weight():
    w = gaussian_importance((17, 33, 33))
    assert float(w.max()) == pytest.approx(1.0) and w[8, 16, 16] == w.max()  # odd sizes: peak 1 at the centre
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.flip(1)) and torch.equal(w, w.flip(2))
    assert float(w.min()) == pytest.approx(1e-3)  # corners raised to the floor


@pytest.mark.parametrize("size", [1, 15, 16, 17, 40, 64, 150, 170, 1000])
@pytest.mark.parametrize("window,overlap", [(16, 0.25), (64, 0.25), (64, 0.0), (64, 0.5), (5, 0.99)])
def test_window_starts_cover_the_axis(size, window, overlap):
    starts = window_starts(size, window, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if size <= window:
        assert starts == [0]
        return
    assert starts[-1] + window == size
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()
    step = max(1, int(window * (1 - overlap)))
    assert all(b - a == step for a, b in zip(starts[:-2], starts[1:-1]))
    # the same positions as MONAI's
    ref = monai_utils.dense_patch_slices((size,), (window,), (step,))
    assert starts == [s[0].start for s in ref]


def test_window_starts_rejects_bad_overlap():
    with pytest.raises(ValueError):
        window_starts(100, 16, 1.0)


def test_padding_splits_as_monai():
    assert padding((40, 150, 170), WINDOW) == [(0, 0), (0, 0), (0, 0)]
    assert padding((9, 30, 64), WINDOW) == [(3, 4), (17, 17), (0, 0)]


@pytest.mark.parametrize("shape, overlap", [((30, 150, 100), 0.25), ((9, 30, 100), 0.25),
                                            ((30, 150, 100), (0.0, 0.25, 0.5))])
def test_sliding_window_equals_monai(tiny, shape, overlap):
    """Larger than the window on every axis; smaller on two axes (constant-0 padding); one overlap per axis."""
    rng = np.random.default_rng(0)
    volume = rng.normal(size=shape).astype(np.float32)
    volume[:, : shape[1] // 2] += 2.0  # not stationary, so window positions matter
    ours = sliding_window_probabilities(tiny, volume, window=WINDOW, overlap=overlap, batch_size=3, device="cpu")
    ref = monai_probabilities(tiny, volume, WINDOW, overlap, 3)
    assert ours.shape == shape and ours.dtype == np.float32
    assert ours.std() > 0.05  # the comparison is not between two near-constant maps
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


class Constant(nn.Module):
    """Logit ``c`` everywhere: ``(B, 1, Z, Y, X) -> (B, 1, Z, Y, X)``."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.c)


class BatchRecorder(Constant):
    """A constant model that records how many windows each forward pass was given."""

    def __init__(self):
        super().__init__(0.0)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return super().forward(x)


def test_the_default_window_batch_is_the_devices():
    """Without a batch size the windows go 2 at a time on the CPU (8 on a GPU: traice.nn.device.WINDOW_BATCH)."""
    from traice.nn.device import WINDOW_BATCH, window_batch

    assert window_batch(torch.device("cpu")) == 2 and window_batch(torch.device("cuda")) == WINDOW_BATCH["cuda"] == 8
    volume = np.zeros((16, 64, 64 * 4), np.float32)  # 5 windows along x at overlap 0.25
    model = BatchRecorder()
    sliding_window_probabilities(model, volume, window=WINDOW, overlap=0.25, device="cpu")
    assert model.batches == [2, 2, 1]
    model.batches.clear()
    sliding_window_probabilities(model, volume, window=WINDOW, overlap=0.25, batch_size=3, device="cpu")
    assert model.batches == [3, 2]


@pytest.mark.parametrize("shape", [(40, 150, 170), (16, 64, 64), (3, 70, 10)])
def test_constant_model_gives_constant_output(shape):
    """The blending weights are a partition of unity: a constant prediction stays constant."""
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = sliding_window_probabilities(Constant(0.7), volume, window=WINDOW, overlap=0.25, batch_size=4, device="cpu")
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-0.7)), atol=1e-6)


def test_sliding_window_maps_of_a_network_without_full_resolution():
    """A one-pass network whose head predicts sub-voxels gives its five maps over the volume, a window at a
    time, as the network gives them on that window."""
    from traice.nn.inferer import sliding_window_maps

    model = build_model("S", **TINY, out_channels=5, full_resolution=False).eval()
    volume = np.random.default_rng(2).normal(size=WINDOW).astype(np.float32)
    maps = sliding_window_maps(model, volume, WINDOW, 0.25, 1, "cpu")
    assert maps.shape == (5, *WINDOW)
    with torch.inference_mode():
        logits = model(torch.from_numpy(volume)[None, None])[0].numpy()
    np.testing.assert_allclose(maps[:2], 1 / (1 + np.exp(-logits[:2])), atol=1e-5)
    np.testing.assert_allclose(maps[2:], logits[2:], atol=1e-5)


def test_sliding_window_restores_training_mode_and_layout(tiny):
    tiny.train()
    try:
        sliding_window_probabilities(tiny, np.zeros(WINDOW, np.float32), window=WINDOW, device="cpu")
        assert tiny.training
        assert all(p.is_contiguous() for p in tiny.parameters())
    finally:
        tiny.eval()


def test_save_load_round_trip(tmp_path):
    config = {**MODEL_SIZES["S"], **TINY}  # exactly the kwargs build_model passes on
    model = build_model("S", **TINY)
    path = tmp_path / "ckpt" / "model.pt"
    save_model(model, config, path, meta={"stage": 1, "epochs": 3, "data": ["a", "b"]})
    loaded = load_model(path)
    assert not loaded.training
    x = torch.randn(2, 1, *WINDOW)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    ckpt = load_checkpoint(path)
    assert ckpt["meta"] == {"stage": 1, "epochs": 3, "data": ["a", "b"]}
    assert ckpt["config"] == config


def test_save_model_rejects_wrong_or_unplain_config(tmp_path):
    model = build_model("S", **TINY)
    with pytest.raises(ValueError):
        save_model(model, {"embed_dim": 16, "depths": (1, 1, 1, 1), "window": WINDOW}, tmp_path / "m.pt")
    with pytest.raises(TypeError):
        save_model(model, {"embed_dim": np.int64(8), "depths": (1, 1, 1, 1), "window": WINDOW}, tmp_path / "m.pt")
    with pytest.raises(TypeError):
        save_model(model, {**MODEL_SIZES["S"], **TINY}, tmp_path / "m.pt", meta={"x": np.zeros(2)})


def test_model_input_of_background_is_about_zero():
    stats = {"median": 100.0, "sigma": 5.0}
    raw = np.random.default_rng(0).normal(100.0, 5.0, size=(8, 64, 64)).round().clip(0).astype(np.uint16)
    x = model_input(raw, stats)
    assert x.dtype == np.float32 and x.shape == raw.shape
    assert abs(float(np.median(x))) < 0.02
    assert 0.25 < float(x.std()) < 0.4  # ~ 1/3: linear in noise units near the background
    bright = model_input(np.array([100 + 5 * 3, 100 + 5 * 300], np.uint16), stats)
    np.testing.assert_allclose(bright, np.arcsinh([1.0, 100.0]), rtol=1e-6)  # logarithmic for bright somas


def test_empty_space_reads_no_darker_than_the_background_noise_reaches():
    """Empty space beside the tissue (0 in a stitched volume, 20 sigmas under this background) reads as
    EMPTY_SIGMAS below the background, not as a hole 20 sigmas deep; anything the noise reaches is kept."""
    from traice.core.intensity import EMPTY_SIGMAS, normalise

    stats = {"median": 100.0, "sigma": 5.0}
    out = normalise(np.array([0, 60, 75, 100, 150], np.uint16), stats)
    np.testing.assert_allclose(out, [-EMPTY_SIGMAS, -EMPTY_SIGMAS, -5.0, 0.0, 10.0])
    floats = normalise(np.array([np.nan, -np.inf, 0.0, 95.0], np.float32), stats)
    np.testing.assert_allclose(floats, [0.0, 0.0, -EMPTY_SIGMAS, -1.0])


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):
            pick_device("cuda")
