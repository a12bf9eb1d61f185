"""Per-region reprocessing: a run with ``roi`` over a finished result changes only what lies in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from traice.core.geometry import Box
from traice.core.errors import InputError
from traice.core.roi import roi_boxes
from traice.io.plan import Plan
from traice.stages.merge import update_cells
from traice.stages.stitch import init_labels, stitch_block
from traice.stages.update import base_dir, prepare_base

from helpers import run_workflow, small_config

SPACING = (1.0, 1.0, 1.0)
ROI = {"start_um": [0, 0, 0], "stop_um": [10, 50, 50]}


def _roi(roi=ROI, shape=(10, 100, 100)) -> list[Box]:
    return list(roi_boxes(roi, Box.from_shape(shape), SPACING).values())


def _cells(rows) -> pd.DataFrame:
    return pd.DataFrame([{"sample": "s", "cell_id": i, "z_um": z, "y_um": y, "x_um": x, "z": int(z), "y": int(y), "x": int(x), "score": 1.0}
                         for i, (z, y, x) in rows])


def test_roi_boxes_single_named_and_outside():
    bounds = Box.from_shape((10, 100, 100))
    assert list(roi_boxes(None, bounds, SPACING)) == ["all"]
    assert roi_boxes(ROI, bounds, SPACING)["roi"] == Box((0, 0, 0), (10, 50, 50))
    named = roi_boxes({"a": ROI, "b": {"start_um": [0, 60, 60], "stop_um": [5, 200, 200]}}, bounds, SPACING)
    assert named["b"] == Box((0, 60, 60), (5, 100, 100))  # clipped to the image
    with pytest.raises(InputError, match="roi 'far'.*does not overlap"):
        roi_boxes({"far": {"start_um": [0, 500, 500], "stop_um": [1, 600, 600]}}, bounds, SPACING)


def test_update_cells_keeps_outside_rows_and_inherits_ids():
    previous = _cells([(1, (5, 10, 10)), (2, (5, 80, 80)), (3, (5, 30, 30)), (4, (5, 52, 52))])
    found = _cells([(1, (5, 10.5, 10)), (2, (5, 40, 40)), (3, (5, 80, 81)), (4, (5, 49.5, 49.5))])
    cells = update_cells(found, previous, _roi(), SPACING, dedupe_um=4.0)
    by_id = cells.set_index("cell_id")
    # outside the ROI: previous rows, unchanged (cell 2 and 4), found cells there ignored
    pd.testing.assert_frame_equal(cells[cells["cell_id"].isin([2, 4])].reset_index(drop=True),
                                  previous[previous["cell_id"].isin([2, 4])].reset_index(drop=True), check_dtype=False)
    # inside: the one at cell 1's place inherits id 1; cell 3 is gone; the new one gets 5;
    # the one within 4 µm of kept cell 4 (a soma seen across the ROI border) is dropped
    assert by_id.loc[1, "y_um"] == 10.5
    assert sorted(cells["cell_id"]) == [1, 2, 4, 5]
    assert by_id.loc[5, "y_um"] == 40


def test_update_cells_without_previous_numbers_by_position():
    found = _cells([(1, (5, 10, 10)), (2, (5, 20, 20)), (3, (5, 90, 90))])
    cells = update_cells(found, found.iloc[:0], _roi(), SPACING, dedupe_um=4.0)
    assert cells["cell_id"].tolist() == [1, 2] and cells["y_um"].tolist() == [10, 20]


def test_stitch_patch_keeps_kept_cells_and_outside(tmp_path):
    path = tmp_path / "labels.ome.zarr"
    init_labels(path, (8, 64, 64), SPACING, (8, 32, 32))
    block = Box.from_shape((8, 64, 64))
    arr = zarr.open_array(str(path / "0"), mode="r+")
    before = np.zeros((8, 64, 64), np.uint32)
    before[:, 10:20, 10:20] = 7     # a kept cell, partly inside the affected box
    before[:, 40:50, 40:50] = 9     # an old cell outside the affected box
    before[:, 25:30, 25:30] = 3     # an old version of a re-segmented cell
    arr[...] = before
    affected = [Box((0, 0, 0), (8, 32, 32))]
    stitch_block(path, block, pd.DataFrame(columns=["cell_id", "voxels", "masks"]), affected, keep_ids=[7])
    after = zarr.open_array(str(path / "0"), mode="r")[...]
    assert (after[:, 10:20, 10:20] == 7).all()
    assert (after[:, 40:50, 40:50] == 9).all()       # outside the affected box: untouched
    assert (after[:, 25:30, 25:30] == 0).all()       # inside, not kept, no new claim: cleared


def _finished_result(sample: Path, tag: str) -> None:
    for name in ("cells.parquet", "morphology.parquet", "sholl.parquet", "run.json"):
        (sample / name).write_text(tag)
    for name in ("swc", "segmentation.ome.zarr"):
        (sample / name).mkdir()
        (sample / name / "f").write_text(tag)


def test_prepare_base_moves_finished_result_and_resumes(tmp_path):
    sample = tmp_path / "s"
    sample.mkdir()
    assert prepare_base(sample, ROI) is False                # nothing to update: a first run
    _finished_result(sample, "one")
    assert prepare_base(sample, ROI) is True
    base = base_dir(sample)
    assert (base / "cells.parquet").read_text() == "one" and not (sample / "cells.parquet").exists()
    assert (base / "segmentation.ome.zarr" / "f").read_text() == "one"
    # an interrupted update (label image already taken back) redone with the same roi
    (base / "segmentation.ome.zarr").rename(sample / "segmentation.ome.zarr")
    assert prepare_base(sample, ROI) is True
    assert (base / "segmentation.ome.zarr" / "f").read_text() == "one"
    # ... but not with another roi
    with pytest.raises(InputError, match="interrupted"):
        prepare_base(sample, {"start_um": [0, 0, 0], "stop_um": [5, 5, 5]})
    # a finished update replaces the base; a whole-image run drops it
    _finished_result(sample, "two")
    (sample / "segmentation.ome.zarr" / "f").write_text("two")
    assert prepare_base(sample, ROI) is True
    assert (base / "cells.parquet").read_text() == "two"
    assert json.loads((base / "roi.json").read_text())["roi_um"] == {"roi": ROI}
    assert prepare_base(sample, None) is False and not base.exists()


def _chunk_files(labels: Path) -> dict[str, bytes]:
    return {str(p.relative_to(labels)): p.read_bytes() for p in sorted(labels.rglob("c/*/*/*")) if p.is_file()}


@pytest.mark.workflow
@pytest.mark.long
def test_region_update_changes_only_the_region(reference_run, tmp_path):
    """Whole run; update a region with another segmentation setting; update it back.

    Outside the region everything stays byte-identical; inside it changes; and the
    second update restores the whole-run result exactly.
    """
    roi = {"start_um": [0, 0, 0], "stop_um": [30, 60, 60]}  # grown by the 40 µm arbor radius: 250 of 384 voxels
    run_workflow(small_config(tmp_path), tmp_path)
    sample = tmp_path / "results" / "small"
    run_workflow(small_config(tmp_path, roi=roi, segment={"method": "classical", "cells_per_job": 6, "soma_fraction": 0.3}), tmp_path)

    plan = Plan.read(sample / "work" / "plan")
    assert plan.info["update"] is True
    counts = json.loads((sample / "run.json").read_text())["counts"]
    assert counts["region_update"] is True and 0 < counts["cells_processed"] < counts["cells_detected"]
    ref_cells, cells = pd.read_parquet(reference_run / "cells.parquet"), pd.read_parquet(sample / "cells.parquet")
    pd.testing.assert_frame_equal(ref_cells, cells)  # same detection config: same cells, ids inherited
    inside = plan.cells_inside(cells)
    kept, redone = cells["cell_id"][~inside].tolist(), cells["cell_id"][inside].tolist()
    assert kept and redone

    ref_morph, morph = (pd.read_parquet(p / "morphology.parquet").set_index("cell_id") for p in (reference_run, sample))
    pd.testing.assert_frame_equal(ref_morph.loc[kept], morph.loc[kept])
    assert not ref_morph.loc[redone, "cell_volume_um3"].equals(morph.loc[redone, "cell_volume_um3"])
    for cid in kept:
        assert (sample / "swc" / f"{cid}.swc").read_bytes() == (reference_run / "swc" / f"{cid}.swc").read_bytes()

    ref_labels = zarr.open_array(str(reference_run / "segmentation.ome.zarr" / "0"), mode="r")[...]
    labels = zarr.open_array(str(sample / "segmentation.ome.zarr" / "0"), mode="r")[...]
    outside = np.ones(labels.shape, bool)
    for box in plan.affected_boxes:
        outside[box.slices] = False
    assert outside.any() and (labels[outside] == ref_labels[outside]).all()
    assert (labels != ref_labels).any()
    of_kept = np.isin(ref_labels, kept)
    assert (labels[of_kept] == ref_labels[of_kept]).all()  # kept cells keep every voxel, inside too

    run_workflow(small_config(tmp_path, roi=roi), tmp_path)
    for name in ("cells.parquet", "morphology.parquet", "sholl.parquet"):
        assert (sample / name).read_bytes() == (reference_run / name).read_bytes(), name
    assert _chunk_files(sample / "segmentation.ome.zarr") == _chunk_files(reference_run / "segmentation.ome.zarr")
    assert sorted(p.name for p in (sample / "swc").glob("*.swc")) == sorted(p.name for p in (reference_run / "swc").glob("*.swc"))
