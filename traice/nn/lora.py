"""Low-rank adapters (LoRA) on the encoder attention's query and value projections, as SAM4EM adapts a
pretrained transformer to a new modality (arXiv 2504.21544).

Each adapted projection ``W`` becomes ``W + (alpha / rank) · B A`` with ``A``
(rank × C) and ``B`` (C × rank, zero at the start, so training starts from the
base network's outputs); the base weights stay frozen and only ``A``, ``B`` and
the output head (``head``, a 1×1×1 convolution) train, and, optionally
(``norms``), the scales and shifts of the normalisation layers. The layers come from
``peft`` (``inject_adapter_in_model`` on our ``q_proj`` / ``v_proj`` Linear
modules; it needs no model-hub code path).

An adapter file is a plain ``torch.save`` dictionary (``weights_only``
loadable): ``{"version", "kind": "adapter", "base", "config", "state_dict",
"meta"}``; ``base`` is the :func:`fingerprint` of the weights it was trained
on, so it is never applied on top of other weights.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from traice.io.tables import atomic_path

ADAPTER_VERSION = 1
TARGETS = ("q_proj", "v_proj")
TRAINED_WITH_ADAPTERS = ("head.",)  # parameters (name prefixes) that train beside the adapters, saved with them


def fingerprint(model: nn.Module) -> str:
    """SHA-256 of a network's weights (names, shapes and float32 values), whatever file they came from."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def target_modules(model: nn.Module, stages: Sequence[int] | None = None) -> list[str]:
    """Names of the query and value projections of the encoder stages ``stages`` (None: all)."""
    pattern = re.compile(r"stages\.(\d+)\.\d+\.attn\.(%s)$" % "|".join(TARGETS))
    out = []
    for name, _ in model.named_modules():
        match = pattern.search(name)
        if match and (stages is None or int(match.group(1)) in stages):
            out.append(name)
    if not out:
        raise ValueError(f"no attention projections in encoder stages {stages}")
    return out


def norm_parameters(model: nn.Module) -> set[str]:
    """Names of the scale and shift parameters of every normalisation layer (layer, instance and group norms)."""
    kinds = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.modules.batchnorm._BatchNorm)
    return {f"{module_name}.{name}" if module_name else name
            for module_name, module in model.named_modules() if isinstance(module, kinds)
            for name, _ in module.named_parameters(recurse=False)}


def add_adapters(model: nn.Module, rank: int = 4, alpha: float | None = None,
                 stages: Sequence[int] | None = None, norms: bool = False) -> nn.Module:
    """Add LoRA adapters of ``rank`` (scale ``alpha / rank``, default alpha = 2 · rank) to ``model`` in place;
    freeze everything but the adapters, the output head and, with ``norms``, the normalisation layers' scales
    and shifts (:func:`norm_parameters`: about 10 000 weights in the S network, which re-centre every layer's
    features on a new microscope's statistics). Returns the model."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else 2 * rank, lora_dropout=0.0,
                        target_modules=target_modules(model, stages), bias="none")
    model = inject_adapter_in_model(config, model)
    tuned_norms = norm_parameters(model) if norms else set()
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or name.startswith(TRAINED_WITH_ADAPTERS) or name in tuned_norms
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights that trained (adapters, head, and norms where they trained): CPU copies."""
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            if "lora_" in k or k.startswith(TRAINED_WITH_ADAPTERS) or k in trained}


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_adapter(model: nn.Module, base: str, config: dict, path: str | Path, meta: dict | None = None) -> None:
    """Write the adapters of ``model`` (trained on weights with :func:`fingerprint` ``base``) to ``path``."""
    checkpoint = {"version": ADAPTER_VERSION, "kind": "adapter", "base": base, "config": dict(config),
                  "state_dict": adapter_state(model), "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def read_adapter(path: str | Path) -> dict:
    """An adapter file's dictionary; ValueError when the file is not one."""
    try:
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path} cannot be read as an adapter file ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != "adapter" \
            or checkpoint.get("version") != ADAPTER_VERSION:
        raise ValueError(f"{path} is not a traice adapter file (version {ADAPTER_VERSION})")
    return checkpoint


def apply_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """``model`` with the adapters of ``path`` added and loaded (eval mode); ValueError when they were trained
    on other weights."""
    checkpoint = read_adapter(path)
    base = fingerprint(model)
    if checkpoint["base"] != base:
        raise ValueError(f"{path} was trained on other weights (fingerprint {checkpoint['base']}, these are {base}); "
                         "use it with the detect.model it was fine-tuned from")
    config = checkpoint["config"]
    model = add_adapters(model, config["rank"], config["alpha"], config["stages"], config.get("norms", False))
    missing = set(checkpoint["state_dict"]) - set(model.state_dict())
    if missing:
        raise ValueError(f"{path} holds weights this network does not have: {sorted(missing)[:3]}")
    model.load_state_dict(checkpoint["state_dict"], strict=False)
    return model.eval()
