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

The other outputs (foreground, offsets) have no labels here, so they are held
to what the base network says on the same window (squared difference of the
outputs, :data:`KEEP_WEIGHT`), and the arbors keep working.

``mode="lora"`` trains low-rank adapters on the encoder attention's query and
value projections and the output head (:mod:`traice.nn.lora`), written as a
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
from traice.core.grid import MODEL_SPACING_UM, needs_resampling, to_model_grid
from traice.core.intensity import grid_stats, model_input
from traice.io.ome import OmeImage, open_image
from traice.io.tables import atomic_path
from traice.nn.device import pick_device
from traice.nn.losses import SegmentationLoss
from traice.training.data import Augment, augment_intensity, flip_turn

CHECKPOINT_EVERY = 25  # steps between resumable checkpoints (OUT.partial.pt)
KEEP_WEIGHT = 1.0   # weight of holding the unlabelled outputs (foreground, offsets) to the base network's
POINT_COLUMNS = {("z_um", "y_um", "x_um"): "um", ("z", "y", "x"): "voxel", ("axis-0", "axis-1", "axis-2"): "um"}


@dataclass(frozen=True)
class FinetuneConfig:
    mode: str = "lora"                       # lora (adapters + head) | full (every weight)
    rank: int = 4                            # LoRA rank
    alpha: float | None = None               # LoRA scale numerator (default 2 x rank)
    stages: tuple[int, ...] | None = None    # encoder stages adapted (None: all)
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


@dataclass
class Crop:
    """A neighbourhood on the networks' grid: model input (Z, Y, X) float32, the clicks in it (N, 3) and the
    box where the clicks are complete ((2, 3): start, stop; None: nowhere), in its voxels."""

    image: np.ndarray
    clicks: np.ndarray
    complete: np.ndarray | None = None


def crop_centres(points_um: np.ndarray, complete_um: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Where crops are read (N, 3) µm: every click and, with a complete box, as many random places inside it
    (at least 4)."""
    if complete_um is None:
        return points_um
    extra = rng.uniform(complete_um[0], complete_um[1], size=(max(len(points_um), 4), 3))
    return np.concatenate([points_um, extra])


def click_crops(image: OmeImage, stats: dict, points_um: np.ndarray, window: Sequence[int],
                centres_um: np.ndarray | None = None, complete_um: np.ndarray | None = None) -> list[Crop]:
    """Around every centre (default: the clicks), the model input: the window plus half a window each side (room
    to shift), read from the image, resampled onto the networks' grid; padded with the background outside the
    image. Each crop knows the clicks and the complete box in its own voxels."""
    spacing = np.asarray(image.spacing, float)
    model = np.asarray(MODEL_SPACING_UM)
    half_um = np.asarray(window) * model  # a whole window each side of the centre
    shape = tuple(int(2 * w) for w in window)
    crops = []
    for p in points_um if centres_um is None else centres_um:
        box = Box.from_um(p - half_um, p + half_um, spacing)
        inside = box.intersect(image.bounds)
        raw = np.full(box.shape, stats["median"], np.float32)
        if not inside.empty:
            raw[inside.relative_to(box).slices] = image.read(inside)
        grid = to_model_grid(raw, spacing) if needs_resampling(spacing) else raw
        grid = _fit(grid, shape, stats["median"])
        origin_um = np.asarray(box.start) * spacing
        clicks = (points_um - origin_um) / model
        complete = None if complete_um is None else ((np.asarray(complete_um) - origin_um) / model).astype(np.float32)
        crops.append(Crop(model_input(grid, grid_stats(stats)), clicks.astype(np.float32), complete))
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
    images, somas, weights = [], [], []
    for _ in range(cfg.batch_size):
        crop = crops[int(rng.integers(len(crops)))]
        centre = np.asarray(crop.image.shape) // 2
        start = centre - window // 2 + rng.integers(-(window // 4), window // 4 + 1)
        start = np.clip(start, 0, np.asarray(crop.image.shape) - window)
        image = crop.image[tuple(slice(a, a + w) for a, w in zip(start, window))]
        complete = None if crop.complete is None else crop.complete - start
        soma, weight = targets(window, crop.clicks - start, cfg, complete)
        (image, soma, weight), _ = flip_turn([image, soma, weight], None, rng, augment)
        images.append(augment_intensity(image, rng, augment))
        somas.append(soma)
        weights.append(weight)
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)[:, None])  # noqa: E731
    return {"image": as_tensor(images), "soma": as_tensor(somas), "weight": as_tensor(weights)}


def finetune(image_path: str | Path, points_path: str | Path, out_path: str | Path, cfg: FinetuneConfig = FinetuneConfig(),
             base_path: str | Path | None = None, channel: int | None = None,
             complete_um: Sequence[Sequence[float]] | None = None) -> dict:
    """Fine-tune the one-pass network (``base_path``, default the shipped weights) on the clicked somas of an
    image; write the adapter (lora) or the whole checkpoint (full) to ``out_path``. Returns a summary.

    ``complete_um``: (start, stop) µm (z, y, x) of a box in which every soma was clicked, or None."""
    from traice.nn import lora
    from traice.nn.checkpoints import load_checkpoint, load_model, save_model
    from traice.stages.plan import intensity_stats
    from traice.weights import shipped_weights

    image = open_image(image_path, channel)
    points = read_points(points_path, image.spacing)
    outside = ~np.all((points >= 0) & (points < np.asarray(image.shape) * np.asarray(image.spacing)), axis=1)
    if outside.any():
        raise InputError(f"soma points {points_path}: point {int(np.flatnonzero(outside)[0]) + 1} "
                         f"{points[outside][0].round(1).tolist()} µm lies outside the image")
    box = None
    if complete_um is not None:
        box = np.asarray(complete_um, float).reshape(2, 3)
        extent = np.asarray(image.shape) * np.asarray(image.spacing)
        if not (np.all(box[0] < box[1]) and np.all(box[0] >= 0) and np.all(box[1] <= extent + 1e-6)):
            raise InputError(f"complete box {box.tolist()} µm: expected start < stop inside the image "
                             f"(0 to {extent.round(1).tolist()} µm)")
    base_path = Path(base_path) if base_path is not None else shipped_weights("cells")
    base = load_model(base_path)
    if base.head.out_channels != 5:
        raise InputError(f"{base_path}: fine-tuning needs the one-pass network (5 outputs), not a soma-only model")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    started = time.perf_counter()
    stats = intensity_stats(image)
    crops = click_crops(image, stats, points, cfg.window, crop_centres(points, box, np.random.default_rng(cfg.seed)), box)
    torch.manual_seed(cfg.seed)
    teacher = copy.deepcopy(base).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad = False
    fingerprint = lora.fingerprint(base)
    model = lora.add_adapters(base, cfg.rank, cfg.alpha, cfg.stages) if cfg.mode == "lora" else base
    model = model.to(device).train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=0.0 if cfg.mode == "lora" else 1e-4)
    rng = np.random.default_rng(cfg.seed)
    step, elapsed = 0, 0.0
    partial = Path(str(out_path) + ".partial.pt")
    if partial.exists():  # resume a killed run where it stopped
        state = torch.load(partial, map_location="cpu", weights_only=True)
        if state["config"] == asdict(cfg) and state["points"] == points.tolist() and state["complete"] == _plain(box):
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
        loss = loss_fn(out[:, :1], batch["soma"], batch["weight"]) + KEEP_WEIGHT * ((out[:, 1:] - kept[:, 1:]) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        step += 1
        elapsed += time.perf_counter() - t0
        if step % CHECKPOINT_EVERY == 0 and step < cfg.steps:
            with atomic_path(partial) as tmp:
                torch.save({"config": asdict(cfg), "points": points.tolist(), "complete": _plain(box),
                            "model": model.state_dict(),
                            "optimiser": optimiser.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "step": step, "elapsed": elapsed}, tmp)
    model = model.cpu().eval()
    summary = {"mode": cfg.mode, "clicks": len(points), "steps": cfg.steps, "trainable_parameters": lora.trainable_parameters(model),
               "complete_um": _plain(box), "train_seconds": round(elapsed, 1), "setup_seconds": round(time.perf_counter() - started - elapsed, 1),
               "final_loss": float(np.mean(losses[-10:])) if losses else None, "image": str(image_path),
               "base": str(base_path), "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
    if cfg.mode == "lora":
        lora.save_adapter(model, fingerprint, {"rank": cfg.rank, "alpha": cfg.alpha if cfg.alpha is not None else 2 * cfg.rank,
                                               "stages": list(cfg.stages) if cfg.stages is not None else None},
                          out_path, meta=summary)
    else:
        save_model(model, load_checkpoint(base_path)["config"], out_path, meta=summary)
    partial.unlink(missing_ok=True)
    summary["file_bytes"] = Path(out_path).stat().st_size
    return summary


def _plain(box: np.ndarray | None) -> list | None:
    return None if box is None else box.tolist()

