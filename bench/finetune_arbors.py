"""A new microscope from a few traced cells: SWC arbors as fine-tuning labels, scored on the arbors.

Usage:
    python bench/finetune_arbors.py [--traced 10] [--conditions clicks-lora traces-lora traces-full]
                                    [--regime lightsheet] [--steps 150] [--fields 3] [--lr LR]
                                    [--norms | --no-norms] [--no-baseline]
                                    [--data ../shared/data/morphomics_kxa] [--out /tmp/traice-finetune-arbors]

Domain: the real mouse-cortex tracings of ``--data`` rendered in another
imaging regime (default ``lightsheet``: 2 × 1 × 1 µm voxels, a broad axial
PSF, low signal over a high background; traice.synth.regimes), far from the
confocal-like fields the shipped one-pass network was trained on.

Labels, as a lab would make them: on the first *train* field, the ``--traced``
cells whose somas lie lowest along x are traced (their SWC trees, moved into
the rendered image's µm) and their somas clicked; the slab of the field that
holds exactly those somas is the box where the clicks are complete
(traice.training.finetune). ``clicks-*`` conditions fine-tune on the clicks
alone, ``traces-*`` on the clicks and the traces (``--traces``); ``*-lora``
trains LoRA adapters (q, v; rank 4), the head and, unless ``--no-norms``, the
normalisation layers; ``*-full`` every weight.

Scores on the held-out *validation* fields (the first ``--fields``), rendered
in the same regime: soma precision / recall / F1 (Hungarian, 6 µm) of the
detected somas; per-cell Dice and clDice of every true cell against its
matched segmented cell (0 when missed), segmented as the workflow segments
(one-pass maps, ``growth`` at the default foreground threshold, stitched by
the highest claim); PQ. Training time on this machine's CPU threads.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.metrics import cldice, match_points, panoptic_quality, per_cell_dice  # noqa: E402
from traice.io.maps import ArrayMaps  # noqa: E402
from traice.io.ome import ArrayImage, open_image  # noqa: E402
from traice.io.swc import SWC_TYPE_PROCESS, SWC_TYPE_SOMA, write_swc  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import detect_traice_maps, load  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402
from traice.stages.segment import SegmentParams  # noqa: E402
from traice.stages.segment.ownership import segment_owned  # noqa: E402
from traice.stages.stitch import compose_masks  # noqa: E402
from traice.synth import write_synthetic  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402
from traice.synth.traces import field_split, read_field, render_traces, trace_fields, traces_origin  # noqa: E402
from traice.training.finetune import FinetuneConfig, finetune  # noqa: E402

CONDITIONS = ("clicks-lora", "clicks-full", "traces-lora", "traces-full")


def write_tree(tree, origin_um: np.ndarray, path: Path, cell_id: int) -> None:
    """One traced tree as an SWC file in µm of the rendered image (the frame moved by ``-origin_um``)."""
    points, radii, parents = tree
    xyz = (points - origin_um)[:, ::-1]
    write_swc(pd.DataFrame({"id": np.arange(1, len(points) + 1),
                            "type": np.where(parents < 0, SWC_TYPE_SOMA, SWC_TYPE_PROCESS),
                            "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "radius": radii,
                            "parent": np.where(parents < 0, -1, parents + 1)}), path, cell_id)


def labelled_field(folder: Path, regime: str, n: int, out: Path) -> tuple[Path, Path, Path, list]:
    """The rendered train field (OME-Zarr), the clicks CSV and SWC folder of its ``n`` traced cells, and the
    complete box (µm) that holds exactly their somas."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trees = read_field(folder)
    image = out / f"train_{regime}.ome.zarr"
    if not image.exists():
        write_synthetic(render_traces(trees, regime_params(regime, seed=0)), image)
    origin = traces_origin(trees)
    somas = np.array([tree[0][0] for tree in trees]) - origin
    order = np.argsort(somas[:, 2], kind="stable")[:n + 1]
    traced = out / f"traces_{n}"
    traced.mkdir(exist_ok=True)
    for i in order[:n]:
        write_tree(trees[i], origin, traced / f"cell_{i + 1:03d}.swc", int(i) + 1)
    clicks = out / f"clicks_{n}.csv"
    pd.DataFrame(somas[order[:n]], columns=["z_um", "y_um", "x_um"]).to_csv(clicks, index=False)
    written = open_image(image)
    extent = np.asarray(written.shape) * np.asarray(written.spacing)
    x_stop = (somas[order[n - 1], 2] + somas[order[n], 2]) / 2 if len(order) > n else extent[2]
    return image, clicks, traced, [[0.0, 0.0, 0.0], [extent[0], extent[1], float(x_stop)]]


def score(model, fields) -> dict:
    """Soma P/R/F1, per-cell Dice and clDice (all true cells) and PQ over the held-out renderings together."""
    detect, segment = DetectParams(), SegmentParams(method="growth")
    tp = n_pred = n_true = 0
    dice_sum = cldice_sum = 0.0
    pq = []
    for brain in fields:
        spacing = np.asarray(brain.params.spacing)
        image = ArrayImage(brain.image, spacing)
        stats = intensity_stats(image)
        found, maps = detect_traice_maps(brain.image, spacing, stats, detect, model)
        cells = found.assign(cell_id=np.arange(1, len(found) + 1))
        truth = brain.truth.sort_values("cell_id").reset_index(drop=True)
        match = match_points(found[["z", "y", "x"]].to_numpy() * spacing, truth[["z", "y", "x"]].to_numpy() * spacing)
        labels = compose_masks(segment_owned(image, cells, stats, segment, ArrayMaps(maps)), brain.image.shape)
        pairs = [(p + 1, int(truth["cell_id"][t])) for p, t in match.pairs]
        dice_sum += float(per_cell_dice(labels, brain.cells, pairs).sum())
        cldice_sum += float(per_cell_dice(labels, brain.cells, pairs, score=cldice).sum())
        pq.append(panoptic_quality(labels, brain.cells)["pq"])
        tp, n_pred, n_true = tp + len(match.pairs), n_pred + match.n_pred, n_true + match.n_true
    precision, recall = tp / max(n_pred, 1), tp / max(n_true, 1)
    return {"precision": precision, "recall": recall, "F1": 2 * precision * recall / max(precision + recall, 1e-9),
            "Dice": dice_sum / max(n_true, 1), "clDice": cldice_sum / max(n_true, 1), "PQ": float(np.mean(pq))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traced", type=int, nargs="+", default=[10], help="labelled cells (one run per number)")
    ap.add_argument("--conditions", nargs="+", default=["clicks-lora", "traces-lora", "traces-full"], choices=CONDITIONS)
    ap.add_argument("--regime", default="lightsheet")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--fields", type=int, default=3, help="held-out validation fields scored")
    ap.add_argument("--lr", type=float, help="learning rate (default: FinetuneConfig's for each mode)")
    ap.add_argument("--norms", action=argparse.BooleanOptionalAction, default=True,
                    help="lora: also train the normalisation layers (default: on, as traice finetune)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the row without fine-tuning")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/traice-finetune-arbors"))
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"no tracings at {args.data}")
    args.out.mkdir(parents=True, exist_ok=True)
    split = field_split(trace_fields(args.data))
    held_out = []
    for folder in split["val"][:args.fields]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            held_out.append(render_traces(read_field(folder), regime_params(args.regime, seed=0)))
    n_true = sum(len(b.truth) for b in held_out)
    rows = []
    if not args.no_baseline:
        rows.append({"condition": "no fine-tuning", "traced": 0, **score(load(DetectParams()), held_out),
                     "trainable": 0, "file_kB": None, "train_s": 0.0})
        print(rows[-1], flush=True)
    for n in args.traced:
        image, clicks, traced, box = labelled_field(split["train"][0], args.regime, n, args.out)
        for condition in args.conditions:
            labels, mode = condition.split("-")
            norms = args.norms and mode == "lora"
            name = condition + ("+norms" if norms else "") + (f"@{args.lr:g}" if args.lr else "")
            out = args.out / f"{name}_{n}.pt"
            cfg = FinetuneConfig(mode=mode, steps=args.steps, lr=args.lr, norms=norms)
            summary = finetune(image, clicks, out, cfg, complete_um=box,
                               traces_path=traced if labels == "traces" else None)
            model = load(DetectParams(adapter=str(out)) if mode == "lora" else DetectParams(model=str(out)))
            rows.append({"condition": name, "traced": n, **score(model, held_out),
                         "trainable": summary["trainable_parameters"], "file_kB": round(summary["file_bytes"] / 1024, 1),
                         "train_s": summary["train_seconds"]})
            print(rows[-1], flush=True)
    print(f"\nregime {args.regime}; labels on train field {split['train'][0].name}; {args.steps} steps; "
          f"{len(held_out)} validation fields ({n_true} cells)")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
