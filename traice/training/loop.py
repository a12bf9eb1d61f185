"""The training loop: train the models on rendered traces and synthetic fields.

Tasks (:mod:`traice.training.recipes`): ``soma`` (stage 1, soma probability over sliding windows),
``branch`` (stage 2: one cell's arbor, given its soma as the prompt, in a
window centred on that soma; :class:`~traice.nn.prompted.PromptedUNet3d`
initialised from stage-1 weights, ``rcam=False`` for the ablation), ``cells``
(the one-pass maps) and ``pretrain`` (self-supervised: corrupted windows in, clean
windows out, MSE + 10 x SSIM; no labels, so any image trains it).

One loop for every task: random windows biased towards cells with augmentation
(:mod:`traice.training.data`), AdamW with warm-up and cosine decay, mixed precision
(bf16) and cuda when available, a checkpoint every few steps that a killed run
resumes from (model, optimiser, schedule, step and random state), a progress
bar and a metrics log (``metrics.csv``). Validation windows are drawn once from
volumes training never sees; the best model by validation Dice is kept as
``best.pt`` and the last as ``model.pt`` (:func:`traice.nn.checkpoints.save_model`).

The fields of view are split once (:func:`traice.synth.traces.field_split`):
train, validation, test. With ``folds > 1`` the training fields are split into
folds for cross-validation instead, fold ``fold`` validating; the test fields
are never used.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from traice.io.tables import atomic_path, write_json
from traice.core.memory import reuse_freed_memory
from traice.nn.checkpoints import save_model
from traice.nn.device import autocast, pick_device
from traice.core.maps import OFFSET_SCALE_UM
from traice.nn.losses import CellMapsLoss, DenoisingLoss, SegmentationLoss, distillation_loss
from traice.training.data import (NO_AUGMENT, Augment, Volume, branch_window, bright_outside_cells, cell_clearance,
                                  cells_window, faint_outside_cells, load_volumes, pretrain_window, soma_window)
from traice.training.recipes import AUGMENT, TASK_LOSS_WEIGHTS, TrainConfig, build

HEAD_FIT_BATCHES = 8
"""Training batches on which a one-pass network without its full-resolution stage fits its new head
(:func:`traice.training.recipes.fit_head`) before the first step."""

DISTILL_WEIGHT = 1.0
"""Weight of :func:`~traice.nn.losses.distillation_loss` against the truth's loss, with a ``teacher``."""


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _batch(volumes: Sequence[Volume], cfg: TrainConfig, rng: np.random.Generator, augment: Augment) -> dict[str, torch.Tensor]:
    """``{"image", "target"}`` (and for ``branch`` ``"weight"``) ``(B, 1, Z, Y, X)``, ``"points"`` ``(B, 1, 3)``
    (``branch`` with the one-pass foreground: ``"image"`` ``(B, 2, Z, Y, X)``, image and foreground);
    ``cells``: ``{"image", "soma", "foreground", "weight"}`` (and with balanced somas ``"soma_weight"``)
    ``(B, 1, Z, Y, X)``, ``"offsets"`` ``(B, 3, Z, Y, X)``
    and ``"spacing_ratio"`` (3,) the voxel size in offset units."""
    picks = [volumes[rng.integers(len(volumes))] for _ in range(cfg.batch_size)]
    if cfg.task == "cells":
        if len({v.spacing for v in picks}) > 1:
            raise ValueError("one-pass training needs one voxel size in a batch")
        maps = [cells_window(v, cfg.window, rng, augment, cfg.cell_bias, cfg.weight_um, cfg.max_weight,
                             cfg.distractor_bias, cfg.balanced_somas) for v in picks]
        names = ("image", "soma", "foreground", "weight") + (("soma_weight",) if cfg.balanced_somas else ())
        stack = {name: torch.from_numpy(np.stack([getattr(m, name) for m in maps])[:, None]) for name in names}
        stack["offsets"] = torch.from_numpy(np.stack([m.offsets for m in maps]))
        stack["spacing_ratio"] = torch.tensor(picks[0].spacing) / OFFSET_SCALE_UM
        return stack
    if cfg.task in ("soma", "pretrain"):  # pretrain: image corrupted, target the clean window
        pairs = [soma_window(v, cfg.window, rng, augment, cfg.cell_bias) if cfg.task == "soma"
                 else pretrain_window(v, cfg.window, rng, augment) for v in picks]
        return {"image": torch.from_numpy(np.stack([p[0] for p in pairs])[:, None]),
                "target": torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])}
    samples = [branch_window(v, cfg.window, cfg.input_step, rng, augment, cfg.shift, cfg.weight_um, cfg.max_weight)
               for v in picks]
    image = np.stack([w.image for w in samples])[:, None]
    if samples[0].foreground is not None:  # the ownership network: the one-pass foreground is the second channel
        image = np.concatenate([image, np.stack([w.foreground for w in samples])[:, None]], axis=1)
    return {"image": torch.from_numpy(image),
            "target": torch.from_numpy(np.stack([w.target for w in samples])[:, None]),
            "weight": torch.from_numpy(np.stack([w.weight for w in samples])[:, None]),
            "points": torch.from_numpy(np.stack([w.point for w in samples])[:, None])}


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on ``device``, images in the channels-last 3D layout of the model."""
    out = {k: v if k == "spacing_ratio" else v.to(device, non_blocking=True) for k, v in batch.items()}
    out["image"] = out["image"].contiguous(memory_format=torch.channels_last_3d)
    return out


def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["image"], batch["points"]) if "points" in batch else model(batch["image"])


def validation_set(volumes: Sequence[Volume], cfg: TrainConfig) -> list[dict[str, torch.Tensor]]:
    """Fixed validation windows (no augmentation, no shift), drawn once from the validation volumes."""
    rng = np.random.default_rng(cfg.seed + 7919)
    one = dataclasses.replace(cfg, batch_size=1, shift=0.0)
    return [_batch(volumes, one, rng, NO_AUGMENT) for _ in range(cfg.val_windows)] if volumes else []


def _loss(loss_fn, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loss terms of one batch, for either kind of loss."""
    if isinstance(loss_fn, CellMapsLoss):
        return loss_fn.terms(output.float(), batch)
    return loss_fn.terms(output.float(), batch["target"], batch.get("weight"))


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows, loss_fn, device: torch.device) -> dict[str, float]:
    """Mean loss and the Dice of the thresholded prediction (0.5) pooled over the validation windows
    (pretraining: the loss only).

    For the one-pass network ``val_dice`` is the foreground's Dice, ``val_soma_dice`` the soma's,
    ``val_offset_um`` the mean offset error in µm on the true foreground.
    """
    model.eval()
    losses, counts = [], {"inter": 0.0, "total": 0.0, "s_inter": 0.0, "s_total": 0.0, "err": 0.0, "n": 0.0}
    for batch in windows:
        batch = _to_device(batch, device)
        with autocast(device):
            output = _forward(model, batch).float()
        losses.append(float(loss_fn.combine(_loss(loss_fn, output, batch))))
        if isinstance(loss_fn, DenoisingLoss):
            continue  # no segmentation to score
        cells = isinstance(loss_fn, CellMapsLoss)
        target = batch["foreground"] if cells else batch["target"]
        pred = ((output[:, 1:2] if cells else output) > 0).float()
        counts["inter"] += float((pred * target).sum())
        counts["total"] += float(pred.sum() + target.sum())
        if cells:
            soma = (output[:, :1] > 0).float()
            counts["s_inter"] += float((soma * batch["soma"]).sum())
            counts["s_total"] += float(soma.sum() + batch["soma"].sum())
            error = (output[:, 2:] - batch["offsets"]).norm(dim=1, keepdim=True) * OFFSET_SCALE_UM
            counts["err"] += float((error * target).sum())
            counts["n"] += float(target.sum())
    model.train()
    nan = float("nan")
    out = {"val_loss": float(np.mean(losses)) if losses else nan}
    if isinstance(loss_fn, DenoisingLoss):
        return out
    out["val_dice"] = 2 * counts["inter"] / counts["total"] if counts["total"] else nan
    if isinstance(loss_fn, CellMapsLoss):
        out["val_soma_dice"] = 2 * counts["s_inter"] / counts["s_total"] if counts["s_total"] else nan
        out["val_offset_um"] = counts["err"] / counts["n"] if counts["n"] else nan
    return out


def train(cfg: TrainConfig, sources: dict[str, list], out_dir: str | Path, cache: str | Path | None = None,
          progress: bool = True) -> dict:
    """Train (or resume) into ``out_dir``; returns a summary (also written to ``training.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    reuse_freed_memory()
    torch.manual_seed(cfg.seed)
    started = time.time()
    teacher = None
    if cfg.teacher:  # checked before the data load: a wrong file fails at once
        from traice.nn.checkpoints import load_one_pass

        teacher = load_one_pass(cfg.teacher, "--teacher").eval().requires_grad_(False)
    train_volumes = load_volumes(sources["train"], cache or out / "cache")
    val_volumes = load_volumes(sources["val"], cache or out / "cache")
    if cfg.task == "branch" and cfg.foreground:  # the ownership network's second input
        from traice.training.foreground import attach_foreground

        attach_foreground(train_volumes + val_volumes, cfg.foreground, cache or out / "cache", progress)
    if cfg.distractor_bias > 0:  # hard negatives: where the bright (and faint) things that are not microglia are
        for volume in train_volumes:
            clearance = cell_clearance(volume)
            volume.distractors = bright_outside_cells(volume, clearance=clearance)
            if cfg.faint_distractors:
                volume.distractors = np.concatenate([volume.distractors, faint_outside_cells(volume, clearance=clearance)])
    if not train_volumes:
        raise ValueError("no training volumes")
    data_seconds = time.time() - started

    head_windows = []  # a network losing its full-resolution stage fits its new head on these first
    if cfg.task == "cells" and not cfg.full_resolution:
        head_rng = np.random.default_rng(cfg.seed + 104729)  # its own draws: the training's stay as they were
        head_windows = [_batch(train_volumes, cfg, head_rng, NO_AUGMENT)["image"] for _ in range(HEAD_FIT_BATCHES)]
    model, config = build(cfg, head_windows)
    if teacher is not None:
        teacher = teacher.to(device, memory_format=torch.channels_last_3d)
    model = model.to(device, memory_format=torch.channels_last_3d)  # 2x faster backward on the CPU
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _lr_factor(s, cfg.warmup, cfg.steps))
    loss_fn = (CellMapsLoss() if cfg.task == "cells" else DenoisingLoss() if cfg.task == "pretrain"
               else SegmentationLoss(*(cfg.loss_weights or TASK_LOSS_WEIGHTS[cfg.task])))  # Dice, Focal, clDice weights
    rng = np.random.default_rng(cfg.seed)
    step, best, elapsed = 0, -math.inf, 0.0  # any first score is the best so far (a loss may exceed 1)
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        # on the CPU: the RNG state must stay there; the weights and the optimiser state follow the model
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, best, elapsed = state["step"], state["best"], state["elapsed"]
    val = validation_set(val_volumes, cfg)
    log_path = out / "metrics.csv"
    fields = (["step", "loss", "soma_dice", "soma_focal", "fg_dice", "fg_focal", "fg_cldice", "offset_mse", "offset_grad",
               *(["distill"] if cfg.teacher else []),
               "lr", "val_loss", "val_dice", "val_soma_dice", "val_offset_um", "seconds"] if cfg.task == "cells"
              else ["step", "loss", "mse", "ssim", "lr", "val_loss", "seconds"] if cfg.task == "pretrain"
              else ["step", "loss", "dice", "focal", "cldice", "lr", "val_loss", "val_dice", "seconds"])
    if not log_path.exists():
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    augment = dataclasses.replace(AUGMENT[cfg.task], coarser_p=cfg.coarser_p, magnify_p=cfg.magnify_p)
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.task} {cfg.size}", unit="step", disable=not progress)
    t0 = time.time() - elapsed
    running: list[dict[str, float]] = []
    skipped = 0
    while step < cfg.steps:
        batch = _to_device(_batch(train_volumes, cfg, rng, augment), device)
        with autocast(device, training=True):
            output = _forward(model, batch)
        terms = _loss(loss_fn, output, batch)
        loss = loss_fn.combine(terms)
        if teacher is not None:
            with torch.no_grad(), autocast(device, training=True):
                taught = teacher(batch["image"])
            terms["distill"] = distillation_loss(output, taught)
            loss = loss + DISTILL_WEIGHT * terms["distill"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(norm):  # a non-finite gradient would turn every weight to NaN: skip that step
            optimiser.step()
        else:
            skipped += 1
        schedule.step()
        step += 1
        running.append({"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
        bar.update(1)
        bar.set_postfix(loss=f"{running[-1]['loss']:.3f}")
        last = step == cfg.steps
        if step % cfg.eval_every == 0 or last:
            metrics = evaluate(model, val, loss_fn, device) if val else {"val_loss": float("nan"), "val_dice": float("nan")}
            mean = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
            running = []
            row = {"step": step, **mean, "lr": schedule.get_last_lr()[0], **metrics, "seconds": time.time() - t0}
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([row.get(k, "") for k in fields])
            score = _score(metrics, mean)
            if score > best:
                best = score
                save_model(model, config, out / "best.pt", _meta(cfg, sources, step, row))
        if step % cfg.checkpoint_every == 0 or last:
            _save_checkpoint(checkpoint, model, optimiser, schedule, rng, step, best, time.time() - t0)
    bar.close()
    seconds = time.time() - t0
    summary = {"task": cfg.task, "steps": step, "skipped_steps": skipped, "best_val_dice": best, "train_seconds": seconds,
               "data_seconds": data_seconds, "device": str(device), "device_name": _device_name(device),
               "train_volumes": [v.name for v in train_volumes], "val_volumes": [v.name for v in val_volumes],
               "config": dataclasses.asdict(cfg), "model": config}
    save_model(model, config, out / "model.pt", _meta(cfg, sources, step, summary))
    write_json(summary, out / "training.json")
    return summary


def _score(metrics: dict[str, float], mean: dict[str, float]) -> float:
    """What picks the best model: validation Dice (the one-pass network: the mean of foreground and soma Dice),
    else (pretraining) minus the validation loss, else minus the training loss without validation windows."""
    dice = [metrics[k] for k in ("val_dice", "val_soma_dice") if k in metrics and not math.isnan(metrics[k])]
    if dice:
        return float(np.mean(dice))
    loss = metrics.get("val_loss", float("nan"))
    return -loss if "val_dice" not in metrics and not math.isnan(loss) else -mean["loss"]


def _meta(cfg: TrainConfig, sources: dict, step: int, metrics: dict) -> dict:
    return json.loads(json.dumps({"task": cfg.task, "step": step, "config": dataclasses.asdict(cfg),
                                  "train_sources": sources["train"], "val_sources": sources["val"],
                                  "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}},
                                 default=str))


def _save_checkpoint(path: Path, model, optimiser, schedule, rng, step: int, best: float, elapsed: float) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "step": step, "best": best,
                    "elapsed": elapsed}, tmp)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"
