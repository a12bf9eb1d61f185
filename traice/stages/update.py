"""Region updates: re-run a region of interest in place over a previous result.

A run with ``roi`` changes only what lies in the ROI; everything else stays as
it was: empty on a first run, the previous result when the sample already has
a finished one (an *update*). In an update

- cells whose soma lies outside the ROI keep their row, label voxels, morphology
  and SWC file unchanged; cells inside are detected and segmented again (a new
  cell at the place of an old one inherits its ``cell_id``);
- label voxels can change only inside the ROI grown by the segmentation radius
  (the *affected* boxes), and there only where they do not belong to a kept cell.

Snakemake deletes a job's outputs before it runs, so the previous result is
moved (renamed, never copied) into ``work/base`` when the plan of an update is
made; ``label_init`` moves the label image back and ``stitch`` patches it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from traice.core.errors import InputError
from traice.core.roi import named_boxes_um
from traice.io.tables import read_json, write_json

LABELS = "segmentation.ome.zarr"
CARRIED = ("cells.parquet", "morphology.parquet", "sholl.parquet", "swc", LABELS)
FINISHED = "run.json"  # written last by a run: its presence marks a finished result


def base_dir(sample_dir: str | Path) -> Path:
    return Path(sample_dir) / "work" / "base"


def prepare_base(sample_dir: str | Path, roi: dict | None) -> bool:
    """Set aside the previous result a run with ``roi`` updates; returns whether this run is an update.

    A finished result (``run.json`` present) is moved into ``work/base``, replacing
    an older base. An unfinished one is the interrupted update of the same ROI
    (its base is kept; its partly patched label image goes back to the base); an
    unfinished update of another ROI is refused, since finishing it first is the
    only way to keep both regions consistent. Without ``roi`` the base is dropped.
    Every step is a rename, so a killed plan job redone gives the same base.
    """
    sample_dir, base = Path(sample_dir), base_dir(sample_dir)
    named = named_boxes_um(roi)
    if named is None:
        shutil.rmtree(base, ignore_errors=True)
        return False
    if (sample_dir / FINISHED).exists():
        base.mkdir(parents=True, exist_ok=True)
        write_json({"roi_um": named}, base / "roi.json")
        for name in CARRIED:
            if (sample_dir / name).exists():
                _remove(base / name)
                os.replace(sample_dir / name, base / name)
        os.replace(sample_dir / FINISHED, base / FINISHED)  # last: the base is now complete
        return True
    if not (base / FINISHED).exists():
        return False
    previous = read_json(base / "roi.json")["roi_um"]
    if previous != named:
        raise InputError(f"the update of roi {previous} was interrupted; re-run it with that roi before updating roi {named}")
    if (sample_dir / LABELS).exists() and not (base / LABELS).exists():
        os.replace(sample_dir / LABELS, base / LABELS)
    return True


def take_base_labels(sample_dir: str | Path, labels_path: str | Path) -> None:
    """Move the base label image to ``labels_path``, where ``stitch`` patches it."""
    source = base_dir(sample_dir) / LABELS
    if not source.exists():
        raise InputError(f"region update: the previous label image is missing from {source}")
    os.replace(source, labels_path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
