"""Arbors: the one-pass network and its ownership methods against the classical baseline, per condition.

Usage:
    python bench/arbors.py [--split test] [--regimes confocal dim bright] [--data ../shared/data/morphomics_kxa]
                           [--model PATH] [--mirror yx] [--methods growth votes classical] [--no-demo] [--true-somas]
                           [--min-processes 0.005] [--ownership-model OWNER.pt]  (with --methods prompted-growth)

Data: the held-out fields of view of the real tracings (``--split``, never
seen in training), each rendered in every imaging regime of ``--regimes``
(traice.synth.regimes: confocal Iba1, dim = half the signal, bright = twice),
with the render seed 0; and the demo volume (the synthetic default). For each
volume the one-pass network runs once over the whole field (the maps,
traice.core.maps); somas are detected from its soma channel, as the workflow
does (``--true-somas``: prompted with the true somas instead). Every method
then segments every detected cell; the claims are stitched by the highest
claim (traice.stages.stitch.compose, as the workflow).

Scores: soma precision / recall / F1 (Hungarian, 6 µm); per true cell, the
Dice and clDice of its matched cell (0 when its soma was missed) against soma
+ arbor truth, and the topology sensitivity (the share of the true skeleton
inside the matched cell); PQ of the label image. Conditions: per regime
(signal), per depth third of the field, and dense (another soma within
30 µm) vs isolated cells. Time: the one-pass maps in Mvoxel/s and each
method's seconds per cell, on this machine's CPU threads.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from traice.core.intensity import robust_stats  # noqa: E402
from traice.core.metrics import cldice, dice, match_points, panoptic_quality  # noqa: E402
from traice.io.maps import ArrayMaps  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.nn.checkpoints import load_prompted  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import detect_traice_maps, load  # noqa: E402
from traice.stages.morphology import SHOLL_STEP_UM, measure, sholl_shells  # noqa: E402
from traice.stages.segment import SegmentParams  # noqa: E402
from traice.stages.segment.params import METHOD_PROBABILITY  # noqa: E402
from traice.stages.segment.classical import segment_cells  # noqa: E402
from traice.stages.segment.ownership import segment_owned  # noqa: E402
from traice.stages.segment.ranked import OwnershipModel, segment_ranked  # noqa: E402
from traice.stages.stitch import compose_masks  # noqa: E402
from traice.synth import synthesize  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402
from traice.synth.traces import MIN_SOMA_RADIUS_UM, field_split, read_field, render_traces, trace_fields  # noqa: E402

DENSE_UM = 30.0


def volumes(args):
    """(regime, name, SyntheticBrain, traced trees or None) of every volume the bench scores;
    cell i of a rendered field is tree i - 1."""
    if Path(args.data).exists():
        for regime in args.regimes:
            for folder in field_split(trace_fields(args.data))[args.split][:args.fields]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    trees = read_field(folder)
                yield regime, folder.name, render_traces(trees, regime_params(regime, seed=0)), trees
    else:
        print(f"no tracings at {args.data}: demo volume only", file=sys.stderr)
    if not args.no_demo:
        demo = yaml.safe_load(open(ROOT / "config" / "config.yaml"))["samples"]["demo"]["synthetic"]
        yield "demo", "demo", synthesize(regime_params("default", **{k: tuple(v) if isinstance(v, list) else v
                                                                      for k, v in demo.items()})), None


def traced_morphology(tree, soma_radius_um: float, step_um: float = SHOLL_STEP_UM) -> dict[str, float]:
    """Total process length (outside the rendered soma, as NeuroM counts it) and Sholl maximum of one trace."""
    points, _, parents = tree
    root = points[0]
    length, crossings = 0.0, {}
    for child, parent in enumerate(parents):
        if parent < 0:
            continue
        a, b = points[parent], points[child]
        n = max(int(np.ceil(np.linalg.norm(b - a) / 0.1)), 1)
        t = (np.arange(n) + 0.5) / n
        outside = np.linalg.norm(a + t[:, None] * (b - a) - root, axis=1) > soma_radius_um
        length += float(np.linalg.norm(b - a) * outside.mean())
        lo, hi = sorted((np.linalg.norm(a - root), np.linalg.norm(b - root)))
        for r in sholl_shells(hi + step_um, step_um):
            if lo < r <= hi:
                crossings[r] = crossings.get(r, 0) + 1
    return {"total_length_um": length, "sholl_max_intersections": max(crossings.values(), default=0)}


def cell_morphology(labels: np.ndarray, boxes, label: int, soma_voxel, spacing) -> dict[str, float]:
    """:func:`traice.stages.morphology.measure` of one cell of a label image (as the workflow measures it);
    ``boxes`` = ``find_objects(labels)``."""
    box = boxes[label - 1] if label <= len(boxes) else None
    if box is None:
        return {"total_length_um": 0.0, "sholl_max_intersections": 0}
    soma = [float(c) - s.start for c, s in zip(soma_voxel, box)]
    metrics, _, _ = measure(labels[box] == label, spacing, soma)
    return {k: metrics[k] for k in ("total_length_um", "sholl_max_intersections")}


def skeleton_reach(truth_labels: np.ndarray, foreground: np.ndarray, somas: np.ndarray, spacing,
                   probability: float, radius_um: float) -> pd.DataFrame:
    """Per true cell, where its skeleton lies: the share the network marks as foreground (``p > probability``)
    and the share within ``radius_um`` of its soma (``somas`` (N, 3) voxels, row i = cell i + 1): two bounds on what
    an ownership of these maps within that radius can claim."""
    rows = []
    for t, box in enumerate(ndimage.find_objects(truth_labels), start=1):
        if box is None:
            continue
        skel = np.argwhere(skeletonize(truth_labels[box] == t)) + [b.start for b in box]
        if not len(skel):
            continue
        near = np.linalg.norm((skel - somas[t - 1]) * np.asarray(spacing), axis=1) <= radius_um
        rows.append({"cell": t, "skeleton_foreground": float((foreground[tuple(skel.T)] > probability).mean()),
                     "skeleton_in_radius": float(near.mean())})
    return pd.DataFrame(rows)


def score_cells(labels: np.ndarray, truth_labels: np.ndarray, pairs: dict[int, int]) -> pd.DataFrame:
    """Per true cell: Dice, clDice and topology sensitivity of its matched predicted cell (0 if none)."""
    true_boxes = ndimage.find_objects(truth_labels)
    pred_boxes = ndimage.find_objects(labels)
    rows = []
    for t, box_t in enumerate(true_boxes, start=1):
        if box_t is None:
            continue
        p = pairs.get(t)
        box_p = pred_boxes[p - 1] if p and p <= len(pred_boxes) else None
        if box_p is None:
            rows.append({"cell": t, "dice": 0.0, "cldice": 0.0, "tsens": 0.0})
            continue
        box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box_t, box_p))
        pred, true = labels[box] == p, truth_labels[box] == t
        skel = skeletonize(true)
        rows.append({"cell": t, "dice": dice(pred, true), "cldice": cldice(pred, true),
                     "tsens": float((skel & pred).sum() / max(skel.sum(), 1))})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--regimes", nargs="+", default=["confocal", "dim", "bright"])
    ap.add_argument("--fields", type=int, help="only the first N fields of the split (quick runs)")
    ap.add_argument("--model", help="one-pass weights (default: the shipped ones)")
    ap.add_argument("--methods", nargs="+", default=["growth", "votes", "classical"],
                    help="growth, votes, prompted-growth (needs --ownership-model), classical")
    ap.add_argument("--ownership-model", help="prompted-growth: the ownership network (traice train branch --foreground)")
    ap.add_argument("--probability", type=float, nargs="+", default=[METHOD_PROBABILITY["growth"]],
                    help="segment.probability for growth and votes; several: each is a method of its own "
                         "(tune it on --split val, never on test)")
    ap.add_argument("--radius", type=float, default=SegmentParams.radius_um,
                    help="segment.radius_um: how far from its soma a cell may claim (tune on --split val, never on test)")
    ap.add_argument("--bridge", type=float, default=SegmentParams.bridge_um,
                    help="segment.bridge_um: the longest break in a cell's foreground its growth may cross")
    ap.add_argument("--morphology", nargs="*", default=["growth", "classical"],
                    help="methods whose cells are measured against the traces (total length, Sholl maximum)")
    ap.add_argument("--overlap", type=float, nargs="+", default=[DetectParams.overlap],
                    help="detect.overlap: the sliding windows' overlap, one share or one per axis z y x "
                         "(tune it on --split val, never on test)")
    ap.add_argument("--mirror", default="", help="detect.mirror: also run each window mirrored along these axes "
                    "and average (e.g. yx)")
    ap.add_argument("--min-processes", type=float, default=DetectParams.min_processes,
                    help="detect.min_processes: drop detections with less process evidence (0: keep every one)")
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--true-somas", action="store_true", help="segment the true somas instead of the detected ones")
    ap.add_argument("--out", help="also write the per-cell rows to this parquet file")
    args = ap.parse_args()
    model = load(DetectParams(model=args.model, mirror=args.mirror))  # the detect step's loader
    if "prompted-growth" in args.methods and not args.ownership_model:
        ap.error("prompted-growth needs --ownership-model")
    owner = load_prompted(args.ownership_model) if "prompted-growth" in args.methods else None
    detect = DetectParams(overlap=args.overlap[0] if len(args.overlap) == 1 else tuple(args.overlap),
                          min_processes=args.min_processes)
    rows, fields = [], []
    for regime, name, brain, trees in volumes(args):
        spacing = np.asarray(brain.params.spacing)
        stats = robust_stats(brain.image[:, ::2, ::2])
        started = time.perf_counter()
        found, maps = detect_traice_maps(brain.image, spacing, stats, detect, model)
        map_seconds = time.perf_counter() - started
        truth = brain.truth.sort_values("cell_id").reset_index(drop=True)
        true_um = truth[["z", "y", "x"]].to_numpy() * spacing
        match = match_points(found[["z", "y", "x"]].to_numpy() * spacing, true_um)
        cells = (truth[["cell_id", "z", "y", "x"]] if args.true_somas
                 else found.assign(cell_id=np.arange(1, len(found) + 1))[["cell_id", "z", "y", "x"]])
        pairs = ({int(c): int(c) for c in truth["cell_id"]} if args.true_somas
                 else {int(truth["cell_id"][t]): int(p) + 1 for p, t in match.pairs})
        near = cKDTree(true_um).query(true_um, k=2)[0][:, 1] if len(truth) > 1 else np.full(len(truth), np.inf)
        depth = np.minimum((truth["z"].to_numpy() / brain.image.shape[0] * 3).astype(int), 2)
        reach = skeleton_reach(brain.cells, maps[1], truth[["z", "y", "x"]].to_numpy(float), spacing,
                               args.probability[0], args.radius)
        print(f"{regime:<9} {name[:36]:<36} true skeleton: {reach['skeleton_foreground'].mean():.3f} foreground "
              f"(p > {args.probability[0]:g}), {reach['skeleton_in_radius'].mean():.3f} within {args.radius:g} µm "
              f"of its soma", flush=True)
        image = ArrayImage(brain.image, spacing)
        store = ArrayMaps(maps)
        fields.append({"regime": regime, "volume": name, "voxels": brain.image.size, "map_seconds": map_seconds,
                       "precision": match.precision, "recall": match.recall, "f1": match.f1,
                       "cells": len(truth), "detected": len(found)})
        mask_truth = None
        runs = [(m, p, m if len(args.probability) == 1 or m == "classical" else f"{m}@{p:g}")
                for m in args.methods for p in (args.probability if m != "classical" else args.probability[:1])]
        for method, probability, label in runs:
            params = SegmentParams(method=method, probability=probability, radius_um=args.radius,
                                   bridge_um=args.bridge)
            started = time.perf_counter()
            if method == "classical":
                masks = segment_cells(image, cells, stats, params)
            elif method == "prompted-growth":
                masks = segment_ranked(image, cells, stats, params, OwnershipModel(owner, store))
            else:
                masks = segment_owned(image, cells, stats, params, store)
            seconds = time.perf_counter() - started
            labels = compose_masks(masks, brain.image.shape)
            per_cell = score_cells(labels, brain.cells, pairs)
            per_cell = per_cell.assign(regime=regime, volume=name, method=label, dense=near[per_cell["cell"] - 1] <= DENSE_UM,
                                       depth=depth[per_cell["cell"] - 1])
            if trees is not None and label in args.morphology:
                boxes = ndimage.find_objects(labels)
                if mask_truth is None:  # the true masks measured as the workflow measures cells: its ceiling
                    true_boxes = ndimage.find_objects(brain.cells)
                    mask_truth = {int(t): cell_morphology(brain.cells, true_boxes, int(t), truth.loc[t - 1, ["z", "y", "x"]]
                                                          .to_numpy(), spacing) for t in per_cell["cell"]}
                measured = []
                for t in per_cell["cell"]:
                    tree = trees[t - 1]
                    true = traced_morphology(tree, max(float(tree[1][0]), MIN_SOMA_RADIUS_UM))
                    true.update({f"mask_{k}": v for k, v in mask_truth[int(t)].items()})  # -> true_mask_*
                    p = pairs.get(int(t))
                    soma = (cells.set_index("cell_id").loc[p, ["z", "y", "x"]].to_numpy() if p
                            else truth.loc[t - 1, ["z", "y", "x"]].to_numpy())
                    pred = cell_morphology(labels, boxes, p, soma, spacing) if p else {k: 0.0 for k in true}
                    measured.append({**{f"true_{k}": v for k, v in true.items()}, **{f"pred_{k}": v for k, v in pred.items()}})
                per_cell = pd.concat([per_cell, pd.DataFrame(measured, index=per_cell.index)], axis=1)
            pq = panoptic_quality(labels, brain.cells)["pq"]
            fields.append({"regime": regime, "volume": name, "method": label, "pq": pq,
                           "s_per_cell": seconds / max(len(cells), 1)})
            rows.append(per_cell)
            print(f"{regime:<9} {name[:36]:<36} {label:<11} Dice {per_cell['dice'].mean():.3f} "
                  f"clDice {per_cell['cldice'].mean():.3f} tsens {per_cell['tsens'].mean():.3f} PQ {pq:.3f} "
                  f"soma F1 {match.f1:.3f} maps {brain.image.size / map_seconds / 1e6:.2f} Mvox/s", flush=True)
    cells = pd.concat(rows, ignore_index=True)
    if args.out:
        cells.to_parquet(args.out)
    report(cells, pd.DataFrame(fields), args)


def report(cells: pd.DataFrame, fields: pd.DataFrame, args) -> None:
    vol = fields[fields["method"].isna()] if "method" in fields else fields
    per_method = fields.dropna(subset=["method"]) if "method" in fields else fields
    print(f"\nCPU: {torch.get_num_threads()} threads; {'true' if args.true_somas else 'detected'} somas; "
          f"per-cell means over the true cells (missed somas score 0)")
    print(f"{'regime':<9} {'method':<11} {'cells':>5} {'Dice':>6} {'clDice':>6} {'tsens':>6} {'PQ':>6} "
          f"{'clDice dense':>12} {'clDice isol.':>12} {'top':>6} {'mid':>6} {'deep':>6} {'s/cell':>7}")
    for (regime, method), part in cells.groupby(["regime", "method"], sort=False):
        f = per_method[(per_method["regime"] == regime) & (per_method["method"] == method)]
        dense = part[part["dense"]]["cldice"]
        isolated = part[~part["dense"]]["cldice"]
        by_depth = [part[part["depth"] == k]["cldice"] for k in range(3)]

        def m(x):
            return f"{x.mean():.3f}" if len(x) else "-"

        print(f"{regime:<9} {method:<11} {len(part):>5} {m(part['dice']):>6} {m(part['cldice']):>6} {m(part['tsens']):>6} "
              f"{f['pq'].mean():>6.3f} {m(dense):>12} {m(isolated):>12} {m(by_depth[0]):>6} {m(by_depth[1]):>6} "
              f"{m(by_depth[2]):>6} {f['s_per_cell'].mean():>7.3f}")
    if "true_total_length_um" in cells:
        print(f"\nmorphology of the matched cells against the traces: median over the true cells "
              f"(a missed cell counts 0), and the prediction's error")
        print("(true mask: the rendered truth label measured as the workflow measures a cell, the ceiling of a mask)")
        print(f"{'regime':<9} {'method':<11} {'cells':>5} {'length trace':>12} {'true mask':>9} {'length':>8} {'error':>7} "
              f"{'Sholl trace':>11} {'true mask':>9} {'Sholl max':>9} {'error':>7}")
        for (regime, method), part in cells.dropna(subset=["true_total_length_um"]).groupby(["regime", "method"], sort=False):
            lt, lm, lp = (part[f"{k}_total_length_um"].median() for k in ("true", "true_mask", "pred"))
            st, sm, sp = (part[f"{k}_sholl_max_intersections"].median() for k in ("true", "true_mask", "pred"))
            print(f"{regime:<9} {method:<11} {len(part):>5} {lt:>12.1f} {lm:>9.1f} {lp:>8.1f} {lp / lt - 1:>+7.0%} "
                  f"{st:>11.1f} {sm:>9.1f} {sp:>9.1f} {sp / st - 1 if st else float('nan'):>+7.0%}")
    print(f"\n{'regime':<9} {'volumes':>7} {'true':>5} {'found':>5} {'precision':>9} {'recall':>6} {'F1':>6} {'maps Mvox/s':>11}")
    for regime, part in vol.groupby("regime", sort=False):
        tp_r = (part["recall"] * part["cells"]).sum()
        tp_p = (part["precision"] * part["detected"]).sum()
        f1 = 2 * tp_r / (part["cells"].sum() + part["detected"].sum())
        print(f"{regime:<9} {len(part):>7} {part['cells'].sum():>5} {part['detected'].sum():>5} "
              f"{tp_p / max(part['detected'].sum(), 1):>9.3f} {tp_r / max(part['cells'].sum(), 1):>6.3f} {f1:>6.3f} "
              f"{part['voxels'].sum() / part['map_seconds'].sum() / 1e6:>11.2f}")


if __name__ == "__main__":
    main()
