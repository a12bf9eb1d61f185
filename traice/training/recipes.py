"""What a training run is: its settings, its data sources and the network it starts from.

:class:`TrainConfig` holds every setting of ``traice train`` and the workflow's
``train_soma`` / ``train_branch`` rules, with the defaults of both (the config
file, its schema and the command line agree with it; a test checks). Reading
the settings needs no torch: it is imported where a network is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from traice.core.errors import InputError, check_radius_range
from traice.core.maps import CHANNELS
from traice.synth.traces import field_split, trace_fields
from traice.training.data import BRANCH_MAX_WEIGHT, BRANCH_SHIFT, BRANCH_WEIGHT_UM, Augment

if TYPE_CHECKING:
    import torch

TASKS = ("soma", "branch", "cells", "pretrain")
TASK_WINDOWS = {"soma": (16, 256, 256), "branch": (32, 256, 256), "cells": (16, 128, 128), "pretrain": (16, 128, 128)}
"""Default training window per task: stage 1 slides windows; stage 2 needs the whole arbor (±40 µm) in one;
the one-pass maps (``cells``) are local, so stage 1's sliding windows suffice; ``pretrain`` (denoising, no
labels) uses the one-pass window, whose network it initialises."""
TASK_LOSS_WEIGHTS = {"soma": (1.0, 1.0, 0.0), "branch": (1.0, 1.0, 1.0), "cells": (1.0, 1.0, 1.0)}
"""Default Dice, Focal, clDice weights: clDice only for arbors (somas are blobs, with no topology to keep);
``cells`` uses :class:`~traice.nn.losses.CellMapsLoss`, whose weights are fixed there."""


@dataclass(frozen=True)
class TrainConfig:
    task: str = "soma"
    size: str = "S"                                  # model size (traice.nn.MODEL_SIZES)
    embed_dim: int | None = None                     # override the size's width (tests use tiny models)
    depths: tuple[int, ...] | None = None
    window: tuple[int, int, int] | None = None       # training window = the model's window; None: TASK_WINDOWS
    batch_size: int = 2
    steps: int = 4000
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 100
    cell_bias: float = 0.7                           # soma, cells: share of windows placed on a cell
    distractor_bias: float = 0.0                     # cells: share placed on a bright thing that is no cell first
    faint_distractors: bool = False                  # cells: those things include faint ones (vessels;
                                                     # traice.training.data.faint_outside_cells)
    balanced_somas: bool = False                     # cells: every soma and bright thing weighs alike in the soma
                                                     # loss, whatever its size (traice.training.data.soma_weight)
    coarser_p: float = 0.0                           # soma, cells: share of windows seen as on coarser voxels
                                                     # (traice.training.data.as_if_coarser)
    magnify_p: float = 0.0                           # cells: share of windows whose tissue is seen 0.8-1.25x
                                                     # its size (traice.training.data.magnified)
    loss_weights: tuple[float, float, float] | None = None  # Dice, Focal, clDice; None: TASK_LOSS_WEIGHTS
    init: str | None = None                          # branch, cells: stage-1 weights to start from (None: shipped);
                                                     # cells: or a one-pass network, trained further as it is;
                                                     # soma: pretrained weights (task pretrain) to start from (None: random)
    full_resolution: bool = True                     # cells: False drops the network's full-resolution stage
                                                     # (TransformerUNet3d(full_resolution=False)), keeping the rest
    teacher: str | None = None                       # cells: a one-pass network whose maps the network also
                                                     # learns (traice.nn.losses.distillation_loss)
    rcam: bool = True                                # branch: False trains the no-prompt ablation
    foreground: str | None = None                    # branch: one-pass weights whose foreground is a second input
                                                     # (the ownership network of segment.method prompted-growth)
    input_step: tuple[int, int, int] = (1, 1, 1)     # branch: image voxels per input voxel
    shift: float = BRANCH_SHIFT                      # branch: random window shift, share of the window (see docs/stage2.md)
    weight_um: float = BRANCH_WEIGHT_UM              # branch: loss weight 1 + distance / weight_um ...
    max_weight: float = BRANCH_MAX_WEIGHT            # ... at most this
    val_windows: int = 16
    eval_every: int = 200
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"
    threads: int | None = None                       # CPU threads (None: torch's default)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {TASKS}")
        if not 0.0 <= self.coarser_p <= 1.0 or (self.coarser_p and self.task not in ("soma", "cells")):
            raise ValueError(f"coarser_p {self.coarser_p}: a share in [0, 1], for the soma and cells tasks only")
        if not 0.0 <= self.magnify_p <= 1.0 or (self.magnify_p and self.task != "cells"):
            raise ValueError(f"magnify_p {self.magnify_p}: a share in [0, 1], for the cells task only")
        if not self.full_resolution and self.task != "cells":
            raise ValueError("full_resolution False: for the cells task only")
        if self.faint_distractors and self.task != "cells":
            raise ValueError("faint_distractors: for the cells task only")
        if self.faint_distractors and not self.distractor_bias:
            raise ValueError("faint_distractors: needs distractor_bias above 0 (they join its hard-negative windows)")
        if self.balanced_somas and self.task != "cells":
            raise ValueError("balanced_somas: for the cells task only")
        if self.teacher and self.task != "cells":
            raise ValueError("teacher: for the cells task only")
        if self.window is None:
            object.__setattr__(self, "window", TASK_WINDOWS[self.task])
        object.__setattr__(self, "window", tuple(int(w) for w in self.window))


def training_sources(traces: str | Path | None = None, synthetic: int = 8, seeds_per_field: int = 2,
                     synthetic_shape: Sequence[int] = (32, 512, 512), folds: int = 1, fold: int = 0,
                     regimes: Sequence[str] = ("default",), images: Sequence[str] = (),
                     channel: int | None = None,
                     traced_soma_radius_um: Sequence[float] | None = None,
                     soma_sized_puncta: float | None = None) -> dict[str, list]:
    """Sources for :func:`traice.training.data.load_volumes`: ``{"train": [...], "val": [...]}``.

    ``images`` (OME-Zarr paths, their ``channel``) add unlabelled blocks of a user's images, for pretraining
    (:func:`traice.training.data.image_blocks`: every fifth block validates).

    Each traced field is rendered ``seeds_per_field`` times (different brightness,
    soma orientation, distractors); ``synthetic`` generator fields are added, a
    fifth of them (at least one) for validation. Rendering ``k`` of a field
    (and synthetic field ``k``) uses imaging regime ``regimes[k % len(regimes)]``
    (:func:`traice.training.data.source_params`; ``default``: the generator's own);
    validation fields use ``regimes[0]``. ``traced_soma_radius_um`` (µm, low and high): the renderings of the
    traced fields, training and validation, draw each soma's radius from it (the traces' somas are all about
    5 µm), so that the checkpoint kept by validation is chosen on the soma sizes it was trained for.
    ``soma_sized_puncta`` (a share in [0, 1]): the share of every rendering's autofluorescent puncta that are
    soma-sized (2-3.5 µm, :class:`~traice.synth.brain.SynthParams` ``large_puncta_fraction``; None: the
    generator's own), hard negatives for the smallest somas, in training and validation alike.
    """
    if traced_soma_radius_um is not None:
        check_radius_range("traced soma radius", traced_soma_radius_um)
    if soma_sized_puncta is not None and not 0.0 <= soma_sized_puncta <= 1.0:
        raise InputError(f"soma-sized puncta {soma_sized_puncta}: expected a share in [0, 1]")
    puncta = {} if soma_sized_puncta is None else {"large_puncta_fraction": float(soma_sized_puncta)}

    def spec(fields: dict, k: int) -> dict:
        regime = regimes[k % len(regimes)]
        fields = {**fields, **puncta}
        return fields if regime in (None, "default") else {**fields, "regime": regime}

    train: list = []
    val: list = []
    if traces is not None:
        split = field_split(trace_fields(traces))
        if not split["train"]:
            raise ValueError(f"no SWC fields of view under {traces}")
        if folds > 1:
            if not 0 <= fold < folds:
                raise ValueError(f"fold {fold} is not in 0..{folds - 1}")
            fit = [f for i, f in enumerate(split["train"]) if i % folds != fold]
            held = [f for i, f in enumerate(split["train"]) if i % folds == fold]
        else:
            fit, held = split["train"], split["val"]
        sizes = {} if traced_soma_radius_um is None else {"traced_soma_radius_um": [float(r) for r in traced_soma_radius_um]}
        train += [("traces", spec({"folder": str(f), "seed": s, **sizes}, s)) for f in fit for s in range(seeds_per_field)]
        val += [("traces", spec({"folder": str(f), "seed": 0, **sizes}, 0)) for f in held]
    n_val = max(1, synthetic // 5) if synthetic else 0
    for i in range(synthetic):
        fields = {"seed": 1000 + i, "shape": list(synthetic_shape), "cells": int(np.prod(synthetic_shape) // 250_000)}
        (val if i < n_val else train).append(("synthetic", spec(fields, 0 if i < n_val else i)))
    for path in images:
        train.append(("image", {"path": str(path), "channel": channel, "part": "train"}))
        val.append(("image", {"path": str(path), "channel": channel, "part": "val"}))
    return {"train": train, "val": val}


AUGMENT = {"soma": Augment(), "branch": Augment(affine_p=0.0), "cells": Augment(affine_p=0.0),
           "pretrain": Augment(affine_p=0.0)}
"""Training augmentation per task (stages 2 and cells without the in-plane rotation/scaling, which would
move the prompt or turn the offsets; pretraining uses only the flips and turns: its corruption does the rest)."""

CELL_MAPS_CHANNELS = len(CHANNELS)
"""Output channels of the one-pass network (:data:`traice.core.maps.CHANNELS`)."""


def model_config(cfg: TrainConfig) -> dict:
    """Constructor arguments of the stage-1 model a ``soma`` config trains (stored with the weights)."""
    from traice.nn.unet import MODEL_SIZES, default_heads

    config = {**MODEL_SIZES[cfg.size], "window": list(cfg.window)}
    if cfg.embed_dim is not None:
        config["embed_dim"] = cfg.embed_dim
        config["heads"] = list(default_heads(cfg.embed_dim, len(cfg.depths or (1, 1, 1, 3))))
    if cfg.depths is not None:
        config["depths"] = list(cfg.depths)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def build(cfg: TrainConfig, images: Sequence[torch.Tensor] = ()) -> tuple[torch.nn.Module, dict]:
    """The network a config trains, on the CPU, and the config that rebuilds it.

    ``soma``: a fresh :class:`TransformerUNet3d`, or with ``cfg.init`` one holding those pretrained
    weights (:func:`from_pretrained`). ``pretrain``: a fresh :class:`TransformerUNet3d` with one linear
    output, the denoised image. ``branch``: a
    :class:`PromptedUNet3d` holding the stage-1 weights ``cfg.init`` (default
    the shipped ones), with the training window and ``input_step``. ``cells``:
    the one-pass network (:func:`cells_from_stage1`), or, when ``cfg.init`` is a one-pass network
    already, that network as it is (training it further); with ``cfg.full_resolution`` False, either
    without its full-resolution stage (:func:`without_full_resolution`, its head fitted on ``images``,
    training windows ``(B, 1, Z, Y, X)``).
    """
    from traice.nn.checkpoints import load_checkpoint, load_model, load_prompted
    from traice.nn.prompted import PromptedUNet3d, stage1_config, with_input_channels
    from traice.nn.unet import TransformerUNet3d

    if cfg.task in ("soma", "pretrain"):
        config = model_config(cfg)
        model = TransformerUNet3d(**config)
        if cfg.task == "soma" and cfg.init:
            from_pretrained(model, load_model(cfg.init))
        return model, config
    from traice.weights import shipped_weights

    if cfg.task == "branch" and cfg.init and load_checkpoint(cfg.init).get("kind") == "prompted":
        model = load_prompted(cfg.init)  # a stage-2 network already: trained further (with the foreground: widened)
        if tuple(model.window) != cfg.window or model.input_step != tuple(cfg.input_step):
            raise ValueError(f"the stage-2 network {cfg.init} has window {tuple(model.window)} and input step "
                             f"{model.input_step}, not the training window {cfg.window} and step {tuple(cfg.input_step)}")
        if cfg.foreground and model.in_channels == 1:
            model = with_input_channels(model, 2)
        return model, model.config()
    stage1 = load_model(cfg.init or shipped_weights("soma"))
    if cfg.task == "cells":
        if stage1.out_channels == CELL_MAPS_CHANNELS:  # a one-pass network already: train it further
            if tuple(stage1.window) != cfg.window:
                raise ValueError(f"the one-pass network {cfg.init} has window {tuple(stage1.window)}, "
                                 f"not the training window {cfg.window}")
            model, config = stage1, stage1_config(stage1)
        else:
            model, config = cells_from_stage1(stage1, cfg.window)
        if model.full_resolution and not cfg.full_resolution:
            model, config = without_full_resolution(model, images)
        return model, config

    model = PromptedUNet3d.from_stage1(stage1, rcam=cfg.rcam, window=cfg.window, input_step=cfg.input_step)
    if cfg.foreground:
        model = with_input_channels(model, 2)
    return model, model.config()


def cells_from_stage1(stage1: torch.nn.Module, window: Sequence[int]) -> tuple[torch.nn.Module, dict]:
    """The one-pass network started from a stage-1 soma network, and its config.

    Same encoder, decoder and window (``window`` must be stage 1's); the head gets
    :data:`CELL_MAPS_CHANNELS` outputs: soma and foreground start as the soma
    head (the foreground holds the somas), the offsets with 1 % of the layer's
    random initial weights and bias 0: near 0 and smooth, but not exactly 0
    (with zero weights the offset loss sends no gradient into the decoder; in
    a first run the offsets had not moved after 800 steps).
    """
    import torch

    from traice.nn.prompted import stage1_config
    from traice.nn.unet import TransformerUNet3d

    if tuple(int(w) for w in window) != tuple(stage1.window):
        raise ValueError(f"the one-pass window {tuple(window)} must be the stage-1 network's {tuple(stage1.window)}")
    config = {**stage1_config(stage1), "out_channels": CELL_MAPS_CHANNELS}
    model = TransformerUNet3d(**config)
    state = {k: v for k, v in stage1.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"head.weight", "head.bias"}:
        raise ValueError(f"stage-1 weights do not fit the one-pass network: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        model.head.weight[:2] = stage1.head.weight[:1]
        model.head.bias[:2] = stage1.head.bias[:1]
        model.head.weight[2:] *= 0.01  # offsets start near 0, smooth; not exactly 0, so that their loss
        model.head.bias[2:] = 0.0       # reaches the decoder
    return model, config


def without_full_resolution(model: torch.nn.Module, images: Sequence[torch.Tensor] = ()) -> tuple[torch.nn.Module, dict]:
    """``model`` (a :class:`TransformerUNet3d`) without its full-resolution stage, and its config.

    The encoder and the decoder's coarser steps keep their weights; the first stem block now reads
    the image itself, strided (its convolutions over the input and its projection start afresh, its
    second convolution and norms are the old strided block's), the second is the old third. The
    head, which now predicts each sub-voxel, is new: with ``images`` (windows ``(B, 1, Z, Y, X)``)
    it starts as the least-squares fit of ``model``'s logits (clipped to ±8) on them
    (:func:`fit_head`); without, at the old head's bias with 1 % of a fresh layer's weights. (A
    fresh head's noisy offsets give gradient losses in the thousands; a head near 0 learns its
    readout at Adam's pace, and after 250 steps had not begun to: validation Dice 0.01.)
    """
    import torch

    from traice.nn.prompted import stage1_config
    from traice.nn.unet import TransformerUNet3d

    config = {**stage1_config(model), "full_resolution": False}
    slim = TransformerUNet3d(**config)
    renamed = {"stem.1.": "stem.0.", "stem.2.": "stem.1."}
    source = {}
    for name, value in model.state_dict().items():
        if name.startswith(("stem.0.", "up_stem.2.", "head.")):
            continue  # the full-resolution stage and its head
        prefix = next((p for p in renamed if name.startswith(p)), None)
        source[renamed[prefix] + name[len(prefix):] if prefix else name] = value
    state = slim.state_dict()
    kept = {k: v for k, v in source.items() if k in state and state[k].shape == v.shape}
    lost = sorted(set(source) - set(kept))
    if any(not k.startswith(("stem.0.conv1.", "stem.0.skip.")) for k in lost):
        raise ValueError(f"weights that do not fit the network without its full-resolution stage: {lost}")
    slim.load_state_dict({**state, **kept})
    if len(images):
        fit_head(slim, model, images)
    else:
        with torch.no_grad():
            slim.head.weight *= 0.01
            slim.head.bias.copy_(model.head.bias.repeat_interleave(slim.head.out_channels // model.out_channels))
    return slim, config


def fit_head(model: torch.nn.Module, teacher: torch.nn.Module, images: Sequence[torch.Tensor],
             clip: float = 8.0) -> None:
    """Set ``model``'s 1x1x1 head to the least-squares fit of ``teacher``'s logits (clipped to ±``clip``)
    from ``model``'s last decoder features, over ``images`` (windows ``(B, in, Z, Y, X)``), every voxel
    weighing alike. Both networks have the same outputs; ``model``'s head may predict sub-voxels
    (:func:`traice.nn.unet.subvoxels_to_grid` is undone on the targets)."""
    import torch

    features, targets = [], []
    hook = model.up_stem[-1].register_forward_hook(lambda module, args, out: features.append(out.detach().float()))
    training = model.training, teacher.training
    model.eval(), teacher.eval()
    try:
        with torch.no_grad():
            for x in images:
                model(x)
                targets.append(teacher(x).float().clamp(-clip, clip))
    finally:
        hook.remove()
        model.train(training[0]), teacher.train(training[1])
    fz, fy, fx = model.subvoxels
    rows, goals = [], []
    for f, t in zip(features, targets):
        rows.append(f.permute(0, 2, 3, 4, 1).reshape(-1, f.shape[1]))
        b, c, z, y, x = t.shape  # (B, C, Z, Y, X) -> one row per coarse voxel, its sub-voxels in head order
        t = t.reshape(b, c, z // fz, fz, y // fy, fy, x // fx, fx).permute(0, 2, 4, 6, 1, 3, 5, 7)
        goals.append(t.reshape(-1, c * fz * fy * fx))
    a = torch.cat(rows)
    a = torch.cat([a, torch.ones(len(a), 1)], dim=1)
    solution = torch.linalg.lstsq(a, torch.cat(goals)).solution  # (features + 1, head outputs)
    with torch.no_grad():
        model.head.weight.copy_(solution[:-1].T.reshape(model.head.weight.shape))
        model.head.bias.copy_(solution[-1])


def from_pretrained(model: torch.nn.Module, pretrained: torch.nn.Module) -> torch.nn.Module:
    """Copy the weights of a pretrained (denoising) network into ``model`` of the same architecture, all but
    the output head; position tables of another window share their leading rows (each row is an offset from
    the window's origin, :class:`~traice.nn.blocks.PositionEmbedding3d`). ValueError naming the first
    weight that does not fit (another size or depth)."""
    import torch

    source = pretrained.state_dict()
    state = model.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if name.startswith("head."):
                continue
            if name not in source:
                raise ValueError(f"the pretrained network has no weight {name}: another architecture")
            other = source[name]
            if name.startswith("pos_embed.") and other.shape[1:] == value.shape[1:]:
                n = min(len(value), len(other))
                value[:n] = other[:n]
            elif other.shape == value.shape:
                value.copy_(other)
            else:
                raise ValueError(f"pretrained weight {name} is {tuple(other.shape)}, the network's is "
                                 f"{tuple(value.shape)}: another size")
    model.load_state_dict(state)
    return model
