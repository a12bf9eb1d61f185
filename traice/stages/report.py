"""QC figures, report.html and run.json: what a person looks at after a run."""

from __future__ import annotations

import base64
import html
import importlib.metadata
import platform
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import zarr  # noqa: E402

from traice import __version__  # noqa: E402
from traice.core.geometry import Box  # noqa: E402
from traice.core.grid import grid_notes  # noqa: E402
from traice.core.schema import kept_by_the_rule  # noqa: E402
from traice.io.ome import open_image, read_overview  # noqa: E402
from traice.io.plan import Plan  # noqa: E402
from traice.io.tables import atomic_dir, atomic_path, read_json, write_json  # noqa: E402

OVERVIEW_MAX_VOXELS = 16_000_000
OVERVIEW_MAX_NUMBERS = 400   # the overview writes each soma's cell_id up to this many cells
GALLERY_BAR_UM = 10.0
PACKAGES = ["numpy", "scipy", "scikit-image", "zarr", "ome-zarr", "dask", "pandas", "torch", "snakemake"]


def _contrast(mip: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(mip, [1, 99.7])
    return float(lo), float(max(hi, lo + 1))


def overview_figure(plan: Plan, cells: pd.DataFrame, labels_path: str, out: Path,
                    left_out: pd.DataFrame | None = None) -> None:
    """Maximum-intensity projection with detected somas, beside the label overlay; ``left_out`` (level-0 voxels
    z, y, x): the detections the process rule left out, drawn as crosses."""
    volume, scale = read_overview(plan.image, OVERVIEW_MAX_VOXELS)
    mip = volume.max(axis=0)
    labels = open_image(labels_path)
    lab = read_overview(labels, OVERVIEW_MAX_VOXELS)[0].astype(np.int64).max(axis=0)
    extent = [0, mip.shape[1] * scale[2], mip.shape[0] * scale[1], 0]
    fig, axes = plt.subplots(1, 2, figsize=(14, 7), constrained_layout=True)
    lo, hi = _contrast(mip)
    for ax in axes:
        ax.imshow(mip, cmap="gray", vmin=lo, vmax=hi, extent=extent)
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    axes[0].scatter(cells["x_um"], cells["y_um"], s=60, facecolors="none", edgecolors="red", linewidths=1)
    numbered = len(cells) <= OVERVIEW_MAX_NUMBERS
    if numbered:
        for cid, x, y in zip(cells["cell_id"], cells["x_um"], cells["y_um"]):
            axes[0].annotate(str(int(cid)), (x, y), xytext=(4, 4), textcoords="offset points", color="yellow", fontsize=7)
    title = f"detected somas (n = {len(cells)}{', numbered by cell_id' if numbered else ''})"
    if left_out is not None and len(left_out):
        axes[0].scatter(left_out["x"] * plan.spacing[2], left_out["y"] * plan.spacing[1], s=60, marker="x",
                        color="cyan", linewidths=1)
        title += f"; crosses: {len(left_out)} left out, no processes"
    axes[0].set_title(title)
    shown = np.ma.masked_equal(lab % 20 + (lab > 0), 0)
    axes[1].imshow(shown, cmap="tab20", alpha=0.55, interpolation="nearest", extent=extent)  # both cover the whole image
    axes[1].set_title("segmentation (label overlay)")
    fig.savefig(out, dpi=80)
    plt.close(fig)


def gallery_figure(plan: Plan, cells: pd.DataFrame, morphology: pd.DataFrame, labels_path: str, out: Path, n: int, seed: int = 0) -> None:
    """Randomly chosen cells: image | mask | skeleton, as z projections of a window around each soma."""
    ok = morphology[morphology["status"] == "ok"]
    if len(ok) == 0 or n == 0:
        _empty_figure(out, "no segmented cells to show")
        return
    chosen = ok.sample(n=min(n, len(ok)), random_state=seed).sort_values("cell_id")
    image = plan.image
    labels = zarr.open_array(str(Path(labels_path) / "0"), mode="r")
    half = [int(np.ceil(r / s)) for r, s in zip((15.0, 35.0, 35.0), image.spacing)]
    cell_rows = cells.set_index("cell_id")
    swc_dir = Path(labels_path).parent / "swc"
    per_row = 2
    n_rows = -(-len(chosen) // per_row)
    fig, axes = plt.subplots(n_rows, 3 * per_row, figsize=(4.5 * per_row * 1.5, 2.6 * n_rows), squeeze=False, constrained_layout=True)
    for ax in axes.ravel():
        ax.axis("off")
    panels = [axes[i // per_row, 3 * (i % per_row): 3 * (i % per_row) + 3] for i in range(len(chosen))]
    for row, (_, m) in zip(panels, chosen.iterrows()):
        c = cell_rows.loc[m["cell_id"]]
        box = Box.around((c["z"], c["y"], c["x"]), half).intersect(image.bounds)
        crop = image.read(box).max(axis=0)
        mask = (np.asarray(labels[box.slices]) == m["cell_id"]).max(axis=0)
        lo, hi = _contrast(crop)
        row[0].imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        _scale_bar(row[0], GALLERY_BAR_UM, image.spacing[2])
        row[1].imshow(mask, cmap="magma")
        row[2].imshow(mask, cmap="gray", alpha=0.3)
        swc = swc_dir / f"{int(m['cell_id'])}.swc"
        if swc.exists():
            nodes = np.loadtxt(swc, comments="#", ndmin=2)
            row[2].scatter(nodes[:, 2] / image.spacing[2] - box.start[2], nodes[:, 3] / image.spacing[1] - box.start[1], s=1, c="cyan")
            row[2].set_xlim(-0.5, mask.shape[1] - 0.5)
            row[2].set_ylim(mask.shape[0] - 0.5, -0.5)
        titles = [f"cell {int(m['cell_id'])}: image (MIP)", "mask", f"skeleton, {m['total_length_um']:.0f} µm"]
        for ax, title in zip(row, titles):
            ax.set_title(title, fontsize=9)
    fig.savefig(out, dpi=70)
    plt.close(fig)


def histogram_figure(morphology: pd.DataFrame, out: Path) -> None:
    ok = morphology[morphology["status"] == "ok"]
    metrics = [("cell_volume_um3", "cell volume (µm³)"), ("soma_volume_um3", "soma volume (µm³)"),
               ("total_length_um", "total process length (µm)"), ("n_branch_points", "branch points"),
               ("ramification_index", "ramification index"), ("sholl_max_intersections", "Sholl max intersections")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), constrained_layout=True)
    axes = axes.ravel()
    for ax, (col, label) in zip(axes, metrics):
        ax.hist(ok[col], bins=20, color="steelblue")
        ax.set_xlabel(label)
    axes[0].set_ylabel("cells")
    axes[3].set_ylabel("cells")
    fig.savefig(out, dpi=80)
    plt.close(fig)


def density_bins(extent_um: float, bin_um: float) -> np.ndarray:
    """Bin edges from 0 to ``extent_um`` every ``bin_um``; a last strip narrower than half a bin joins its
    neighbour, so that no bin is a sliver whose one cell would read as a high density."""
    edges = np.unique(np.append(np.arange(0, extent_um, bin_um), extent_um))
    if len(edges) > 2 and edges[-1] - edges[-2] < bin_um / 2:
        edges = np.delete(edges, -2)
    return edges


def density_figure(plan: Plan, cells: pd.DataFrame, out: Path, bin_um: float = 50.0) -> None:
    """Cells per mm³ in columns of about ``bin_um`` × ``bin_um`` through the volume's depth, each drawn at its
    true size; the colour scale stops at the 99th percentile of the bins (an outlier does not set it)."""
    shape_um = np.asarray(plan.shape) * np.asarray(plan.spacing)
    xe, ye = density_bins(shape_um[2], bin_um), density_bins(shape_um[1], bin_um)
    counts = np.histogram2d(cells["x_um"], cells["y_um"], bins=[xe, ye])[0]
    density = counts / (np.diff(xe)[:, None] * np.diff(ye)[None, :] * shape_um[0] * 1e-9)
    vmax = max(float(np.percentile(density, 99)), 1e-9)
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    mesh = ax.pcolormesh(xe, ye, density.T, cmap="viridis", vmin=0, vmax=vmax)
    fig.colorbar(mesh, ax=ax, label="cells / mm³", extend="max" if density.max() > vmax else "neither")
    ax.set_xlim(0, shape_um[2])
    ax.set_ylim(shape_um[1], 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _scale_bar(ax, um: float, pixel_um: float) -> None:
    """A white ``um`` µm bar in the lower right of an image panel drawn at ``pixel_um`` per pixel."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    ax.add_artist(AnchoredSizeBar(ax.transData, um / pixel_um, f"{um:g} µm", "lower right", pad=0.3, color="white",
                                  frameon=False, size_vertical=max(1.0, 1.0 / pixel_um), fontproperties={"size": 7}))


def _empty_figure(out: Path, text: str) -> None:
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    fig.savefig(out, dpi=80)
    plt.close(fig)


FIGURES = [
    ("overview.png", "Maximum-intensity projection: detected somas (left, red, numbered by cell_id up to "
                     f"{OVERVIEW_MAX_NUMBERS} cells; cyan crosses: detections left out for having no processes, "
                     "detect.min_processes) and the label image overlay (right)."),
    ("gallery.png", f"Randomly chosen cells: image, mask and SWC skeleton nodes (z projections, 70 µm windows; "
                    f"bar {GALLERY_BAR_UM:g} µm)."),
    ("histograms.png", "Distributions of the main morphology metrics over segmented cells."),
    ("density.png", "Cell density map (cells per mm³ in about 50 µm columns through the depth, each drawn at its "
                    "size; colours stop at the 99th percentile)."),
    ("resources.png", "Wall time (all jobs of a rule together) and peak memory (largest job) per rule."),
]


def resources_figure(timings: dict, out: Path) -> None:
    """Wall time (summed over jobs) and peak memory (largest job) of each rule."""
    if not timings:
        _empty_figure(out, "no benchmark files")
        return
    rules = list(timings)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.4 * len(rules) + 1.5), constrained_layout=True)
    axes[0].barh(rules, [timings[r]["wall_s"] for r in rules], color="slateblue")
    axes[0].set_xlabel("wall time, all jobs (s)")
    axes[1].barh(rules, [timings[r]["max_rss_mb"] for r in rules], color="darkorange")
    axes[1].set_xlabel("peak RSS of the largest job (MB)")
    axes[1].set_yticks([])
    for ax in axes:
        ax.invert_yaxis()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)


def write_report(plan: Plan, cells_path, merged_path, morphology_path, regions_path, labels_path,
                 benchmarks: str | Path, html_path, qc_dir, gallery: int, somas_paths: Sequence = ()) -> None:
    """QC figures into ``qc_dir`` and one self-contained ``report.html`` (``merged_path``: the merge step's
    counts, ``cells_to_process.json``; ``somas_paths``: the detect step's tables, whose detections left out by
    the process rule the overview marks)."""
    cells = pd.read_parquet(cells_path)
    left_out = [t[~kept_by_the_rule(t)] for t in map(pd.read_parquet, somas_paths)]
    morphology = pd.read_parquet(morphology_path)
    regions = pd.read_parquet(regions_path)
    timings = benchmark_summary(benchmarks)
    qc = Path(qc_dir)
    with atomic_dir(qc) as tmp:
        overview_figure(plan, cells, str(labels_path), tmp / "overview.png",
                        pd.concat(left_out, ignore_index=True) if left_out else None)
        gallery_figure(plan, cells, morphology, str(labels_path), tmp / "gallery.png", gallery)
        histogram_figure(morphology, tmp / "histograms.png")
        density_figure(plan, cells, tmp / "density.png")
        resources_figure(timings, tmp / "resources.png")
    summary = summary_counts(plan, cells, read_json(merged_path), morphology)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>traice report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}td,th{padding:2px 10px;text-align:left}"
        "img{max-width:100%}figcaption{color:#444;margin-bottom:2em}</style></head><body>",
        f"<h1>traice report</h1><p>image: <code>{html.escape(plan.info['image'])}</code></p><table>",
    ]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items()]
    parts.append("</table>")
    for name, caption in FIGURES:
        data = base64.b64encode((qc / name).read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{name}'><figcaption>{html.escape(caption)}</figcaption></figure>")
        if name == "histograms.png":
            parts.append("<h2>Regions</h2>" + _html_table(regions))
    timing_rows = pd.DataFrame([{"rule": r, **v} for r, v in timings.items()])
    parts.append("<h2>Time and memory per rule</h2>" + (_html_table(timing_rows) if len(timing_rows) else "<p>none</p>"))
    parts.append("</body></html>")
    with atomic_path(html_path) as tmp_html:
        tmp_html.write_text("\n".join(parts))


def run_counts(plan: Plan, cells: pd.DataFrame, merged: dict, morphology: pd.DataFrame) -> dict:
    """What was processed and found, so that nothing is dropped silently (run.json ``counts``).

    ``cells_detected`` and the segmentation counts cover the whole result; in a
    region update ``cells_processed`` is the part this run detected and segmented,
    and ``detections_without_processes`` (the detections the process rule left
    out, ``detect.min_processes``; from the merge step's ``merged`` counts) those of
    this run's tiles.
    """
    empty = morphology[morphology["status"] != "ok"]
    ok = morphology[morphology["status"] == "ok"]
    return {
        "tiles": plan.info["tiles"],
        "tiles_without_tissue": plan.info["tiles_without_tissue"],
        "tile_batches": plan.info["tile_batches"],
        "stitch_blocks": plan.info["stitch_blocks"],
        "region_update": plan.update,  # True: only the ROI's cells were (re)processed, over a previous result
        "non_finite_voxels_sampled": int(plan.stats.get("non_finite", 0)),  # NaN/±Inf in the plan's sample; read as background
        "missing_chunks": int(plan.info.get("missing_chunks", 0)),  # absent from the input's store; read as empty
        "missing_chunk_keys": list(plan.info.get("missing_chunk_keys", [])),  # the first few, where to look
        "cells_processed": int(plan.cells_inside(cells).sum()),
        "cells_detected": len(cells),
        # None: merged before this count existed (the rule's detections were never written)
        "detections_without_processes": merged.get("detections_without_processes"),
        "cells_segmented": len(morphology) - len(empty),
        "cells_empty": len(empty),
        # quality flags of the segmented cells (morphology.parquet), so they can be left out before statistics
        "cells_touching_a_face": int((ok["border_faces"] != "").sum()),
        "cells_without_processes": int((~ok["has_processes"]).sum()),
        "cells_likely_not_microglia": int((ok["microglia_score"] < 0.5).sum()),  # microglia_score below 0.5
        "cells_in_pieces": int((ok["n_components"] > 1).sum()),
        "empty_reasons": empty["status"].value_counts().to_dict(),
    }


def summary_counts(plan: Plan, cells: pd.DataFrame, merged: dict, morphology: pd.DataFrame) -> dict:
    """The report's summary table: image geometry and :func:`run_counts`, in words."""
    counts = run_counts(plan, cells, merged, morphology)
    shape_um = np.asarray(plan.shape) * np.asarray(plan.spacing)
    return {
        "image shape (z, y, x voxels)": tuple(plan.shape),
        "voxel size (µm)": tuple(plan.spacing),
        "voxel size against the networks' grid": "; ".join(grid_notes(plan.spacing)) or "on the grid: read as it is",
        "tiles (processed / without tissue, skipped)": f"{counts['tiles']} / {counts['tiles_without_tissue']}",
        "non-finite voxels (NaN, ±Inf) in the sampled blocks, read as background": counts["non_finite_voxels_sampled"],
        "chunks missing from the input (read as empty)": counts["missing_chunks"],
        "cells detected": counts["cells_detected"],
        "detections left out for no processes leaving the soma (detect.min_processes; 0 keeps them)":
            counts["detections_without_processes"],
        "cells segmented": counts["cells_segmented"],
        "cells with empty masks": counts["cells_empty"],
        "segmented cells touching a face of the volume (arbor may be cut)": counts["cells_touching_a_face"],
        "segmented cells without processes (likely macrophages or lipofuscin)": counts["cells_without_processes"],
        "segmented cells with microglia_score < 0.5 (likely puncta or macrophages)": counts["cells_likely_not_microglia"],
        "segmented cells whose label is in several pieces": counts["cells_in_pieces"],
        "density (cells / mm³)": round(len(cells) / float(np.prod(shape_um) * 1e-9), 1),
    }


def benchmark_summary(folder: str | Path) -> dict:
    """Wall time and peak RSS per rule, summed/maxed over its jobs, from Snakemake benchmark files."""
    out: dict[str, dict] = {}
    for f in sorted(Path(folder).glob("*.tsv")):
        rule = f.stem.rsplit("_", 1)[0] if f.stem.rsplit("_", 1)[-1].isdigit() else f.stem
        b = pd.read_csv(f, sep="\t")
        entry = out.setdefault(rule, {"jobs": 0, "wall_s": 0.0, "max_rss_mb": 0.0})
        entry["jobs"] += 1
        entry["wall_s"] = round(entry["wall_s"] + float(b["s"].iloc[0]), 2)
        rss = pd.to_numeric(b.get("max_rss", pd.Series([0])), errors="coerce").fillna(0).iloc[0]
        entry["max_rss_mb"] = round(max(entry["max_rss_mb"], float(rss)), 1)
    return out


def write_run_summary(plan: Plan, cells_path, merged_path, morphology_path, benchmarks: str, config: dict,
                      out: str | Path) -> None:
    """run.json: counts, versions, config and per-rule timings of a finished run (``merged_path``: the merge
    step's counts, ``cells_to_process.json``)."""
    versions = {"traice": __version__, "python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    write_json({
        "image": plan.info["image"],
        "counts": run_counts(plan, pd.read_parquet(cells_path), read_json(merged_path), pd.read_parquet(morphology_path)),
        "versions": versions,
        "config": config,
        "timings": benchmark_summary(benchmarks),
    }, out)
