"""The whole workflow through Snakemake's Python API, on a small synthetic volume.

Also: bad input and bad config fail before any job with a one-line message and
write nothing; an image without cells gives valid empty outputs; a user's
samples replace the demo sample; ``snakemake --lint`` is clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from ome_zarr_models.v05 import ImageLabel

from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from traice.core import schema
from traice.core.metrics import match_points
from traice.synth import truth_path

from helpers import ROOT, cli, run_workflow

F1_FLOOR = 0.6  # classical baseline on the small test volume (distractor puncta are counted as errors)
LEARNED_F1_FLOOR = 0.8        # the defaults (one-pass network + growth) on the same volume
LEARNED_CLDICE_FLOOR = 0.5

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def small_run(reference_run):
    return reference_run


def test_outputs_of_the_contract(small_run):
    for name in ["cells.parquet", "segmentation.ome.zarr", "morphology.parquet", "morphology.csv", "swc",
                 "sholl.parquet", "regions.parquet", "report.html", "qc", "run.json"]:
        assert (small_run / name).exists(), name
    for fig in ["overview", "gallery", "histograms", "density", "resources"]:
        assert (small_run / "qc" / f"{fig}.png").stat().st_size > 1000


def test_tables_have_the_documented_schema(small_run):
    readme = (ROOT / "README.md").read_text()
    for name, table_schema in [("cells", schema.CELLS), ("morphology", schema.MORPHOLOGY),
                               ("sholl", schema.SHOLL), ("regions", schema.REGIONS)]:
        df = pd.read_parquet(small_run / f"{name}.parquet")
        assert list(df.columns) == list(table_schema), name
        for col, (dtype, unit, _) in table_schema.items():
            assert str(df[col].dtype) == dtype, (name, col)
            assert f"| `{col}` | {dtype} | {unit} |" in readme, (name, col)
    csv = pd.read_csv(small_run / "morphology.csv")
    assert list(csv.columns) == list(schema.MORPHOLOGY)


def test_regions_and_run_summary(small_run):
    regions = pd.read_parquet(small_run / "regions.parquet")
    cells = pd.read_parquet(small_run / "cells.parquet")
    assert regions["region"].tolist() == ["all"]
    whole_mm3 = 24 * 1.25 * 384 * 0.4 * 384 * 0.4 * 1e-9
    assert regions["tissue_volume_mm3"].iloc[0] == pytest.approx(whole_mm3, rel=0.01)
    assert regions["n_cells"].iloc[0] == len(cells)
    run = json.loads((small_run / "run.json").read_text())
    assert run["counts"]["cells_detected"] == len(cells)
    assert run["counts"]["cells_segmented"] + run["counts"]["cells_empty"] == len(cells)
    detections = pd.concat([pd.read_parquet(p) for p in (small_run / "work" / "somas").glob("batch_*.parquet")])
    assert run["counts"]["detections_without_processes"] == int((~detections["has_processes"]).sum())
    assert run["versions"]["snakemake"] and "detect" in run["timings"]
    assert "on the grid: read as it is" in (small_run / "report.html").read_text()  # the grid's voxels


def test_the_overview_marks_the_detections_left_out_for_no_processes(small_run, tmp_path):
    from matplotlib.image import imread

    from traice.io.plan import Plan
    from traice.stages.report import overview_figure

    plan, cells = Plan.read(small_run / "work" / "plan" / "plan.json"), pd.read_parquet(small_run / "cells.parquet")
    labels = str(small_run / "segmentation.ome.zarr")
    overview_figure(plan, cells, labels, tmp_path / "none.png")
    left_out = pd.DataFrame({"z": [10.0, 12.0], "y": [100.0, 300.0], "x": [60.0, 200.0]})  # level-0 voxels
    overview_figure(plan, cells, labels, tmp_path / "two.png", left_out)
    none, two = imread(tmp_path / "none.png")[..., :3], imread(tmp_path / "two.png")[..., :3]
    cyan = lambda rgb: ((rgb[..., 0] < 0.3) & (rgb[..., 1] > 0.7) & (rgb[..., 2] > 0.7)).sum()  # noqa: E731
    assert none.shape == two.shape and cyan(none) == 0 < cyan(two)


@pytest.fixture(scope="module")
def atlas_run(small_run, tmp_path_factory):
    """The reference result, copied, then given a registered atlas (a TIFF annotation at 4 x 8 x 8 times the
    voxel size, and BrainGlobe structures.json): only morphology, regions and the reports run again."""
    import shutil

    import tifffile

    from helpers import STRUCTURES, annotation, small_config

    tmp = tmp_path_factory.mktemp("atlas")
    shutil.copytree(small_run, tmp / "results" / "small")
    tifffile.imwrite(tmp / "registered_atlas.tiff", annotation())
    (tmp / "structures.json").write_text(json.dumps(STRUCTURES))
    cfg = small_config(tmp)
    cfg["samples"]["small"]["atlas"] = {"annotation": str(tmp / "registered_atlas.tiff"),
                                        "structures": str(tmp / "structures.json")}
    before = (tmp / "results" / "small" / "cells.parquet").stat().st_mtime_ns
    run_workflow(cfg, tmp)
    assert (tmp / "results" / "small" / "cells.parquet").stat().st_mtime_ns == before  # detection not redone
    return tmp / "results" / "small"


def test_atlas_gives_each_cell_its_structure_and_regions_per_structure(atlas_run):
    from helpers import annotation

    morph = pd.read_parquet(atlas_run / "morphology.parquet")
    ann = annotation()  # 5 x 3.2 x 3.2 µm voxels over the 30 x 153.6 x 153.6 µm sample
    vox = np.floor(morph[["z_um", "y_um", "x_um"]].to_numpy() / [5.0, 3.2, 3.2]).astype(int)
    assert morph["structure_id"].tolist() == ann[tuple(vox.T)].tolist()
    acronyms = {0: "", 1009: "fiber tracts", 315: "Isocortex", 1089: "HPF"}
    assert morph["structure"].tolist() == [acronyms[i] for i in morph["structure_id"]]
    assert (morph["sample"] == "small").all()
    regions = pd.read_parquet(atlas_run / "regions.parquet").set_index("region")
    assert list(regions.index[:1]) == ["all"] and set(regions["kind"]) == {"all", "atlas"}
    counts = morph["structure"].value_counts()
    assert regions.loc["grey", "n_cells"] == counts.get("Isocortex", 0) + counts.get("HPF", 0)
    assert regions.loc["root", "n_cells"] == (morph["structure_id"] > 0).sum()
    assert regions.loc["root", "tissue_volume_mm3"] == pytest.approx((ann > 0).sum() * 5 * 3.2 * 3.2 * 1e-9)
    report = (atlas_run / "report.html").read_text()
    assert "Isocortex" in report


def test_swc_load_in_neurom_with_our_length(small_run):
    neurom = pytest.importorskip("neurom", reason="neurom (test dependency) not installed")
    morph = pd.read_parquet(small_run / "morphology.parquet").set_index("cell_id")
    branched = morph[(morph["status"] == "ok") & (morph["total_length_um"] > 20)]
    assert len(branched) >= 3
    for cid, row in branched.iterrows():
        m = neurom.load_morphology(small_run / "swc" / f"{cid}.swc")
        theirs = neurom.get("total_length", m)
        assert theirs == pytest.approx(row["total_length_um"], rel=0.01), cid
        assert len(m.neurites) == row["n_primary_processes"], cid


def test_labels_open_with_ome_zarr_reader(small_run):
    nodes = {Path(n.zarr.path.rstrip("/")).name: n for n in Reader(parse_url(str(small_run / "segmentation.ome.zarr")))()}
    node = nodes["segmentation.ome.zarr"]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.25, 0.4, 0.4]
    assert node.data[0].shape == (24, 384, 384)
    # the label image links back to its image (NGFF image-label source), so readers find and open both
    source = zarr.open_group(str(small_run / "segmentation.ome.zarr"), mode="r").attrs["ome"]["image-label"]["source"]
    assert (small_run / "segmentation.ome.zarr" / source["image"]).resolve() == (small_run / "input.ome.zarr").resolve()
    assert nodes["input.ome.zarr"].data[0].shape[-3:] == (24, 384, 384)


def test_snakemake_report_has_figures_with_captions(small_run, tmp_path):
    cfg = small_run.parent.parent / "config.yaml"
    out = cli(["--cores", "1", "--configfile", str(cfg), "--report", str(tmp_path / "r.html")], cfg.parent)  # the run's own
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "r.html").read_text()
    for fig in ["overview.png", "gallery.png", "histograms.png", "density.png", "resources.png"]:
        assert fig in text
    assert "Sholl maximum" in text


def test_soma_f1_against_truth(small_run):
    cells = pd.read_parquet(small_run / "cells.parquet")
    truth = pd.read_parquet(truth_path(small_run / "input.ome.zarr"))
    m = match_points(cells[["z_um", "y_um", "x_um"]].to_numpy(), truth[["z_um", "y_um", "x_um"]].to_numpy(), 6.0)
    assert m.recall >= 0.8
    assert m.f1 >= F1_FLOOR


def test_cell_ids_and_labels_agree(small_run):
    cells = pd.read_parquet(small_run / "cells.parquet")
    assert cells["cell_id"].tolist() == list(range(1, len(cells) + 1))
    assert {"cell_id", "z_um", "y_um", "x_um", "z", "y", "x", "score"} <= set(cells.columns)
    group = zarr.open_group(str(small_run / "segmentation.ome.zarr"), mode="r")
    ImageLabel.from_zarr(group)
    labels = np.unique(group["0"][...])
    morph = pd.read_parquet(small_run / "morphology.parquet")
    segmented = set(morph.loc[morph["status"] == "ok", "cell_id"])
    assert set(pd.read_parquet(small_run / "sholl.parquet")["cell_id"]) <= segmented
    assert set(labels[labels > 0]) == segmented
    assert segmented <= set(cells["cell_id"])
    # cells without a mask are reported with a reason, never silently dropped
    assert set(morph["cell_id"]) == set(cells["cell_id"])
    swc = {int(p.stem) for p in (small_run / "swc").glob("*.swc")}
    assert swc == segmented
    spacing = (1.25, 0.4, 0.4)
    np.testing.assert_allclose(cells["z"] * spacing[0], cells["z_um"], atol=spacing[0] / 2 + 1e-6)


def _bad_input_case(tmp: Path, samples: dict, **extra):
    cfg = tmp / "bad.yaml"
    results = tmp / "results"
    cfg.write_text(yaml.safe_dump({"samples": samples, "results": str(results), **extra}))
    out = cli(["--cores", "1", "--configfile", str(cfg)], tmp)
    assert out.returncode != 0
    assert not results.exists(), "nothing may be written for a bad input"
    return out


def test_bad_inputs_fail_before_any_job(tmp_path, write_image):
    cases = []
    cases.append(({"a": str(tmp_path / "nope.ome.zarr")}, "input image not found"))
    (tmp_path / "folder").mkdir()
    cases.append(({"a": str(tmp_path / "folder")}, "is not an OME-Zarr image"))
    for samples, message in cases:
        out = _bad_input_case(tmp_path, samples)
        lines = [l for l in out.stderr.splitlines() if message in l]
        assert len(lines) == 1, out.stderr
        assert "sample 'a'" in lines[0]
        assert "Traceback" not in out.stderr


def test_multichannel_needs_channel(tmp_path):
    path = tmp_path / "mc.ome.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.create_array("0", shape=(2, 8, 64, 64), dtype=np.uint16, dimension_names=("c", "z", "y", "x"))
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1.25, 0.4, 0.4]}]}]}]}
    out = _bad_input_case(tmp_path, {"a": str(path)})
    assert "has 2 channels; set 'channel'" in out.stderr


def test_wrong_config_key_and_type_are_named(tmp_path):
    out = _bad_input_case(tmp_path, {"demo": {"synthetic": {"seed": 0}}}, plan={"tile_shap": [1, 2, 3]})
    assert "tile_shap" in out.stderr
    out = _bad_input_case(tmp_path, {"demo": {"synthetic": {"seed": 0}}}, detect={"threshold": "high"})
    assert "threshold" in out.stderr and "high" in out.stderr


def test_missing_or_wrong_weights_are_named(tmp_path):
    from traice.weights import shipped_weights

    demo = {"demo": {"synthetic": {"seed": 0}}}
    out = _bad_input_case(tmp_path, demo, segment={"method": "prompted", "model": str(tmp_path / "nope.pt")})
    assert "segment.model" in out.stderr and "no such file" in out.stderr
    out = _bad_input_case(tmp_path, demo, segment={"method": "prompted", "model": str(shipped_weights("soma"))})
    assert "a stage-1 checkpoint, expected prompted" in out.stderr


def test_user_samples_replace_the_demo_sample(tmp_path, write_image):
    path = write_image(np.full((8, 64, 64), 100, np.uint16))
    cfg = tmp_path / "user.yaml"
    cfg.write_text(yaml.safe_dump({"samples": {"mine": str(path)}, "results": str(tmp_path / "r")}))
    out = cli(["-n", "--cores", "1", "--configfile", str(cfg)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mine" in out.stdout and "demo" not in out.stdout.replace("demo.", "")


def test_image_without_cells_gives_valid_empty_outputs(tmp_path, write_image):
    rng = np.random.default_rng(0)
    path = write_image(rng.poisson(100, size=(16, 128, 128)).astype(np.uint16))
    run_workflow({"samples": {"blank": str(path)}, "results": str(tmp_path / "r")}, tmp_path)
    out = tmp_path / "r" / "blank"
    assert len(pd.read_parquet(out / "cells.parquet")) == 0
    assert len(pd.read_parquet(out / "morphology.parquet")) == 0
    group = zarr.open_group(str(out / "segmentation.ome.zarr"), mode="r")
    ImageLabel.from_zarr(group)
    assert group["0"][...].max() == 0
    assert (out / "report.html").exists() and (out / "run.json").exists()


def test_lint_is_clean(tmp_path):
    out = cli(["--lint", "--cores", "1"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr


@pytest.mark.parametrize("task", ["soma", "branch", "cells", "pretrain"])
def test_train_rules_resolve(tmp_path, task):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "train": {"synthetic": 2, task: {"steps": 3}}}))
    rule = "pretrain" if task == "pretrain" else f"train_{task}"
    out = cli(["-n", rule, "--cores", "1", "--configfile", str(cfg)], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert rule in out.stdout and str(tmp_path / "results" / "models" / task / "model.pt") in out.stdout


def test_pretrain_rule_trains_a_denoiser_on_a_users_image(small_run, tmp_path):
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "train": {
        "synthetic": 0, "images": [str(small_run / "input.ome.zarr")], "device": "cpu",
        "pretrain": {"steps": 2, "window": [16, 64, 64]}}}))
    out = cli(["pretrain", "--cores", "2", "--configfile", str(cfg)], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((tmp_path / "results" / "models" / "pretrain" / "training.json").read_text())
    assert summary["task"] == "pretrain" and summary["steps"] == 2
    assert summary["train_volumes"] and all(v.startswith("image-") for v in summary["train_volumes"])


def test_finetune_rule_writes_an_adapter_that_the_config_accepts(small_run, tmp_path):
    truth = pd.read_parquet(truth_path(small_run / "input.ome.zarr"))
    truth.head(3)[["z_um", "y_um", "x_um"]].to_csv(tmp_path / "clicks.csv", index=False)
    cfg = tmp_path / "finetune.yaml"
    cfg.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "finetune": {
        "image": str(small_run / "input.ome.zarr"), "points": str(tmp_path / "clicks.csv"), "steps": 2, "threads": 2}}))
    out = cli(["finetune", "--cores", "2", "--configfile", str(cfg)], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    adapter = tmp_path / "results" / "models" / "finetune" / "adapter.pt"
    assert 0 < adapter.stat().st_size < 2 * 1024**2
    # detect.adapter: accepted over the weights it was tuned from, refused over others, before any job
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(yaml.safe_dump({"samples": {"s": str(small_run / "input.ome.zarr")},
                                       "results": str(tmp_path / "r"), "detect": {"adapter": str(adapter)}}))
    out = cli(["-n", "--cores", "1", "--configfile", str(run_cfg)], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    other = tmp_path / "other.pt"
    other.write_bytes(b"not an adapter")
    run_cfg.write_text(yaml.safe_dump({"samples": {"s": str(small_run / "input.ome.zarr")},
                                       "results": str(tmp_path / "r"), "detect": {"adapter": str(other)}}))
    out = cli(["-n", "--cores", "1", "--configfile", str(run_cfg)], tmp_path)
    assert out.returncode != 0 and "detect.adapter" in out.stderr and "cannot be read as an adapter" in out.stderr


@pytest.mark.long
def test_default_learned_path_owns_the_arbors(tmp_path):
    """The defaults end to end: the one-pass network (detect.method traice) stores its maps per detect job and
    seeded growth (segment.method growth) shares their foreground between the somas."""
    from helpers import small_config
    from traice.io.maps import MapReader
    from traice.stages.evaluate import evaluate_run

    cfg = small_config(tmp_path, segment={"cells_per_job": 6})
    del cfg["detect"]
    run_workflow(cfg, tmp_path)
    out = tmp_path / "results" / "small"
    groups = sorted((out / "work" / "maps").glob("batch_*.zarr"))
    reader = MapReader.from_index(out / "work" / "maps" / "index.parquet")
    assert len(groups) >= 2 and set(reader.index["group"]) == {g.name for g in groups}  # every detect job's tiles
    scores = evaluate_run(out)
    assert scores["soma F1"] >= LEARNED_F1_FLOOR, scores
    assert scores["branch clDice (all true cells)"] >= LEARNED_CLDICE_FLOOR, scores
    morphology = pd.read_parquet(out / "morphology.parquet")
    # arbors, not bare somas (the cells without processes are false detections: soma-sized puncta)
    assert (morphology["total_length_um"] > 0).mean() >= 0.7 and morphology["total_length_um"].median() > 100
    # volumes weigh each voxel by the foreground the cell was grown through: never more than its voxels
    voxel_um3 = np.prod([1.25, 0.4, 0.4])
    voxels = np.bincount(zarr.open_array(str(out / "segmentation.ome.zarr" / "0"), mode="r")[...].ravel())
    ok = morphology[morphology["status"] == "ok"]
    whole = voxels[ok["cell_id"].to_numpy()] * voxel_um3
    assert ok["partial_volumes"].all()
    assert (ok["cell_volume_um3"] <= whole + 1e-6).all() and (ok["cell_volume_um3"] < 0.99 * whole).mean() > 0.5


def test_binary_segmenters_count_whole_voxels(small_run):
    morphology = pd.read_parquet(small_run / "morphology.parquet")  # the classical segmenter: no foreground map
    assert len(morphology) and not morphology["partial_volumes"].any()
