"""Microscope files through the workflow: TIFF planes converted once (rule convert), then run as any image;
real two-photon planes at 5 x 2 x 2 µm found by the networks through resampling onto their grid."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
import zarr

from helpers import ROOT, cli, run_workflow, small_config, write_czi
from nd2_writer import write_nd2
from traice.io.plan import Plan

pytestmark = pytest.mark.workflow

RECALL_FLOOR = 0.75  # bench/cellfinder.py, a larger window: 17 of 19, 18 with every detection kept (docs/inputs.md)

CELLFINDER = ROOT.parent / "shared" / "data" / "cellfinder_crop"


@pytest.mark.long
def test_tiff_planes_run_as_the_same_image_in_ome_zarr(tmp_path, reference_run):
    """The reference run's synthetic image, written as TIFF planes and named by folder with its voxel size,
    gives the same tables and labels."""
    image = zarr.open_array(str(reference_run / "input.ome.zarr" / "0"), mode="r")[...]
    planes = tmp_path / "planes"
    planes.mkdir()
    for z, plane in enumerate(image):
        tifffile.imwrite(planes / f"small_z{z}.tif", plane)
    config = small_config(tmp_path)
    config["samples"] = {"small": {"path": str(planes), "voxel_size_um": [1.25, 0.4, 0.4]}}
    run_workflow(config, tmp_path)
    out = tmp_path / "results" / "small"
    assert (out / "input.ome.zarr").is_dir()  # converted once, inside the results
    for table in ["cells", "morphology"]:
        pd.testing.assert_frame_equal(pd.read_parquet(reference_run / f"{table}.parquet"),
                                      pd.read_parquet(out / f"{table}.parquet"))
    np.testing.assert_array_equal(zarr.open_array(str(reference_run / "segmentation.ome.zarr" / "0"), mode="r")[...],
                                  zarr.open_array(str(out / "segmentation.ome.zarr" / "0"), mode="r")[...])


def test_a_czi_converts_to_the_image_the_reference_run_ran_on(tmp_path, reference_run):
    """The reference run's synthetic image written as a Zeiss CZI converts (``traice convert``) to the very
    image the workflow ran on, voxel size included: from there the run is the same."""
    from traice.cli import main
    from traice.io.ome import open_image

    image = open_image(reference_run / "input.ome.zarr")
    volume = image.read(image.bounds)
    write_czi(tmp_path / "small.czi", [volume], image.spacing, scale_factor=1e-6)
    main(["convert", str(tmp_path / "small.czi"), str(tmp_path / "small.ome.zarr")])
    converted = open_image(tmp_path / "small.ome.zarr")
    assert converted.spacing == pytest.approx(image.spacing)
    np.testing.assert_array_equal(converted.read(converted.bounds), volume)


def test_an_nd2_converts_to_the_image_the_reference_run_ran_on(tmp_path, reference_run):
    """The same with the image written as a Nikon ND2 (calibrated, two channels: the second one kept)."""
    from traice.cli import main
    from traice.io.ome import open_image

    image = open_image(reference_run / "input.ome.zarr")
    volume = image.read(image.bounds)
    write_nd2(tmp_path / "small.nd2", [np.zeros_like(volume), volume], image.spacing)
    main(["convert", str(tmp_path / "small.nd2"), str(tmp_path / "small.ome.zarr"), "--channel", "1"])
    converted = open_image(tmp_path / "small.ome.zarr")
    assert converted.spacing == pytest.approx(image.spacing)
    np.testing.assert_array_equal(converted.read(converted.bounds), volume)


def test_a_tiff_without_voxel_size_is_refused_before_any_job(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((6, 32, 32), np.uint16), photometric="minisblack")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"samples": {"s1": str(tmp_path / "stack.tif")}, "results": str(tmp_path / "r")}))
    out = cli(["-n", "--cores", "1", "--configfile", str(cfg)], tmp_path)
    assert out.returncode != 0
    line = out.stderr.strip().splitlines()[0]
    assert line.startswith("error: sample 's1': ") and "set voxel_size_um" in line, out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.long
@pytest.mark.skipif(not (CELLFINDER / "signal").is_dir(), reason="the cellfinder planes (shared/data/cellfinder_crop) are not here")
def test_real_two_photon_planes_at_their_own_voxel_size(tmp_path):
    """A region of the cellfinder planes (5 x 2 x 2 µm, no voxel size in the files) through the default
    workflow; the annotated somas in it are found (they are not exhaustive: recall only)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from cellfinder import SPACING, annotations, recall

    roi = {"start_um": [40, 560, 200], "stop_um": [100, 680, 340]}  # 7 annotated somas (bench/cellfinder.py: 19)
    # detection reaches the ROI grown by segment.radius_um (20 µm: half the voxels of 40 µm), and reads every
    # tile that touches it: tiles of 120 x 180 x 180 µm hold all of it in one (the default tiles: eight)
    config = {"samples": {"cf": {"path": str(CELLFINDER / "signal"), "voxel_size_um": list(SPACING)}},
              "results": str(tmp_path / "results"), "roi": roi,
              "plan": {"tile_shape": [96, 450, 450]}, "segment": {"radius_um": 20}}
    run_workflow(config, tmp_path)
    out = tmp_path / "results" / "cf"
    cells = pd.read_parquet(out / "cells.parquet")
    labels = zarr.open_array(str(out / "segmentation.ome.zarr" / "0"), mode="r")
    assert labels.shape == (30, 510, 667)  # the input's own grid
    truth = annotations(CELLFINDER / "cell_classification.xml")
    inside = truth[((truth >= roi["start_um"]) & (truth < roi["stop_um"])).all(axis=1)]
    hit, n = recall(inside, cells[["z_um", "y_um", "x_um"]].to_numpy())
    assert n >= 5 and hit / n >= RECALL_FLOOR, (hit, n, len(cells))
    assert Plan.read(out / "work" / "plan").info["tiles"] == 1
    report = (out / "report.html").read_text()  # what these coarse voxels cost, in the report's summary
    assert "coarser along z than the grid" in report and "coarser in the plane than the grid" in report
