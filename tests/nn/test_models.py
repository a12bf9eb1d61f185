"""Shapes, gradients and input checks of the transformer U-Net and its blocks (tiny configs, CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from traice.nn import (
    MODEL_SIZES,
    Attention,
    InstanceNorm3d,
    PatchEmbed3d,
    PatchMerging3d,
    PositionEmbedding3d,
    ResidualConvBlock,
    TransformerBlock,
    TransformerUNet3d,
    UpBlock,
    build_model,
    count_parameters,
    grid_to_tokens,
    tokens_to_grid,
    upsample_steps,
)

TINY = dict(embed_dim=8, depths=(1, 1, 1, 1), heads=(1, 1, 2, 2), window=(16, 64, 64))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model(**overrides) -> TransformerUNet3d:
    return TransformerUNet3d(**{**TINY, **overrides})


def test_grid_tokens_round_trip():
    x = torch.randn(2, 5, 3, 4, 6)
    tokens = grid_to_tokens(x)
    assert tokens.shape == (2, 72, 5)
    assert torch.equal(tokens[1, 1 * 24 + 2 * 6 + 3], x[1, :, 1, 2, 3])  # row-major (z, y, x)
    assert torch.equal(tokens_to_grid(tokens, (3, 4, 6)), x)
    with pytest.raises(ValueError):
        tokens_to_grid(tokens, (3, 4, 5))


def test_patch_embed_shape():
    embed = PatchEmbed3d(in_channels=1, embed_dim=16, patch=(2, 8, 8))
    assert embed(torch.randn(2, 1, 16, 64, 128)).shape == (2, 16, 8, 8, 16)
    with pytest.raises(ValueError):
        embed(torch.randn(1, 1, 16, 60, 64))


def test_position_embedding_is_factorised_and_cropped():
    pos = PositionEmbedding3d(embed_dim=4, grid=(8, 32, 32))
    x = torch.zeros(2, 4, 3, 5, 7)
    out = pos(x)
    assert out.shape == x.shape
    expected = pos.z[2] + pos.y[4] + pos.x[6]
    assert torch.allclose(out[1, :, 2, 4, 6], expected)
    assert torch.allclose(pos.embedding((8, 32, 32))[:, :3, :5, :7], out[0])  # a crop of the full grid
    with pytest.raises(ValueError):
        pos(torch.zeros(1, 4, 9, 32, 32))


def test_attention_matches_explicit_softmax():
    attn = Attention(dim=8, heads=2)
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    out = attn(q, kv, kv)
    assert out.shape == (2, 5, 8)
    qh = attn.q_proj(q).reshape(2, 5, 2, 4).transpose(1, 2)
    kh = attn.k_proj(kv).reshape(2, 7, 2, 4).transpose(1, 2)
    vh = attn.v_proj(kv).reshape(2, 7, 2, 4).transpose(1, 2)
    weights = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attn.out_proj((weights @ vh).transpose(1, 2).reshape(2, 5, 8))
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError):
        Attention(dim=6, heads=4)


def test_transformer_block_is_pre_norm_residual():
    block = TransformerBlock(dim=16, heads=2)
    x = torch.randn(2, 10, 16)
    assert block(x).shape == (2, 10, 16)
    assert block.mlp.fc1.out_features == 64
    h = block.norm1(x)
    x1 = x + block.attn(h, h, h)
    assert torch.allclose(block(x), x1 + block.mlp(block.norm2(x1)), atol=1e-6)


def test_patch_merging_gathers_2x2x2_neighbours():
    merge = PatchMerging3d(dim=3)
    x = torch.randn(2, 3, 4, 6, 8)
    out = merge(x)
    assert out.shape == (2, 6, 2, 3, 4)
    # Output cell (1, 2, 3) sees exactly the input cell z 2:4, y 4:6, x 6:8.
    cell = x[1, :, 2:4, 4:6, 6:8].permute(1, 2, 3, 0).reshape(-1)
    assert torch.allclose(out[1, :, 1, 2, 3], merge.reduction(merge.norm(cell)), atol=1e-6)
    with pytest.raises(ValueError):
        merge(torch.randn(1, 3, 3, 4, 4))


def test_residual_conv_block_shapes():
    same = ResidualConvBlock(4, 4)
    assert isinstance(same.skip, torch.nn.Identity)
    assert same(torch.randn(2, 4, 4, 8, 8)).shape == (2, 4, 4, 8, 8)
    wider = ResidualConvBlock(4, 6)
    assert wider(torch.randn(2, 4, 4, 8, 8)).shape == (2, 6, 4, 8, 8)
    strided = ResidualConvBlock(4, 6, stride=(1, 2, 2))
    assert strided(torch.randn(2, 4, 4, 8, 8)).shape == (2, 6, 4, 4, 4)


def test_channels_last_instance_norm_is_instance_norm_and_keeps_the_layout():
    ours, torchs = InstanceNorm3d(6, affine=True), torch.nn.InstanceNorm3d(6, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1.0, 1.0)
    torchs.load_state_dict(ours.state_dict())
    for layout in (torch.channels_last_3d, torch.contiguous_format):
        x = (torch.randn(3, 6, 4, 10, 12) * 3 + 1).contiguous(memory_format=layout).requires_grad_()
        a, b = ours(x), torchs(x)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert a.is_contiguous(memory_format=layout)
        grads = [torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), [x, norm.weight, norm.bias])
                 for y, norm in ((a, ours), (b, torchs))]
        for g_ours, g_torch in zip(*grads):
            torch.testing.assert_close(g_ours, g_torch, atol=1e-4, rtol=1e-4)


def test_up_block_shapes():
    up = UpBlock(in_channels=8, skip_channels=3, out_channels=4, factor=(1, 2, 2))
    out = up(torch.randn(2, 8, 2, 4, 4), torch.randn(2, 3, 2, 8, 8))
    assert out.shape == (2, 4, 2, 8, 8)
    with pytest.raises(ValueError):
        up(torch.randn(2, 8, 2, 4, 4), torch.randn(2, 3, 4, 8, 8))


def test_upsample_steps_undo_the_patch():
    assert upsample_steps((2, 8, 8)) == [(2, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert upsample_steps((1, 4, 4)) == [(1, 2, 2), (1, 2, 2), (1, 1, 1)]
    with pytest.raises(ValueError):
        upsample_steps((3, 8, 8))


@pytest.mark.parametrize("shape", [(16, 64, 64), (16, 128, 64)])
def test_unet_output_matches_input(shape):
    model = tiny_model(window=(16, 128, 128))
    x = torch.randn(2, 1, *shape)
    assert model(x).shape == (2, 1, *shape)


def test_unet_stage_and_stem_shapes():
    model = tiny_model()
    x = torch.randn(1, 1, 16, 64, 64)
    assert [tuple(s.shape) for s in model.encode(x)] == [
        (1, 8, 8, 8, 8),
        (1, 16, 4, 4, 4),
        (1, 32, 2, 2, 2),
        (1, 64, 1, 1, 1),
    ]
    assert [tuple(s.shape) for s in model.stem_features(x)] == [
        (1, 2, 16, 64, 64),
        (1, 2, 16, 32, 32),
        (1, 4, 16, 16, 16),
    ]


def test_subvoxels_to_grid_places_each_sub_voxel():
    """Channel ``c * 4 + 2 * j + k`` of a (1, 2, 2) step is sub-voxel (j, k) of output channel c."""
    from traice.nn.unet import subvoxels_to_grid

    logits = torch.randn(2, 3 * 4, 4, 5, 6)
    grid = subvoxels_to_grid(logits, (1, 2, 2))
    assert grid.shape == (2, 3, 4, 10, 12)
    for c in range(3):
        for j in range(2):
            for k in range(2):
                assert torch.equal(grid[:, c, :, j::2, k::2], logits[:, c * 4 + 2 * j + k])
    assert subvoxels_to_grid(logits, (1, 1, 1)) is logits


def test_network_without_full_resolution_convolves_no_full_resolution_grid():
    """``full_resolution=False``: full-size logits, but every convolution works on half the voxels in y
    and x or fewer; the stem gives its two coarser features only."""
    model = tiny_model(out_channels=3, full_resolution=False)
    x = torch.randn(1, 1, 16, 64, 64)
    sizes = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            module.register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape[2:])))
    assert model(x).shape == (1, 3, 16, 64, 64)
    assert max(y for _, y, _ in sizes) == 32 and max(x for _, _, x in sizes) == 32
    assert [tuple(s.shape) for s in model.stem_features(x)] == [(1, 2, 16, 32, 32), (1, 4, 16, 16, 16)]
    assert model.out_channels == 3 and model.head.out_channels == 12


@pytest.mark.parametrize("full_resolution", [True, False])
def test_gradients_reach_every_parameter(full_resolution):
    model = tiny_model(out_channels=2, full_resolution=full_resolution)
    x = torch.randn(2, 1, 16, 64, 64)
    model(x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 16, 64, 48), (1, 1, 8, 64, 64), (1, 1, 32, 64, 64), (1, 2, 16, 64, 64), (1, 16, 64, 64)],
)
def test_invalid_input_shape_raises(shape):
    with pytest.raises(ValueError):
        tiny_model()(torch.randn(*shape))


def test_invalid_window_raises():
    with pytest.raises(ValueError):
        tiny_model(window=(16, 96, 64))
    with pytest.raises(ValueError):
        tiny_model(heads=(1, 1, 2))


def test_skip_hook():
    model = tiny_model()
    x = torch.randn(1, 1, 16, 64, 64)
    seen = []

    def identity(i, skip):
        seen.append((i, skip.shape[1]))
        return skip

    with torch.no_grad():
        plain = model(x)
        hooked = model(x, skip_hook=identity)
        zeroed = model(x, skip_hook=lambda i, s: torch.zeros_like(s) if i == 0 else s)
    assert seen == [(0, 8), (1, 16), (2, 32), (3, 64)]
    assert torch.equal(plain, hooked)
    assert not torch.allclose(plain, zeroed)
    with pytest.raises(ValueError):
        model(x, skip_hook=lambda i, s: s[:, :1])


def test_named_sizes_parameter_counts():
    small, large = build_model("S"), build_model("L")
    n_small, n_large = count_parameters(small), count_parameters(large)
    assert 2e6 < n_small < 1e7
    assert 4e7 < n_large < 1.5e8
    assert small.dims == [32, 64, 128, 256] and large.dims == [128, 256, 512, 1024]
    for model, size in ((small, "S"), (large, "L")):
        heads = [stage[0].attn.heads for stage in model.stages]
        assert heads == list(MODEL_SIZES[size]["heads"])
        assert all(d // h == 32 for d, h in zip(model.dims, heads))
    assert [len(stage) for stage in small.stages] == [1, 1, 1, 3]
    with pytest.raises(ValueError):
        build_model("M")


def test_default_heads_have_dimension_32():
    model = TransformerUNet3d(embed_dim=64, window=(16, 64, 64))
    assert [stage[0].attn.heads for stage in model.stages] == [2, 4, 8, 16]


def test_average_checkpoints_is_the_mean_of_the_weights(tmp_path):
    from traice.nn.checkpoints import average_checkpoints, load_checkpoint, load_model, save_model
    from traice.nn.prompted import stage1_config

    models = [tiny_model(), tiny_model()]
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for model, path in zip(models, paths):
        save_model(model, stage1_config(model), path, meta={"run": path.stem})
    average_checkpoints(paths, tmp_path / "mean.pt")
    mean = load_model(tmp_path / "mean.pt").state_dict()
    a, b = (m.state_dict() for m in models)
    key = next(k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k]))
    torch.testing.assert_close(mean[key], (a[key] + b[key]) / 2)
    assert all(torch.allclose(mean[k], (a[k] + b[k]) / 2) for k in a if a[k].is_floating_point())
    assert load_checkpoint(tmp_path / "mean.pt")["meta"]["averaged"] == ["a.pt", "b.pt"]

    other = tiny_model(embed_dim=16)
    save_model(other, stage1_config(other), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="another network"):
        average_checkpoints([paths[0], tmp_path / "other.pt"], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(paths[:1], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
