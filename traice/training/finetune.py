"""Fine-tune the one-pass network to a new microscope from a few clicked somas.

What a lab has: an image (OME-Zarr, any voxel size) and the centres of a few
somas in it, clicked in napari or Fiji (:func:`read_points`). The labels are
sparse: the image holds many more cells than were clicked. So the soma channel
learns only near the clicks, where the answer is known:

- a ball of ``soma_radius_um`` around each click is soma;
- a shell from ``negative_um[0]`` to ``negative_um[1]`` around each click is
  not soma (microglial somas lie further apart than that, about 30 µm and more);
- everywhere else the soma channel is not trained, except in a box where the
  user says every soma was clicked (``complete_um``, "I clicked all somas in
  this 100 µm cube"): there everything away from the clicks is not soma
  either, and windows are also drawn at random inside the box, so bright
  things that are not microglia (puncta, macrophages) are seen and learnt.

Traced arbors (SWC files from SNT, Imaris or neuTube, in µm of the image) are
labels for the foreground too (:func:`trace_targets`): a traced process is
foreground, a band around it (:data:`TRACE_NEGATIVE_UM`) within its cell's reach
is not (a tracer would have followed a process there), and the rest is not
trained. Each traced cell's root counts as a clicked soma.

The outputs without labels (the offsets, and the foreground away from any
trace) are held to what the base network says on the same window (squared
difference of the outputs, :data:`KEEP_WEIGHT`), so the arbors keep working.

``mode="lora"`` trains low-rank adapters on the encoder attention's query and
value projections, the output head and (``norms``, the default) the
normalisation layers' scales and shifts (:mod:`traice.nn.lora`), written as a
small file that ``detect.adapter`` loads over the base weights; ``mode="full"``
trains every weight and writes a whole checkpoint (for ``detect.model``). Each
click's neighbourhood is read once onto the networks' grid; windows are drawn
around random clicks, shifted, flipped, turned and with intensity jitter. A
killed run resumes from ``OUT.partial.pt`` to the same result.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from traice.core.errors import InputError
from traice.core.geometry import Box
from traice.core.grid import MODEL_SPACING_UM, grid_input, to_model_grid
from traice.core.intensity import grid_stats
from traice.core.maps import CHANNELS
from traice.core.memory import reuse_freed_memory
from traice.io.ome import OmeImage, open_image
from traice.io.tables import atomic_path
from traice.nn.device import pick_device
from traice.nn.losses import SegmentationLoss
from traice.training.data import Augment, augment_intensity, flip_turn

TRACE_NEGATIVE_UM = (1.5, 4.0)
"""Voxels this far (µm) from a traced process are not foreground: a tracer would have followed one there ..."""
TRACE_REACH_UM = 40.0
"""... within this distance of the traced cell's soma (its arbor's reach)."""
TRACE_MIN_RADIUS_UM = 0.4
"""Thinner traced radii (often 0 or unset) are drawn this wide: one voxel of the networks' grid in y and x."""
CHECKPOINT_EVERY = 25  # steps between resumable checkpoints (OUT.partial.pt)
KEEP_WEIGHT = 1.0   # weight of holding the unlabelled outputs (foreground, offsets) to the base network's
POINT_COLUMNS = {("z_um", "y_um", "x_um"): "um", ("z", "y", "x"): "voxel", ("axis-0", "axis-1", "axis-2"): "um"}


@dataclass(frozen=True)
class FinetuneConfig:
    mode: str = "lora"                       # lora (adapters + head) | full (every weight)
    rank: int = 4                            # LoRA rank
    alpha: float | None = None               # LoRA scale numerator (default 2 x rank)
    stages: tuple[int, ...] | None = None    # encoder stages adapted (None: all)
    norms: bool = True                       # lora: also train the normalisation layers' scales and shifts
    steps: int = 150
    lr: float | None = None                  # default 1e-3 for lora, 1e-4 for full
    batch_size: int = 2
    window: tuple[int, int, int] = (16, 128, 128)   # on the networks' grid
    soma_radius_um: float = 4.0
    negative_um: tuple[float, float] = (9.0, 20.0)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise InputError(f"fine-tuning mode {self.mode!r}: expected lora or full")
        if not 0 < self.soma_radius_um < self.negative_um[0] < self.negative_um[1]:
            raise InputError("fine-tuning radii: expected 0 < soma_radius_um < negative_um[0] < negative_um[1]")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.mode == "lora" else 1e-4)


def read_points(path: str | Path, spacing: Sequence[float]) -> np.ndarray:
    """Clicked soma centres (N, 3) in µm (z, y, x) from a CSV: columns ``z_um, y_um, x_um`` (µm),
    ``z, y, x`` (level-0 voxels, from 0) or napari's ``axis-0, axis-1, axis-2`` (a points layer saved from
    ``traice view``, whose world is µm). InputError naming the file otherwise."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise InputError(f"soma points {path}: cannot read it as CSV ({type(err).__name__}: {err})".replace("\n", " ")) from None
    for columns, unit in POINT_COLUMNS.items():
        if all(c in table for c in columns):
            points = table[list(columns)].to_numpy(dtype=float)
            if not np.isfinite(points).all():
                raise InputError(f"soma points {path}: some coordinates are empty or not numbers")
            if not len(points):
                raise InputError(f"soma points {path}: no points")
            return points * np.asarray(spacing, float) if unit == "voxel" else points
    raise InputError(f"soma points {path}: expected columns z_um,y_um,x_um (µm), z,y,x (voxels) or napari's "
                     f"axis-0,axis-1,axis-2; found {list(table.columns)}")


def read_traces(path: str | Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Traced arbors from one SWC file or a folder of them (µm, as :func:`traice.io.swc.read_swc`: nodes (N, 3)
    z, y, x, radii, parents); InputError naming the file for a folder without any or a malformed file."""
    from traice.io.swc import SwcError, read_swc

    path = Path(path)
    files = sorted(path.glob("*.swc")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"traced arbors {path}: the folder holds no .swc file")
    trees = []
    for file in files:
        try:
            trees.append(read_swc(file))
        except (SwcError, OSError) as err:
            raise InputError(f"traced arbors {file}: {err}".replace("\n", " ")) from None
    return trees


def trace_targets(trees: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], origin_um: np.ndarray,
                  shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Foreground target and its weight (uint8, ``shape`` voxels of the networks' grid starting at ``origin_um``)
    from traced arbors: 1 on each traced tube (radius at least :data:`TRACE_MIN_RADIUS_UM`); weight 1 there and
    in the band :data:`TRACE_NEGATIVE_UM` around the tubes within :data:`TRACE_REACH_UM` of a traced soma."""
    from scipy import ndimage

    from traice.synth.raster import tube_mask

    model = np.asarray(MODEL_SPACING_UM)
    box = Box.from_shape(shape)
    extent = np.asarray(shape) * model
    tubes = np.zeros(tuple(shape), bool)
    near_soma = np.zeros(tuple(shape), bool)
    grids = None
    for points, radii, parents in trees:
        local = points - origin_um
        if np.any(local.min(0) > extent + TRACE_REACH_UM) or np.any(local.max(0) < -TRACE_REACH_UM):
            continue  # nowhere near this crop
        tubes |= tube_mask(local, np.maximum(radii, TRACE_MIN_RADIUS_UM), parents, box, model)
        if grids is None:
            grids = np.meshgrid(*[np.arange(n) * m for n, m in zip(shape, model)], indexing="ij", sparse=True)
        near_soma |= sum((g - c) ** 2 for g, c in zip(grids, local[0])) <= TRACE_REACH_UM**2
    if not tubes.any():
        return np.zeros(tuple(shape), np.uint8), np.zeros(tuple(shape), np.uint8)
    away = ndimage.distance_transform_edt(~tubes, sampling=model)
    band = (away >= TRACE_NEGATIVE_UM[0]) & (away <= TRACE_NEGATIVE_UM[1]) & near_soma
    return tubes.astype(np.uint8), (tubes | band).astype(np.uint8)


@dataclass
class Crop:
    """A neighbourhood on the networks' grid: model input (Z, Y, X) float32, the clicks in it (N, 3) and the
    box where the clicks are complete ((2, 3): start, stop; None: nowhere), in its voxels; with traced arbors,
    the foreground target and its weight (Z, Y, X) uint8 (:func:`trace_targets`)."""

    image: np.ndarray
    clicks: np.ndarray
    complete: np.ndarray | None = None
    foreground: np.ndarray | None = None
    foreground_weight: np.ndarray | None = None


def crop_centres(points_um: np.ndarray, complete_um: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Where crops are read (N, 3) µm: every click and, with a complete box, as many random places inside it
    (at least 4)."""
    if complete_um is None:
        return points_um
    extra = rng.uniform(complete_um[0], complete_um[1], size=(max(len(points_um), 4), 3))
    return np.concatenate([points_um, extra])


def click_crops(image: OmeImage, stats: dict, points_um: np.ndarray, window: Sequence[int],
                centres_um: np.ndarray | None = None, complete_um: np.ndarray | None = None,
                traces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] = ()) -> list[Crop]:
    """Around every centre (default: the clicks), the model input: the window plus half a window each side (room
    to shift), read from the image, resampled onto the networks' grid; padded with the background outside the
    image. Each crop knows the clicks and the complete box in its own voxels and, with ``traces``, the
    foreground they label."""
    spacing = np.asarray(image.spacing, float)
    model = np.asarray(MODEL_SPACING_UM)
    half_um = np.asarray(window) * model  # a whole window each side of the centre
    shape = tuple(int(2 * w) for w in window)
    crops = []
    for p in points_um if centres_um is None else centres_um:
        box = Box.from_um(p - half_um, p + half_um, spacing)
        inside = box.intersect(image.bounds)
        raw = np.full(box.shape, grid_stats(stats)["median"], np.float32)  # the background the input is set to 0 at
        outside = np.ones(box.shape, np.float32)
        if not inside.empty:
            raw[inside.relative_to(box).slices] = image.read(inside)
            outside[inside.relative_to(box).slices] = 0
        grid = grid_input(raw, spacing, stats)
        # grid voxels wholly outside the image: flat background, without the noise grid_input mends in
        grid[to_model_grid(outside, spacing, grid.shape) > 0.999] = 0.0
        grid = _fit(grid, shape, 0.0)
        origin_um = np.asarray(box.start) * spacing
        clicks = (points_um - origin_um) / model
        complete = None if complete_um is None else ((np.asarray(complete_um) - origin_um) / model).astype(np.float32)
        crop = Crop(grid, clicks.astype(np.float32), complete)
        if traces:
            crop.foreground, crop.foreground_weight = trace_targets(traces, origin_um, shape)
        crops.append(crop)
    return crops


def _fit(array: np.ndarray, shape: Sequence[int], fill: float) -> np.ndarray:
    """``array`` cropped or padded (with ``fill``) at its end to ``shape``."""
    out = np.full(shape, fill, np.float32)
    n = [min(a, b) for a, b in zip(array.shape, shape)]
    out[: n[0], : n[1], : n[2]] = array[: n[0], : n[1], : n[2]]
    return out


def targets(shape: Sequence[int], clicks: np.ndarray, cfg: FinetuneConfig,
            complete: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Soma target and its loss weight (Z, Y, X) float32 for a window with ``clicks`` (N, 3) in its voxels:
    1 within ``soma_radius_um`` of a click, weight 1 there, in the negative shell and, inside the ``complete``
    box ((2, 3) start, stop voxels), everywhere at least ``negative_um[0]`` from a click; 0 elsewhere."""
    model = np.asarray(MODEL_SPACING_UM, np.float32)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    nearest = np.full(shape, np.inf, np.float32)
    for c in clicks:
        d2 = sum(((g - c[a]) * model[a]) ** 2 for a, g in enumerate(grids))
        np.minimum(nearest, d2, out=nearest)
    nearest = np.sqrt(nearest)
    soma = (nearest <= cfg.soma_radius_um).astype(np.float32)
    negative = (nearest >= cfg.negative_um[0]) & (nearest <= cfg.negative_um[1])
    if complete is not None:
        lo, hi = np.asarray(complete, np.float32)
        inside = np.ones(tuple(shape), bool)
        for a, g in enumerate(grids):
            inside &= (g >= lo[a]) & (g < hi[a])
        negative |= inside & (nearest >= cfg.negative_um[0])
    return soma, ((soma > 0) | negative).astype(np.float32)


def draw_batch(crops: Sequence[Crop], cfg: FinetuneConfig, rng: np.random.Generator, augment: Augment) -> dict:
    """A batch of windows around random clicks (shifted by up to half a window), with their targets."""
    window = np.asarray(cfg.window)
    arrays = {name: [] for name in ("image", "soma", "weight", "foreground", "foreground_weight")}
    for _ in range(cfg.batch_size):
        crop = crops[int(rng.integers(len(crops)))]
        centre = np.asarray(crop.image.shape) // 2
        start = centre - window // 2 + rng.integers(-(window // 4), window // 4 + 1)
        start = np.clip(start, 0, np.asarray(crop.image.shape) - window)
        inside = tuple(slice(a, a + w) for a, w in zip(start, window))
        complete = None if crop.complete is None else crop.complete - start
        soma, weight = targets(window, crop.clicks - start, cfg, complete)
        if crop.foreground is None:  # no traces: the foreground is not trained here
            foreground = foreground_weight = np.zeros(tuple(window), np.float32)
        else:
            foreground, foreground_weight = (a[inside].astype(np.float32) for a in (crop.foreground, crop.foreground_weight))
        window_arrays, _ = flip_turn([crop.image[inside], soma, weight, foreground, foreground_weight], None, rng, augment)
        window_arrays = [augment_intensity(window_arrays[0], rng, augment), *window_arrays[1:]]
        for name, array in zip(arrays, window_arrays):
            arrays[name].append(array)
    return {name: torch.from_numpy(np.stack(a)[:, None]) for name, a in arrays.items()}


def finetune(image_path: str | Path, points_path: str | Path, out_path: str | Path, cfg: FinetuneConfig = FinetuneConfig(),
             base_path: str | Path | None = None, channel: int | None = None,
             complete_um: Sequence[Sequence[float]] | None = None, traces_path: str | Path | None = None) -> dict:
    """Fine-tune the one-pass network (``base_path``, default the shipped weights) on the clicked somas of an
    image; write the adapter (lora) or the whole checkpoint (full) to ``out_path``. Returns a summary.

    ``complete_um``: (start, stop) µm (z, y, x) of a box in which every soma was clicked, or None.
    ``traces_path``: an SWC file or a folder of them (µm of the image), traced arbors that label the
    foreground too (:func:`trace_targets`); their roots count as clicked somas."""
    from traice.nn import lora
    from traice.nn.checkpoints import load_checkpoint, load_model, save_model
    from traice.stages.plan import image_tissue, intensity_stats
    from traice.weights import shipped_weights

    image = open_image(image_path, channel)
    points = read_points(points_path, image.spacing)
    image_um = np.asarray(image.shape) * np.asarray(image.spacing)
    outside = ~np.all((points >= 0) & (points < image_um), axis=1)
    if outside.any():
        raise InputError(f"soma points {points_path}: point {int(np.flatnonzero(outside)[0]) + 1} "
                         f"{points[outside][0].round(1).tolist()} µm lies outside the image")
    traces = read_traces(traces_path) if traces_path is not None else []
    for number, (nodes, _, _) in enumerate(traces, 1):
        if not np.all((nodes[0] >= 0) & (nodes[0] < image_um)):
            raise InputError(f"traced arbors {traces_path}: the soma of tree {number} {nodes[0].round(1).tolist()} µm "
                             f"lies outside the image (0 to {image_um.round(1).tolist()} µm; SWC must be in µm of the image)")
        if np.linalg.norm(points - nodes[0], axis=1).min() > cfg.soma_radius_um:
            points = np.concatenate([points, nodes[:1]])  # a traced cell's root is a clicked soma
    box = None
    if complete_um is not None:
        box = np.asarray(complete_um, float).reshape(2, 3)
        extent = np.asarray(image.shape) * np.asarray(image.spacing)
        if not (np.all(box[0] < box[1]) and np.all(box[0] >= 0) and np.all(box[1] <= extent + 1e-6)):
            raise InputError(f"complete box {box.tolist()} µm: expected start < stop inside the image "
                             f"(0 to {extent.round(1).tolist()} µm)")
    base_path = Path(base_path) if base_path is not None else shipped_weights("cells")
    base = load_model(base_path)
    if base.out_channels != len(CHANNELS):
        raise InputError(f"{base_path}: fine-tuning needs the one-pass network ({len(CHANNELS)} outputs), not a soma-only model")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    reuse_freed_memory()
    started = time.perf_counter()
    stats = intensity_stats(image, tissue=image_tissue(image))
    crops = click_crops(image, stats, points, cfg.window, crop_centres(points, box, np.random.default_rng(cfg.seed)), box,
                        traces)
    torch.manual_seed(cfg.seed)
    teacher = copy.deepcopy(base).to(device).eval().requires_grad_(False)
    fingerprint = lora.fingerprint(base)
    model = lora.add_adapters(base, cfg.rank, cfg.alpha, cfg.stages, cfg.norms) if cfg.mode == "lora" else base
    model = model.to(device).train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=0.0 if cfg.mode == "lora" else 1e-4)
    rng = np.random.default_rng(cfg.seed)
    step, elapsed = 0, 0.0
    partial = Path(str(out_path) + ".partial.pt")
    if partial.exists():  # resume a killed run where it stopped
        state = torch.load(partial, map_location="cpu", weights_only=True)
        if (state["config"] == asdict(cfg) and state["points"] == points.tolist() and state["complete"] == _plain(box)
                and state.get("traced", 0) == len(traces)):
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            step, elapsed = state["step"], state["elapsed"]
    loss_fn = SegmentationLoss(cldice_weight=0.0)
    augment = Augment(rotate_deg=0.0, affine_p=0.0)
    losses = []
    while step < cfg.steps:
        t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in draw_batch(crops, cfg, rng, augment).items()}
        out = model(batch["image"])
        with torch.no_grad():
            kept = teacher(batch["image"])
        unlabelled = torch.cat([1 - batch["foreground_weight"], torch.ones_like(out[:, 2:])], dim=1)  # foreground, offsets
        loss = (loss_fn(out[:, :1], batch["soma"], batch["weight"])
                + KEEP_WEIGHT * (unlabelled * (out[:, 1:] - kept[:, 1:]) ** 2).mean())
        if traces:
            loss = loss + loss_fn(out[:, 1:2], batch["foreground"], batch["foreground_weight"])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        step += 1
        elapsed += time.perf_counter() - t0
        if step % CHECKPOINT_EVERY == 0 and step < cfg.steps:
            with atomic_path(partial) as tmp:
                torch.save({"config": asdict(cfg), "points": points.tolist(), "complete": _plain(box), "traced": len(traces),
                            "model": model.state_dict(),
                            "optimiser": optimiser.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "step": step, "elapsed": elapsed}, tmp)
    model = model.cpu().eval()
    summary = {"mode": cfg.mode, "clicks": len(points), "traced_cells": len(traces), "steps": cfg.steps, "trainable_parameters": lora.trainable_parameters(model),
               "complete_um": _plain(box), "train_seconds": round(elapsed, 1), "setup_seconds": round(time.perf_counter() - started - elapsed, 1),
               "final_loss": float(np.mean(losses[-10:])) if losses else None, "image": str(image_path),
               "base": str(base_path), "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
    if cfg.mode == "lora":
        lora.save_adapter(model, fingerprint, {"rank": cfg.rank, "alpha": cfg.alpha if cfg.alpha is not None else 2 * cfg.rank,
                                               "stages": list(cfg.stages) if cfg.stages is not None else None,
                                               "norms": cfg.norms},
                          out_path, meta=summary)
    else:
        save_model(model, load_checkpoint(base_path)["config"], out_path, meta=summary)
    partial.unlink(missing_ok=True)
    summary["file_bytes"] = Path(out_path).stat().st_size
    return summary


def _plain(box: np.ndarray | None) -> list | None:
    return None if box is None else box.tolist()

