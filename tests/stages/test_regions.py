import numpy as np
import pandas as pd
import pytest

from traice.io.ome import open_image
from traice.stages.plan import image_tissue
from traice.stages.regions import region_boxes, summarise
from traice.core.schema import MORPHOLOGY, REGIONS


def test_tissue_mask_excludes_empty_space(write_image):
    rng = np.random.default_rng(0)
    data = rng.poisson(100, size=(16, 256, 256)).astype(np.float32)   # camera offset only: no tissue
    data[:, :, 128:] += rng.poisson(40, size=(16, 256, 128))           # tissue autofluorescence
    data[8, 60:70, 200:210] += 500                                     # a bright cell inside the tissue
    image = open_image(write_image(data.astype(np.uint16), spacing=(2.0, 1.0, 1.0)))
    mask, spacing = image_tissue(image)
    frac = mask.mean()
    assert 0.45 < frac < 0.55
    assert mask[:, :, -10:].all() and not mask[:, :, :10].any()


def test_all_tissue_view_is_all_tissue(write_image):
    rng = np.random.default_rng(1)
    data = rng.poisson(120, size=(16, 128, 128)).astype(np.uint16)
    data[8, 40:50, 40:50] += 400
    mask, _ = image_tissue(open_image(write_image(data)))
    assert mask.all()


def test_summarise_counts_density_and_medians():
    cells = pd.DataFrame({"cell_id": [1, 2, 3], "z_um": [1.0, 1.0, 1.0], "y_um": [10.0, 10.0, 90.0],
                          "x_um": [10.0, 30.0, 90.0]})
    morph = pd.DataFrame({c: [0] * 3 for c in MORPHOLOGY})
    morph["cell_id"] = [1, 2, 3]
    morph["status"] = ["ok", "ok", "no foreground at the soma"]
    morph["total_length_um"] = [100.0, 300.0, 0.0]
    tissue = np.ones((10, 100, 100), bool)          # 1 µm voxels: 10 x 100 x 100 µm = 1e-4 mm³
    boxes = region_boxes({"left": {"start_um": [0, 0, 0], "stop_um": [10, 50, 50]}}, None, (10, 100, 100))
    table = summarise("s", cells, morph, tissue, (1.0, 1.0, 1.0), boxes)
    assert list(table.columns) == list(REGIONS)
    whole, left = table.iloc[0], table.iloc[1]
    assert whole["region"] == "all" and whole["n_cells"] == 3 and whole["n_segmented"] == 2
    assert whole["tissue_volume_mm3"] == pytest.approx(1e-4)
    assert whole["density_per_mm3"] == pytest.approx(3e4)
    assert whole["median_total_length_um"] == pytest.approx(200.0)
    assert left["n_cells"] == 2 and left["tissue_volume_mm3"] == pytest.approx(2.5e-5)
    assert left["density_per_mm3"] == pytest.approx(8e4)


def test_plan_skips_tiles_without_tissue(write_image):
    from traice.stages.plan import PlanParams, make_plan

    rng = np.random.default_rng(2)
    data = rng.poisson(100, size=(16, 256, 512)).astype(np.float32)
    data[:, :, 256:] += rng.poisson(40, size=(16, 256, 256))   # tissue only in the right half
    image = open_image(write_image(data.astype(np.uint16), spacing=(2.0, 1.0, 1.0)))
    plan = make_plan(image, PlanParams(tile_shape=(26, 320, 320), halo_um=4))  # 16 x 128 x 128 of these voxels
    assert plan.info["tiles"] + plan.info["tiles_without_tissue"] == 2 * 4
    assert plan.info["tiles_without_tissue"] >= 2
    assert (plan.tiles["core_x0"] >= 128).all()   # only tiles reaching into the tissue half are kept


def test_atlas_rows_roll_cells_and_volume_up_the_hierarchy(tmp_path):
    import json

    import tifffile

    from traice.io.atlas import Atlas
    from helpers import STRUCTURES, annotation

    (tmp_path / "s.json").write_text(json.dumps(STRUCTURES))
    tifffile.imwrite(tmp_path / "a.tiff", annotation())
    atlas = Atlas.open(tmp_path / "a.tiff", tmp_path / "s.json", (24, 384, 384), (1.25, 0.4, 0.4))
    # two cells in isocortex, one in hippocampus, one in fiber tracts, one outside the atlas
    pos = np.array([[10, 50, 10], [20, 60, 20], [10, 50, 100], [2, 50, 50], [10, 1, 1]], float)
    cells = pd.DataFrame({"cell_id": np.arange(1, 6), "z_um": pos[:, 0], "y_um": pos[:, 1], "x_um": pos[:, 2]})
    morph = pd.DataFrame({c: [0] * 5 for c in MORPHOLOGY})
    morph["cell_id"] = np.arange(1, 6)
    morph["status"] = ["ok", "ok", "ok", "ok", "no foreground at the soma"]
    morph["total_length_um"] = [100.0, 200.0, 400.0, 50.0, 0.0]
    morph["structure_id"] = atlas.structure_at(pos)  # as the morphology step writes it
    tissue = np.ones((24, 384, 384), bool)
    table = summarise("s", cells, morph, tissue, (1.25, 0.4, 0.4), region_boxes(None, None, (30, 153.6, 153.6)), atlas)
    assert list(table.columns) == list(REGIONS)
    rows = table.set_index("region")
    assert table["region"].tolist() == ["all", "root", "grey", "Isocortex", "HPF", "fiber tracts"]
    assert rows.loc["all", "kind"] == "all" and (table["kind"].iloc[1:] == "atlas").all()
    assert rows["n_cells"].to_dict() == {"all": 5, "root": 4, "grey": 3, "Isocortex": 2, "HPF": 1, "fiber tracts": 1}
    assert rows.loc["grey", "median_total_length_um"] == pytest.approx(200.0)
    assert rows.loc["Isocortex", "parent_structure_id"] == 8 and rows.loc["Isocortex", "depth"] == 2
    voxel_mm3 = 5 * 3.2 * 3.2 * 1e-9
    ann = annotation()
    assert rows.loc["root", "tissue_volume_mm3"] == pytest.approx((ann > 0).sum() * voxel_mm3)
    assert rows.loc["grey", "tissue_volume_mm3"] == pytest.approx(np.isin(ann, [315, 1089]).sum() * voxel_mm3)
    assert rows.loc["HPF", "density_per_mm3"] == pytest.approx(1 / ((ann == 1089).sum() * voxel_mm3))
