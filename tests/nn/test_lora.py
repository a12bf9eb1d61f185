import pytest
import torch

from traice.nn.lora import add_adapters, apply_adapter, fingerprint, save_adapter, target_modules, trainable_parameters
from traice.nn.unet import TransformerUNet3d

pytest.importorskip("peft", reason="peft (a dependency) not installed")


def tiny(seed: int = 0) -> TransformerUNet3d:
    torch.manual_seed(seed)
    return TransformerUNet3d(embed_dim=8, depths=(1, 1), patch=(2, 4, 4), out_channels=5, window=(8, 32, 32)).eval()


def test_adapters_start_as_the_base_network_and_train_only_themselves_and_the_head():
    x = torch.randn(1, 1, 8, 32, 32)
    base = tiny()
    with torch.no_grad():
        before = base(x)
    model = add_adapters(tiny(), rank=2)
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6)  # B = 0 at the start
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("head.") for n in trained)
    assert {n.rsplit(".", 3)[0] for n in trained if "lora_" in n} == set(target_modules(tiny()))
    assert all(n.endswith(("q_proj", "v_proj")) for n in target_modules(tiny()))
    assert target_modules(tiny(), stages=[1]) == ["stages.1.0.attn.q_proj", "stages.1.0.attn.v_proj"]
    assert trainable_parameters(model) < 0.2 * sum(p.numel() for p in tiny().parameters())


def test_saved_adapter_reproduces_the_tuned_network_and_refuses_other_weights(tmp_path):
    x = torch.randn(1, 1, 8, 32, 32)
    model = add_adapters(tiny(), rank=2, stages=[0])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        tuned = model(x)
    save_adapter(model, fingerprint(tiny()), {"rank": 2, "alpha": 4, "stages": [0]}, tmp_path / "a.pt")
    with torch.no_grad():
        assert torch.allclose(apply_adapter(tiny(), tmp_path / "a.pt")(x), tuned, atol=1e-6)
    with pytest.raises(ValueError, match="trained on other weights"):
        apply_adapter(tiny(seed=1), tmp_path / "a.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a traice adapter file"):
        apply_adapter(tiny(), tmp_path / "other.pt")


def test_norms_train_beside_the_adapters_and_travel_in_the_adapter_file(tmp_path):
    from traice.nn.lora import norm_parameters

    x = torch.randn(1, 1, 8, 32, 32)
    norms = norm_parameters(tiny())
    assert norms and all(n.endswith(("weight", "bias")) for n in norms)
    assert any(n.startswith("stem.") for n in norms) and any(n.startswith("stages.") for n in norms)  # CNN and ViT
    model = add_adapters(tiny(), rank=2, norms=True)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert norms <= trained and all("lora_" in n or n.startswith("head.") or n in norms for n in trained)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in norms:
                p.add_(0.1 * torch.randn_like(p))
        tuned = model(x)
    save_adapter(model, fingerprint(tiny()), {"rank": 2, "alpha": 4, "stages": None, "norms": True}, tmp_path / "a.pt")
    with torch.no_grad():
        assert torch.allclose(apply_adapter(tiny(), tmp_path / "a.pt")(x), tuned, atol=1e-6)
        assert not torch.allclose(tiny()(x), tuned, atol=1e-3)  # the norms did change the network
