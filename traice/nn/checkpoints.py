"""Model checkpoints: plain ``torch.save`` dictionaries that ``torch.load(..., weights_only=True)`` reads.

``{"version", "kind", "config", "state_dict", "meta"}``: ``config`` is the
keyword arguments that rebuild the network, ``kind`` tells the networks apart
(:data:`KINDS`), ``meta`` is free information (training data, steps, scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from traice.io.tables import atomic_path
from traice.nn.prompted import PromptedUNet3d
from traice.nn.unet import TransformerUNet3d

CHECKPOINT_VERSION = 1
"""Version of the checkpoint dictionary written by :func:`save_model`."""

KINDS = {None: TransformerUNet3d, "prompted": PromptedUNet3d}
"""Checkpoint ``kind`` -> the network its config rebuilds (stage 1 stores no kind)."""


def _check_plain(value: Any, where: str = "value") -> None:
    """Raise TypeError unless ``value`` is made of plain Python types (``weights_only`` loadable)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only plain Python types")


def save_model(model: nn.Module, config: dict, path: str | Path, meta: dict | None = None) -> None:
    """Write ``model`` as a checkpoint to ``path`` (atomically).

    The kind follows from the network's class (:data:`KINDS`). ``config`` and
    ``meta`` must be plain Python types (numbers, strings, lists, tuples, dicts
    with string keys) so that the file loads with ``weights_only=True``. The
    config is checked against the model's weights before writing: a network
    built from it on the meta device must have the same parameter names and shapes.
    """
    kind = next((k for k, network in KINDS.items() if type(model) is network), "unknown")
    if kind == "unknown":
        raise TypeError(f"cannot save a {type(model).__name__}: checkpoints hold {[n.__name__ for n in KINDS.values()]}")
    network = KINDS[kind]
    _check_plain(config, "config")
    _check_plain(meta, "meta")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with torch.device("meta"):
        probe = network(**config).state_dict()
    if {k: tuple(v.shape) for k, v in probe.items()} != {k: tuple(v.shape) for k, v in state.items()}:
        raise ValueError(f"config does not describe this model: {network.__name__}(**config) has other weights")
    checkpoint = {"version": CHECKPOINT_VERSION, "config": dict(config), "state_dict": state, "meta": meta or {}}
    if kind is not None:
        checkpoint["kind"] = kind
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dictionary written by :func:`save_model` (tensors on CPU)."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a traice model checkpoint (version {CHECKPOINT_VERSION})")
    return checkpoint


def kind_name(kind: str | None) -> str:
    """How a checkpoint kind is called in messages."""
    return kind or "stage-1"


def load_network(path: str | Path, kind: str | None) -> nn.Module:
    """Rebuild the network of a ``kind`` checkpoint (:data:`KINDS`) and load its weights; CPU, eval mode.

    Raises ValueError for a file that is not a checkpoint or is of another kind.
    """
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != kind:
        raise ValueError(f"{path} is a {kind_name(checkpoint.get('kind'))} checkpoint, expected {kind_name(kind)}")
    model = KINDS[kind](**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_model(path: str | Path) -> TransformerUNet3d:
    """The stage-1 :class:`TransformerUNet3d` of a checkpoint."""
    return load_network(path, None)


def load_one_pass(path: str | Path, role: str) -> TransformerUNet3d:
    """The one-pass network at ``path`` (soma, foreground, offsets: :mod:`traice.core.maps`); ValueError naming
    ``role`` (``--teacher``, ``--foreground``) and ``path`` for a file that is not a checkpoint or whose network
    has other outputs."""
    from traice.core.maps import CHANNELS

    try:
        model = load_model(path)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{role} {path}: not a traice checkpoint ({type(err).__name__})") from None
    if model.out_channels != len(CHANNELS):
        raise ValueError(f"{role} {path}: not a one-pass network ({model.out_channels} output(s); it needs "
                         f"{len(CHANNELS)}: soma, foreground, offsets)")
    return model


def load_prompted(path: str | Path) -> PromptedUNet3d:
    """The stage-2 :class:`PromptedUNet3d` of a checkpoint."""
    return load_network(path, "prompted")


def to_float16(source: str | Path, target: str | Path) -> None:
    """Copy a checkpoint with its floating-point weights in float16 (half the file; loading casts them back
    to float32), as the shipped weights are stored."""
    checkpoint = load_checkpoint(source)
    checkpoint["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    with atomic_path(target) as tmp:
        torch.save(checkpoint, tmp)


def average_checkpoints(sources: Sequence[str | Path], target: str | Path) -> None:
    """Write the uniform average of checkpoints of one network (same kind and config) to ``target``.

    Floating-point weights are averaged in float32 and stored in the first source's dtype; other tensors
    (counters) must be equal. For networks fine-tuned from one start this is a "model soup" (Wortsman et
    al., 2022): it keeps what each run learnt where their weights agree. ``meta`` records the sources.
    """
    if len(sources) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    checkpoints = [load_checkpoint(path) for path in sources]
    first = checkpoints[0]
    for path, other in zip(sources[1:], checkpoints[1:]):
        if other.get("kind") != first.get("kind") or other["config"] != first["config"]:
            raise ValueError(f"{path} is another network than {sources[0]}: only one network's weights average")
    state = {}
    for key, value in first["state_dict"].items():
        values = [c["state_dict"][key] for c in checkpoints]
        if value.is_floating_point():
            state[key] = (sum(v.float() for v in values) / len(values)).to(value.dtype)
        elif all(torch.equal(value, v) for v in values[1:]):
            state[key] = value
        else:
            raise ValueError(f"{key} differs between the checkpoints and is not a floating-point weight")
    averaged = {**first, "state_dict": state, "meta": {"averaged": [str(Path(p).name) for p in sources],
                                                       "sources_meta": [c["meta"] for c in checkpoints]}}
    with atomic_path(target) as tmp:
        torch.save(averaged, tmp)
