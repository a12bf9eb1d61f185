"""Stage 2: prompt encoder, RCAM, the prompted U-Net and its checkpoints (tiny models, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from traice.nn.checkpoints import save_model
from traice.nn.prompt import FourierPromptEncoder, grid_centres, normalise_points
from traice.nn.checkpoints import load_prompted
from traice.nn.prompted import PromptedUNet3d, stage1_config
from traice.nn.rcam import RCAM
from traice.nn.unet import TransformerUNet3d, count_parameters

TINY = {"embed_dim": 8, "depths": (1, 1, 1, 1), "window": (16, 64, 64)}
SHAPE = (16, 64, 64)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_stage1(seed: int = 0) -> TransformerUNet3d:
    torch.manual_seed(seed)
    return TransformerUNet3d(**TINY).eval()


def image(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, *SHAPE, generator=torch.Generator().manual_seed(seed))


def points(*zyx: tuple[float, float, float]) -> torch.Tensor:
    """One point per batch item: ``(B, 1, 3)``."""
    return torch.tensor([[list(p)] for p in zyx], dtype=torch.float32)


# ----------------------------------------------------------------------------- prompt encoder


def test_normalise_points_maps_window_faces_to_unit_and_matches_token_centres():
    p = torch.tensor([[[-0.5, -0.5, -0.5], [15.5, 63.5, 63.5], [0.0, 0.0, 0.0], [7.5, 31.5, 31.5]]])
    out = normalise_points(p, SHAPE)
    assert out.shape == (1, 4, 3)
    torch.testing.assert_close(out[0, 0], torch.full((3,), -1.0))
    torch.testing.assert_close(out[0, 1], torch.full((3,), 1.0))
    torch.testing.assert_close(out[0, 2], torch.tensor([-1 + 1 / 16, -1 + 1 / 64, -1 + 1 / 64]))
    torch.testing.assert_close(out[0, 3], torch.zeros(3))
    # token (1, 2, 3) of an (8, 8, 8) grid over the window covers voxels z 2-3, y 16-23, x 24-31
    centres = grid_centres((8, 8, 8)).reshape(8, 8, 8, 3)
    voxel_centre = torch.tensor([[[2.5, 19.5, 27.5]]])
    torch.testing.assert_close(centres[1, 2, 3], normalise_points(voxel_centre, SHAPE)[0, 0])
    assert normalise_points(torch.zeros(2, 1, 3, dtype=torch.int64), SHAPE).dtype == torch.float32


def test_prompt_encoder_shapes_fixed_matrix_and_seed():
    enc = FourierPromptEncoder(16, scale=2.0, seed=3)
    coords = torch.rand(2, 3, 3) * 2 - 1
    out = enc(coords)
    assert out.shape == (2, 3, 16)
    assert enc.gaussian.shape == (3, 8)
    assert "gaussian" in dict(enc.named_buffers()) and "gaussian" in enc.state_dict()
    assert all(p is not enc.gaussian for p in enc.parameters())
    assert [name for name, _ in enc.named_parameters()] == ["type_embed"]
    torch.testing.assert_close(FourierPromptEncoder(16, scale=2.0, seed=3).gaussian, enc.gaussian)
    assert not torch.allclose(FourierPromptEncoder(16, scale=2.0, seed=4).gaussian, enc.gaussian)
    # sin/cos pairs: every frequency contributes sin^2 + cos^2 = 1
    features = enc.encode(coords)
    torch.testing.assert_close((features[..., :8] ** 2 + features[..., 8:] ** 2), torch.ones(2, 3, 8))
    torch.testing.assert_close(out - features, enc.type_embed.expand(2, 3, 16))
    assert enc.grid_encoding((2, 4, 4)).shape == (32, 16)
    with pytest.raises(ValueError):
        FourierPromptEncoder(15)


# ----------------------------------------------------------------------------- RCAM


def rcam_inputs(batch: int = 2, dim: int = 8, prompt_dim: int = 16, grid=(2, 4, 4)):
    g = torch.Generator().manual_seed(0)
    skip = torch.randn(batch, dim, *grid, generator=g, requires_grad=True)
    prompt = torch.randn(batch, 2, prompt_dim, generator=g)
    enc = FourierPromptEncoder(prompt_dim)
    image_pe = enc.grid_encoding(grid)
    prompt_pe = torch.cat([enc.encode(torch.rand(batch, 1, 3, generator=g)), torch.zeros(batch, 1, prompt_dim)], 1)
    return skip, prompt, image_pe, prompt_pe


def test_rcam_shapes_and_identity_at_init():
    block = RCAM(8, 16, heads=2, pe_dim=16)
    skip, prompt, image_pe, prompt_pe = rcam_inputs()
    out, new_prompt = block(skip, prompt, image_pe, prompt_pe)
    assert out.shape == skip.shape
    assert new_prompt.shape == (2, 2, 8)
    torch.testing.assert_close(out, skip, rtol=0, atol=0)
    # training can start: the zero projection receives a gradient
    (out * torch.randn_like(out)).sum().backward()
    assert block.cross_image_to_prompt.out_proj.weight.grad.abs().sum() > 0
    # without position encodings, and with prompt_dim == dim
    out, _ = RCAM(8, 8, heads=1)(skip, torch.randn(2, 3, 8))
    assert out.shape == skip.shape


def test_rcam_gradients_reach_every_parameter_and_the_image():
    torch.manual_seed(0)
    block = RCAM(8, 16, heads=2, pe_dim=16)
    torch.nn.init.normal_(block.cross_image_to_prompt.out_proj.weight, std=0.02)  # as after some training
    skip, prompt, image_pe, prompt_pe = rcam_inputs()
    out, new_prompt = block(skip, prompt, image_pe, prompt_pe)
    # loss on the RCAM's own contribution only: the identity path of the skip cancels
    loss = ((out - skip) * torch.randn_like(out)).sum() + (new_prompt * torch.randn_like(new_prompt)).sum()
    loss.backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert skip.grad is not None and skip.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- prompted U-Net


def test_from_stage1_copies_weights_and_starts_as_stage1():
    stage1 = tiny_stage1()
    model = PromptedUNet3d.from_stage1(stage1).eval()
    new_state = model.state_dict()
    for name, value in stage1.state_dict().items():
        torch.testing.assert_close(new_state[name], value, rtol=0, atol=0)
    assert len(model.rcams) == 4
    x = image()
    with torch.no_grad():
        expected = stage1(x)
        out_a = model(x, points((3.0, 10.0, 50.0), (8.0, 32.0, 32.0)))
        out_b = model(x, points((12.0, 60.0, 2.0), (0.0, 0.0, 0.0)))
    assert out_a.shape == (2, 1, *SHAPE)
    torch.testing.assert_close(out_a, expected)
    torch.testing.assert_close(out_b, expected)


def test_output_depends_on_prompt_after_one_step():
    model = PromptedUNet3d.from_stage1(tiny_stage1())
    x = image()
    where = points((4.0, 16.0, 16.0), (10.0, 40.0, 48.0))
    elsewhere = points((12.0, 50.0, 8.0), (2.0, 8.0, 60.0))
    # target: a box around each prompt, so the loss depends on where the prompt is
    target = torch.zeros(2, 1, *SHAPE)
    for b, (z, y, x_) in enumerate(where[:, 0].long().tolist()):
        target[b, 0, max(z - 2, 0) : z + 3, max(y - 8, 0) : y + 9, max(x_ - 8, 0) : x_ + 9] = 1.0
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = F.binary_cross_entropy_with_logits(model(x, where), target)
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        out_where = model(x, where)
        out_elsewhere = model(x, elsewhere)
    assert (out_where - out_elsewhere).abs().max() > 1e-5


def test_ablation_ignores_the_prompt():
    stage1 = tiny_stage1()
    model = PromptedUNet3d.from_stage1(stage1, rcam=False).eval()
    assert not hasattr(model, "rcams") and not hasattr(model, "prompt_encoder")
    assert count_parameters(model) == count_parameters(stage1)
    x = image()
    with torch.no_grad():
        out_a = model(x, points((3.0, 10.0, 50.0), (8.0, 32.0, 32.0)))
        out_b = model(x, points((12.0, 60.0, 2.0), (0.0, 0.0, 0.0)))
        out_none = model(x)
        expected = stage1(x)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(out_a, out_none, rtol=0, atol=0)
    torch.testing.assert_close(out_a, expected)


def test_prompt_blind_control_and_input_checks():
    model = PromptedUNet3d.from_stage1(tiny_stage1()).eval()
    x = image(batch=1)
    with torch.no_grad():
        assert model(x).shape == (1, 1, *SHAPE)
        # several prompts per window
        assert model(x, torch.rand(1, 3, 3) * 16).shape == (1, 1, *SHAPE)
    with pytest.raises(ValueError):
        model(x, torch.zeros(2, 1, 3))
    with pytest.raises(ValueError):
        model(x, torch.zeros(1, 2))
    with pytest.raises(ValueError):
        PromptedUNet3d(context_tokens=0, **TINY)(x)


def test_stage1_config_rebuilds_the_architecture():
    stage1 = TransformerUNet3d(embed_dim=8, depths=(1, 2), heads=(1, 2), window=(8, 32, 32), stem_channels=(2, 3, 4))
    config = stage1_config(stage1)
    rebuilt = TransformerUNet3d(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in stage1.state_dict().items()}
    assert config["depths"] == [1, 2] and config["heads"] == [1, 2] and config["stem_channels"] == [2, 3, 4]


def test_save_load_round_trip(tmp_path):
    stage1 = tiny_stage1()
    model = PromptedUNet3d.from_stage1(stage1, pe_scale=2.0, pe_seed=5, context_tokens=2)
    for block in model.rcams:  # make every RCAM matter
        torch.nn.init.normal_(block.cross_image_to_prompt.out_proj.weight, std=0.1)
    model.eval()
    config = model.config()
    assert config["rcam"] is True and config["pe_seed"] == 5 and config["context_tokens"] == 2
    path = tmp_path / "stage2.pt"
    save_model(model, config, path, meta={"epochs": 1})
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["kind"] == "prompted" and checkpoint["meta"] == {"epochs": 1}
    assert set(checkpoint) == {"version", "kind", "config", "state_dict", "meta"}
    loaded = load_prompted(path)
    assert not loaded.training
    x, p = image(), points((3.0, 10.0, 50.0), (8.0, 32.0, 32.0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, p), model(x, p), rtol=0, atol=0)
        assert not torch.allclose(model(x, p), stage1(x))

    with pytest.raises(ValueError):
        save_model(model, {**config, "context_tokens": 1}, tmp_path / "bad.pt")
    ablation = PromptedUNet3d.from_stage1(stage1, rcam=False)
    save_model(ablation, ablation.config(), tmp_path / "ablation.pt")
    assert load_prompted(tmp_path / "ablation.pt").use_rcam is False
    stage1_path = tmp_path / "stage1.pt"
    save_model(stage1, stage1_config(stage1), stage1_path)
    with pytest.raises(ValueError, match="prompted"):
        load_prompted(stage1_path)


def test_from_stage1_with_another_window_resamples_the_position_embedding():
    stage1 = tiny_stage1()
    model = PromptedUNet3d.from_stage1(stage1, window=(32, 64, 64), input_step=(1, 2, 2)).eval()
    assert model.window == (32, 64, 64) and model.input_step == (1, 2, 2)
    z1, z2 = stage1.pos_embed.z.detach(), model.pos_embed.z.detach()
    assert z2.shape[0] == 2 * z1.shape[0]
    torch.testing.assert_close(z2[0], z1[0])          # ends kept (linear, corners aligned)
    torch.testing.assert_close(z2[-1], z1[-1])
    torch.testing.assert_close(model.pos_embed.y, stage1.pos_embed.y)  # unchanged axes copied
    assert model(torch.zeros(1, 1, 32, 64, 64), points((16, 32, 32))).shape == (1, 1, 32, 64, 64)


def test_widened_input_starts_as_the_network_it_widens():
    """``with_input_channels``: the new channel weighs nothing until trained, so the output is the old one's
    whatever the foreground says; the widened network rebuilds from its config."""
    from traice.nn.prompted import with_input_channels

    torch.manual_seed(0)
    model = PromptedUNet3d(embed_dim=16, depths=(1, 1, 1, 1), window=(16, 64, 64)).eval()
    wider = with_input_channels(model, 2).eval()
    image = torch.randn(1, 1, 16, 64, 64)
    points = torch.tensor([[[8.0, 20.0, 40.0]]])
    with torch.no_grad():
        before = model(image, points)
        for second in (torch.zeros_like(image), torch.rand_like(image)):
            torch.testing.assert_close(wider(torch.cat([image, second], 1), points), before)
    assert PromptedUNet3d(**wider.config()).in_channels == 2
    with pytest.raises(ValueError, match="narrow"):
        with_input_channels(wider, 1)
