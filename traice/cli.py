"""The ``traice`` command: the library without Snakemake.

    traice synth OUT.ome.zarr [--shape Z Y X] [--cells N] [--seed S]
    traice render-swc FOLDER OUT.ome.zarr [--seed S]
    traice inspect IMAGE [--channel C]
    traice convert IN OUT.ome.zarr [--channel C] [--voxel-size Z Y X]   (TIFF planes or stack, Imaris, CZI, ND2 -> OME-Zarr)
    traice evaluate RESULTS_DIR
    traice collect RESULTS... -o OUT_DIR   (one table per kind over samples, with their sample column)
    traice view SAMPLE_RESULTS [--swc]     (napari: image, labels, somas, skeletons; pip install 'traice[view]')
    traice run IMAGE RESULTS_DIR [--channel C] [--voxel-size Z Y X] [--cores N]   (the workflow on one image)
    traice finetune IMAGE POINTS.csv OUT.pt [--mode lora|full] [--rank R] [--steps N]   (a new microscope, few clicks)
    traice train soma OUT_DIR [--traces DIR] [--synthetic N] [--steps N] [--window Z Y X] [--size S|L] ...
    traice train branch OUT_DIR [--init SOMA.pt] [--no-rcam] [--input-step Z Y X] ... (stage 2)
    traice train branch OUT_DIR --foreground shipped --init BRANCH.pt ... (the ownership network)
    traice train pretrain OUT_DIR --images A.ome.zarr ... (denoising; then traice train soma --init OUT_DIR/model.pt)
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

from traice import __version__
from traice.core.errors import InputError
from traice.config import check_device
from traice.core.memory import reuse_freed_memory
from traice.io.ome import open_image

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ("auto", "cpu", "cuda")
"""What `--device` takes, as the config's `detect.device` and `segment.device` do."""


def _synth(args) -> None:
    from traice.synth import synthesize, write_synthetic
    from traice.synth.regimes import regime_params

    params = regime_params(args.regime, shape=tuple(args.shape), cells=args.cells, seed=args.seed)
    write_synthetic(synthesize(params), args.out)
    print(f"wrote {args.out} ({args.cells} cells, seed {args.seed})")


def _render_swc(args) -> None:
    from traice.synth import render_swc, write_synthetic
    from traice.synth.regimes import regime_params

    brain = render_swc(args.folder, regime_params(args.regime, seed=args.seed))
    write_synthetic(brain, args.out)
    print(f"wrote {args.out}: {len(brain.truth)} traced cells, shape {brain.image.shape}")


def _inspect(args) -> None:
    from traice.core.grid import grid_notes
    from traice.io.ome import is_ome_zarr

    if is_ome_zarr(args.image):
        image = open_image(args.image, args.channel)
        print(json.dumps({
            "path": image.path, "axes": image.axes, "shape_zyx": image.shape, "spacing_um_zyx": image.spacing,
            "levels": [{"path": lv.path, "shape": lv.shape, "spacing_um": lv.spacing} for lv in image.levels],
            "voxel_size_notes": grid_notes(image.spacing),
        }, indent=2, ensure_ascii=False))
        return
    from traice.io.convert import describe

    described = describe(args.image, args.channel, args.voxel_size)
    if described["spacing_um_zyx"] is not None:
        described["voxel_size_notes"] = grid_notes(described["spacing_um_zyx"])
    described["next"] = (f"traice convert {args.image} OUT.ome.zarr, or traice run {args.image} RESULTS "
                         "(it converts first)")
    print(json.dumps(described, indent=2, ensure_ascii=False))


def _convert(args) -> None:
    from traice.io.convert import convert

    done = convert(args.input, args.out, args.channel, args.voxel_size)
    print(f"wrote {args.out}: shape {done['shape']} {done['dtype']}, voxel size {done['voxel_size_um']} µm (z, y, x)")


def _evaluate(args) -> None:
    from traice.stages.evaluate import evaluate_run

    print(json.dumps(evaluate_run(args.results), indent=2))


def _collect(args) -> None:
    from traice.stages.collect import collect

    rows = collect(args.results, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{kind}.parquet/.csv ({n} rows)" for kind, n in rows.items()))


def _view(args) -> None:
    from traice.view import view

    view(args.result, swc=args.swc)


def _run(args) -> None:
    import tempfile

    import yaml

    from traice.config import converted_image
    from traice.io.ome import is_ome_zarr
    from traice.io.convert import is_pattern

    # fail here, with the one-line message, before Snakemake starts
    if is_ome_zarr(args.image) and args.voxel_size is None:
        open_image(args.image, args.channel)
        sample = str(Path(args.image).resolve())
    else:  # a microscope file: the workflow converts it first
        converted_image(args.image, args.channel, args.voxel_size)
        sample = {"path": args.image if is_pattern(args.image) else str(Path(args.image).resolve())}
        if args.voxel_size is not None:
            sample["voxel_size_um"] = list(args.voxel_size)
    name = Path(args.image).name.removesuffix(".zarr").removesuffix(".ome")
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name).strip("_.-") or "sample"
    config = {"samples": {name: sample}, "results": str(Path(args.results).resolve())}
    if args.channel is not None:
        config["channel"] = args.channel
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(ROOT),
           "--cores", str(args.cores), "--rerun-incomplete", "--configfile", f.name]
    code = subprocess.call(cmd)
    Path(f.name).unlink()
    if code == 0:
        print(f"results: {Path(args.results).resolve() / name}")
    raise SystemExit(code)


def finetune_config(args):
    """The :class:`~traice.training.finetune.FinetuneConfig` of ``traice finetune``'s arguments (an option not
    given keeps the library's default)."""
    from traice.training.finetune import FinetuneConfig

    given = {"norms": args.norms, "soma_radius_um": args.soma_radius,
             "negative_um": tuple(args.negative) if args.negative else None}
    return FinetuneConfig(mode=args.mode, rank=args.rank, stages=tuple(args.stages) if args.stages else None,
                          steps=args.steps, lr=args.lr, seed=args.seed, device=args.device, threads=args.threads,
                          **{k: v for k, v in given.items() if v is not None})


def _finetune(args) -> None:
    from traice.training.finetune import finetune

    check_device("--device", args.device)  # one line, before any data are read
    cfg = finetune_config(args)
    box = [args.complete_box[:3], args.complete_box[3:]] if args.complete_box else None
    summary = finetune(args.image, args.points, args.out, cfg, args.model, args.channel, box, args.traces)
    kind = "adapter (set detect.adapter)" if args.mode == "lora" else "checkpoint (set detect.model)"
    print(f"wrote {args.out}: {kind}, {summary['file_bytes'] / 1024:.0f} kB, {summary['trainable_parameters']} trained "
          f"weights, {summary['clicks']} clicks, {summary['traced_cells']} traced cells, {summary['train_seconds']:.0f} s")


def _train(args) -> None:
    from traice.training.loop import train
    from traice.synth.regimes import REGIMES
    from traice.training.recipes import TrainConfig, training_sources

    if args.task == "pretrain" and args.images:
        from traice.io.ome import open_image

        for path in args.images:
            open_image(path, args.channel)  # a one-line error for a path that is not an image, before any training
    elif args.images:
        raise InputError("--images: unlabelled images train only the pretrain task")
    if args.traces is None and args.synthetic == 0 and not args.images:
        raise InputError("nothing to train on: give --traces DIR (SWC fields), --synthetic N"
                         " and/or (pretrain) --images IMAGE.ome.zarr ...")
    if args.traces is not None and not Path(args.traces).is_dir():
        raise InputError(f"--traces {args.traces}: no such folder")
    for option, path in (("--init", args.init), ("--teacher", args.teacher)):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{option} {path}: no such file")
    if args.foreground is not None and args.task != "branch":
        raise InputError("--foreground: only the branch task (the ownership network) takes the foreground as input")
    check_device("--device", args.device)
    try:
        cfg = TrainConfig(task=args.task, size=args.size, window=args.window and tuple(args.window), batch_size=args.batch,
                          steps=args.steps, lr=args.lr, seed=args.seed, device=args.device, threads=args.threads,
                          embed_dim=args.embed_dim, eval_every=args.eval_every, val_windows=args.val_windows,
                          init=args.init, rcam=not args.no_rcam, full_resolution=not args.no_full_resolution,
                          teacher=args.teacher, input_step=tuple(args.input_step), shift=args.shift,
                          distractor_bias=args.distractor_bias, faint_distractors=args.faint_distractors,
                          balanced_somas=args.balanced_somas,
                          coarser_p=args.coarser, magnify_p=args.magnify, foreground=_foreground_weights(args.foreground))
    except ValueError as err:  # an option the task does not take: one line, before any data are read
        raise InputError(str(err)) from None
    unknown = sorted(set(args.regimes) - set(REGIMES) - {"random"})
    if unknown:
        raise InputError(f"--regimes: unknown {unknown}; choose from {', '.join(sorted(REGIMES))}, random")
    sources = training_sources(args.traces, args.synthetic, args.seeds_per_field, folds=args.folds, fold=args.fold,
                               regimes=args.regimes, images=args.images, channel=args.channel,
                               traced_soma_radius_um=args.traced_soma_radius, soma_sized_puncta=args.soma_sized_puncta)
    summary = train(cfg, sources, args.out, args.cache)
    print(json.dumps({k: summary[k] for k in ("steps", "best_val_dice", "train_seconds", "device_name")}, indent=2))


def _foreground_weights(choice: str | None) -> str | None:
    """``--foreground``: None, ``shipped`` (the shipped one-pass weights) or a one-pass weights file."""
    if choice is None:
        return None
    if choice == "shipped":
        from traice.weights import shipped_weights

        return str(shipped_weights("cells"))
    if not Path(choice).is_file():
        raise InputError(f"--foreground {choice}: no such file")
    from traice.nn.checkpoints import load_one_pass

    try:
        load_one_pass(choice, "--foreground")
    except ValueError as err:
        raise InputError(str(err)) from None
    return choice


def parser() -> argparse.ArgumentParser:
    """The command line; its defaults are the library's (:class:`SynthParams`, :class:`TrainConfig`, ``training_sources``)."""
    from traice.synth import SynthParams
    from traice.synth.regimes import REGIMES
    from traice.training.recipes import TrainConfig, training_sources

    synth, train = SynthParams(), TrainConfig()
    sources = {k: v.default for k, v in inspect.signature(training_sources).parameters.items()}
    parser = argparse.ArgumentParser(prog="traice", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"traice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic microglia field with ground truth")
    p.add_argument("out", help="the OME-Zarr image to write (its truth table and labels go beside and inside it)")
    p.add_argument("--shape", type=int, nargs=3, default=list(synth.shape), metavar=("Z", "Y", "X"),
                   help="voxels, at 1.25 x 0.4 x 0.4 µm (default: %(default)s)")
    p.add_argument("--cells", type=int, default=synth.cells, help="microglia to place (default: %(default)s)")
    p.add_argument("--seed", type=int, default=synth.seed, help="random seed: the same seed, the same field")
    p.add_argument("--regime", default="default", choices=sorted(REGIMES),
                   help="imaging regime (traice.synth.regimes; confocal: Iba1 confocal stacks) (default: %(default)s)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("render-swc", help="render a folder of SWC tracings (one field, µm) into an image with truth")
    p.add_argument("folder", help="one field of view: a folder of SWC files in µm, all in one frame")
    p.add_argument("out", help="the OME-Zarr image to write, with the traced cells as truth")
    p.add_argument("--seed", type=int, default=0, help="random seed of the microscope (brightness, noise, distractors)")
    p.add_argument("--regime", default="default", choices=sorted(REGIMES),
                   help="imaging regime (traice.synth.regimes; confocal: Iba1 confocal stacks) (default: %(default)s)")
    p.set_defaults(func=_render_swc)

    p = sub.add_parser("inspect", help="check an image and print what traice reads from it (an OME-Zarr image, or "
                                           "a microscope file from its headers: what traice convert will read)")
    p.add_argument("image", help="an OME-Zarr image (NGFF 0.4 or 0.5), a folder or quoted glob of TIFF planes, "
                   "a TIFF / OME-TIFF stack, an Imaris .ims, a Zeiss .czi or a Nikon .nd2")
    p.add_argument("--channel", type=int, help="the channel to read, for a multi-channel image")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="microscope files: the voxel size in µm to check, as traice convert and run take it")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("convert", help="convert TIFF planes, a TIFF / OME-TIFF stack, an Imaris .ims, a Zeiss .czi or a Nikon .nd2 "
                                           "into an OME-Zarr image")
    p.add_argument("input", help="a folder or quoted glob of 2D TIFF planes (one per z), a multi-page TIFF / OME-TIFF, "
                   "an Imaris .ims, a Zeiss .czi or a Nikon .nd2")
    p.add_argument("out", help="the OME-Zarr image to write (NGFF 0.5, multiscale)")
    p.add_argument("--channel", type=int, help="the channel to keep, for a multi-channel stack")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size in µm; needed when the file does not say it, and wins over the file's")
    p.set_defaults(func=_convert)

    p = sub.add_parser("evaluate", help="soma F1 and per-cell Dice of a run on a synthetic sample")
    p.add_argument("results", help="a sample's results folder (its input.ome.zarr holds the truth)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("collect", help="pool the tables of several samples into one table per kind (for R, pandas)")
    p.add_argument("results", nargs="+", help="results folders, or single samples' folders (each holds cells.parquet)")
    p.add_argument("-o", "--out", required=True, help="folder for cells, morphology, sholl and regions .parquet and .csv")
    p.set_defaults(func=_collect)

    p = sub.add_parser("view", help="open one sample's result in napari (pip install 'traice[view]')")
    p.add_argument("result", help="one sample's results folder, e.g. results/demo")
    p.add_argument("--swc", action="store_true", help="also draw the SWC skeletons (one line per edge)")
    p.set_defaults(func=_view)

    p = sub.add_parser("run", help="run the whole workflow on one image (Snakemake, local cores)")
    p.add_argument("image", help="an OME-Zarr image (NGFF 0.4 or 0.5) in µm, or TIFF planes or a stack (converted first)")
    p.add_argument("results", help="results go to RESULTS_DIR/<image name>/")
    p.add_argument("--channel", type=int, help="the channel to read, for a multi-channel image")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size in µm of a TIFF input that does not say it (wins over the file's)")
    p.add_argument("--cores", type=int, default=2, help="CPU cores Snakemake may use (default: %(default)s)")
    p.set_defaults(func=_run)

    p = sub.add_parser("finetune", help="adapt the one-pass network to a new microscope from a few clicked somas")
    p.add_argument("image", help="an OME-Zarr image of the new modality (any voxel size)")
    p.add_argument("points", help="CSV of clicked soma centres: z_um,y_um,x_um (µm), z,y,x (voxels) or napari's axis-0,1,2")
    p.add_argument("out", help="the file to write: a LoRA adapter (detect.adapter) or, with --mode full, weights (detect.model)")
    p.add_argument("--complete-box", type=float, nargs=6, metavar=("Z0", "Y0", "X0", "Z1", "Y1", "X1"),
                   help="µm box in which every soma was clicked: the rest of it teaches what is not a soma")
    p.add_argument("--traces", help="an SWC file or a folder of them (µm of the image): traced arbors, which label "
                                    "the foreground too; their roots count as clicked somas")
    p.add_argument("--mode", default="lora", choices=["lora", "full"],
                   help="lora: low-rank adapters on attention q, v, the head and the norms, a small file; "
                        "full: every weight")
    p.add_argument("--rank", type=int, default=4, help="LoRA rank (default: %(default)s)")
    p.add_argument("--stages", type=int, nargs="+", help="encoder stages to adapt (default: all)")
    p.add_argument("--norms", action=argparse.BooleanOptionalAction,
                   help="lora: also train the normalisation layers' scales and shifts (default: on)")
    p.add_argument("--steps", type=int, default=150, help="optimiser steps (default: %(default)s)")
    p.add_argument("--lr", type=float, help="learning rate (default: 1e-3 lora, 1e-4 full)")
    p.add_argument("--soma-radius", type=float, help="µm: a ball this big around each click is soma (default: 4)")
    p.add_argument("--negative", type=float, nargs=2, metavar=("NEAR", "FAR"),
                   help="µm: a shell this far from every click teaches what is not a soma (default: 9 20)")
    p.add_argument("--model", help="the weights to adapt (default: the shipped one-pass weights)")
    p.add_argument("--channel", type=int, help="the channel to read, for a multi-channel image")
    p.add_argument("--seed", type=int, default=0, help="random seed of the windows and augmentation")
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto (cuda when present), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.set_defaults(func=_finetune)

    p = sub.add_parser("train", help="train a model (resumes from OUT_DIR/checkpoint.pt)")
    p.add_argument("task", choices=["soma", "branch", "cells", "pretrain"],
                   help="soma: stage 1; branch: stage 2 (prompted by the soma); "
                        "cells: the one-pass network (soma, foreground, offsets to the own soma), from stage-1 weights; "
                        "pretrain: a denoiser on unlabelled windows, whose weights start soma or cells (--init)")
    p.add_argument("out", help="checkpoint, metrics.csv, best.pt, model.pt, training.json go here")
    p.add_argument("--traces", help="folder of SWC fields of view (one subfolder each), rendered for training")
    p.add_argument("--seeds-per-field", type=int, default=sources["seeds_per_field"], help="renderings of each traced field")
    p.add_argument("--synthetic", type=int, default=sources["synthetic"], help="synthetic generator fields to add")
    p.add_argument("--traced-soma-radius", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="renderings of --traces (training and validation) draw each soma's radius (µm) from "
                        "this range (default: the traces', at least 5 µm)")
    p.add_argument("--soma-sized-puncta", type=float, metavar="SHARE",
                   help="share of the renderings' autofluorescent puncta that are soma-sized (2-3.5 µm), hard "
                        "negatives for small somas (default: the generator's 0.15)")
    p.add_argument("--images", nargs="+", default=[], metavar="IMAGE",
                   help="pretrain: unlabelled OME-Zarr images of your microscope (blocks spread over each)")
    p.add_argument("--channel", type=int, help="pretrain: the channel of --images, for multi-channel images")
    p.add_argument("--regimes", nargs="+", default=list(sources["regimes"]),
                   help="imaging regimes the renderings cycle through (traice.synth.regimes: "
                        "default, confocal, dim, bright, random; validation uses the first) (default: %(default)s)")
    p.add_argument("--size", default=train.size, choices=["S", "L"], help="network size: S (embed 32) or L (embed 128)")
    p.add_argument("--embed-dim", type=int, help="override the size's width")
    p.add_argument("--window", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="training window (default: soma 16 256 256, branch 32 256 256, cells 16 128 128)")
    p.add_argument("--batch", type=int, default=train.batch_size, help="windows per step (default: %(default)s)")
    p.add_argument("--steps", type=int, default=train.steps, help="optimiser steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=train.lr, help="peak learning rate, AdamW (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=train.eval_every, help="steps between validations")
    p.add_argument("--val-windows", type=int, default=train.val_windows, help="fixed validation windows")
    p.add_argument("--init", help="branch, cells: stage-1 weights to start from (default: the shipped ones); "
                                  "soma, cells: pretrained weights (traice train pretrain) to start from; "
                                  "cells: a one-pass network, trained further")
    p.add_argument("--distractor-bias", type=float, default=train.distractor_bias,
                   help="cells: share of windows placed first on a bright thing that is no cell (lipofuscin, "
                        "macrophages, vessels: hard negatives) (default: %(default)s)")
    p.add_argument("--faint-distractors", action="store_true",
                   help="cells: the windows of --distractor-bias also go to faint things away from the cells "
                        "(a vessel barely above the background)")
    p.add_argument("--balanced-somas", action="store_true",
                   help="cells: in the soma loss every soma and every bright thing that is no cell weighs as much "
                        "as a soma of 5 µm radius, whatever its size (at most 5x per voxel): a small soma missed or "
                        "a soma-sized punctum called costs as much as a large soma")
    p.add_argument("--coarser", type=float, default=train.coarser_p, metavar="P",
                   help="soma, cells: share of windows shown as imaged on 1.25-2.5x coarser voxels and resampled "
                        "onto the networks' grid, as inference does; the targets stay on the grid (default: %(default)s)")
    p.add_argument("--magnify", type=float, default=train.magnify_p, metavar="P",
                   help="cells: share of windows whose tissue is seen larger or smaller (0.8-1.25x, the same voxels "
                        "and noise), so that a soma's size alone does not tell it from a punctum or a trunk "
                        "(default: %(default)s)")
    p.add_argument("--no-full-resolution", action="store_true",
                   help="cells: drop the network's full-resolution stage (its head predicts each voxel from the "
                        "half-resolution features: a detect job about 2.2x faster on a CPU, docs/arbors.md), keeping every other weight of --init")
    p.add_argument("--teacher", metavar="WEIGHTS",
                   help="cells: a one-pass network whose maps the network also learns (distillation), "
                        "for example the --init weights when --no-full-resolution drops a stage")
    p.add_argument("--no-rcam", action="store_true", help="branch: train the ablation with plain skips (no prompt)")
    p.add_argument("--input-step", type=int, nargs=3, default=list(train.input_step), metavar=("Z", "Y", "X"),
                   help="branch: image voxels averaged into one input voxel (the window covers window x step)")
    p.add_argument("--foreground", metavar="WEIGHTS",
                   help="branch: the ownership network (segment.method prompted-growth): the foreground of these "
                        "one-pass weights ('shipped' for the shipped ones) is a second input; --init may then be "
                        "a stage-2 network (its input is widened)")
    p.add_argument("--shift", type=float, default=train.shift,
                   help="branch: random window shift, share of the window (large: the prompt, not the centre, names the cell)")
    p.add_argument("--folds", type=int, default=sources["folds"], help="k-fold cross-validation over the training fields")
    p.add_argument("--fold", type=int, default=sources["fold"], help="the fold that validates (with --folds)")
    p.add_argument("--seed", type=int, default=train.seed, help="random seed of the data and the network")
    p.add_argument("--device", default=train.device, choices=DEVICES, help="auto (cuda when present), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--cache", help="where rendered training volumes are kept (default OUT_DIR/cache)")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    reuse_freed_memory()  # as every workflow job does (traice.io.joblog.start_job)
    try:
        args.func(args)
    except InputError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
