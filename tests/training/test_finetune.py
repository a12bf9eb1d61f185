"""Fine-tuning from clicked somas: points in, a small adapter out, loaded by detection; resumes after a kill."""

import numpy as np
import pandas as pd
import pytest
import torch

from traice.core.errors import InputError
from traice.training import finetune as ft
from traice.training.finetune import FinetuneConfig, finetune, read_points, targets

pytest.importorskip("peft", reason="peft (a dependency) not installed")
SPACING = (1.25, 0.4, 0.4)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    from traice.synth import SynthParams, synthesize, write_synthetic

    tmp = tmp_path_factory.mktemp("finetune")
    brain = synthesize(SynthParams(shape=(16, 256, 256), cells=3, seed=2))
    write_synthetic(brain, tmp / "image.ome.zarr")
    brain.truth[["z_um", "y_um", "x_um"]].to_csv(tmp / "clicks.csv", index=False)
    return tmp


def test_points_in_micrometres_voxels_or_from_napari(tmp_path):
    pd.DataFrame({"z_um": [2.5], "y_um": [4.0], "x_um": [8.0]}).to_csv(tmp_path / "um.csv", index=False)
    pd.DataFrame({"z": [2], "y": [10], "x": [20]}).to_csv(tmp_path / "vox.csv", index=False)
    pd.DataFrame({"index": [0], "axis-0": [2.5], "axis-1": [4.0], "axis-2": [8.0]}).to_csv(tmp_path / "napari.csv", index=False)
    for name in ("um", "vox", "napari"):
        np.testing.assert_allclose(read_points(tmp_path / f"{name}.csv", SPACING), [[2.5, 4.0, 8.0]])
    pd.DataFrame({"X": [1], "Y": [2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="bad.csv: expected columns z_um,y_um,x_um"):
        read_points(tmp_path / "bad.csv", SPACING)


def test_targets_are_soma_balls_and_a_negative_shell_elsewhere_unknown():
    cfg = FinetuneConfig()
    soma, weight = targets((16, 128, 128), np.array([[8.0, 64.0, 64.0]]), cfg)
    assert soma[8, 64, 64] == 1 and soma[8, 64, 64 + 12] == 0        # 4.8 µm away: outside the 4 µm ball
    assert weight[8, 64, 64 + 30] == 1 and soma[8, 64, 64 + 30] == 0  # 12 µm: in the negative shell
    assert weight[8, 64, 64 + 60] == 0 and weight[8, 64, 64 + 18] == 0  # 24 µm: unknown; 7.2 µm: between
    assert set(np.unique(weight[soma > 0])) == {1.0}


def test_a_complete_box_makes_everything_else_in_it_negative():
    cfg = FinetuneConfig()
    box = np.array([[0, 0, 0], [16, 128, 64]], np.float32)  # the clicks are all the somas in x < 64
    soma, weight = targets((16, 128, 128), np.array([[8.0, 64.0, 32.0]]), cfg, box)
    assert weight[8, 10, 10] == 1 and soma[8, 10, 10] == 0      # far from the click, inside the box: not soma
    assert weight[8, 10, 100] == 0                              # outside the box: unknown
    assert weight[8, 64, 32 + 18] == 0                          # 7.2 µm from the click: between ball and shell


def test_lora_adapter_is_small_and_loads_into_detection(field):
    from traice.stages.detect.network import load
    from traice.stages.detect.params import DetectParams

    cfg = FinetuneConfig(steps=2, batch_size=1)
    summary = finetune(field / "image.ome.zarr", field / "clicks.csv", field / "adapter.pt", cfg)
    assert summary["clicks"] == 3 and summary["file_bytes"] < 2 * 1024**2
    assert 0 < summary["trainable_parameters"] < 50_000
    from traice.nn.lora import read_adapter

    saved = read_adapter(field / "adapter.pt")["state_dict"]
    assert any("lora_" in k for k in saved) and any(k.endswith("norm1.weight") for k in saved)  # norms by default
    tuned = load(DetectParams(adapter=str(field / "adapter.pt")))
    base = load(DetectParams())
    x = torch.randn(1, 1, 16, 128, 128)
    with torch.no_grad():
        assert not torch.allclose(tuned(x), base(x))  # the adapter changed the network
    assert not (field / "adapter.pt.partial.pt").exists()


@pytest.mark.long
def test_a_killed_finetune_resumes_to_the_same_adapter(field, monkeypatch, tmp_path):
    cfg = FinetuneConfig(steps=4, batch_size=1)
    monkeypatch.setattr(ft, "CHECKPOINT_EVERY", 1)
    finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "whole.pt", cfg)
    calls = {"n": 0}
    draw = ft.draw_batch

    def killed_at_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return draw(*args, **kwargs)

    monkeypatch.setattr(ft, "draw_batch", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "resumed.pt", cfg)
    assert (tmp_path / "resumed.pt.partial.pt").exists() and not (tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(ft, "draw_batch", draw)
    finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "resumed.pt", cfg)
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    assert whole.keys() == resumed.keys()
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k


def test_clicks_outside_the_image_are_refused_before_training(field, tmp_path):
    pd.DataFrame({"z_um": [1.0], "y_um": [5000.0], "x_um": [1.0]}).to_csv(tmp_path / "far.csv", index=False)
    with pytest.raises(InputError, match="far.csv: point 1 .* lies outside the image"):
        finetune(field / "image.ome.zarr", tmp_path / "far.csv", tmp_path / "a.pt", FinetuneConfig(steps=1))
    with pytest.raises(InputError, match="complete box .* expected start < stop inside the image"):
        finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "a.pt", FinetuneConfig(steps=1),
                 complete_um=[[0, 0, 0], [10, 5000, 10]])
    assert not (tmp_path / "a.pt").exists()


def _swc(path, nodes_um, radius=0.5):
    """One traced cell: a chain of nodes (z, y, x µm), the first the soma; SWC columns are id type x y z r parent."""
    rows = [f"{i + 1} {1 if i == 0 else 3} {x} {y} {z} {radius} {i if i else -1}" for i, (z, y, x) in enumerate(nodes_um)]
    path.write_text("\n".join(rows) + "\n")


def test_traced_processes_are_foreground_with_a_negative_band_and_the_rest_unknown():
    soma = np.array([10.0, 25.6, 12.8])                         # µm; voxel (8, 64, 32) of the grid
    process = np.stack([soma + [0, 0, dx] for dx in np.arange(0, 26, 2.0)])  # 24 µm along x
    target, weight = ft.trace_targets([(process, np.full(len(process), 0.1), np.arange(-1, len(process) - 1))],
                                      np.zeros(3), (16, 128, 128))
    assert target.dtype == np.uint8 and target[8, 64, 32] == 1 and target[8, 64, 32 + 55] == 1  # 22 µm along
    assert target[8, 64, 32 + 70] == 0 and weight[8, 64, 32 + 70] == 1  # 28 µm: past the tip, in the band
    assert target[8, 64 + 6, 50] == 0 and weight[8, 64 + 6, 50] == 1    # 2.4 µm beside it: not foreground
    assert weight[8, 64 + 20, 50] == 0                                 # 8 µm beside it: unknown
    assert weight[8, 64, 32 + 1] == 1 and set(np.unique(weight[target > 0])) == {1}
    none = ft.trace_targets([(process + 500, np.full(len(process), 0.1), np.arange(-1, len(process) - 1))],
                            np.zeros(3), (16, 128, 128))
    assert not none[0].any() and not none[1].any()                     # a tree far away labels nothing here


def test_traced_arbors_train_the_foreground_and_bad_traces_are_refused(field, tmp_path):
    clicks = pd.read_csv(field / "clicks.csv").to_numpy()
    _swc(tmp_path / "cell.swc", [clicks[0], clicks[0] + [0, 0, 6], clicks[0] + [0, 0, 12]])
    _swc(tmp_path / "extra.swc", [[5.0, 20.0, 20.0], [5.0, 20.0, 30.0]])  # a traced cell nobody clicked
    cfg = FinetuneConfig(steps=2, batch_size=2)
    summary = finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "adapter.pt", cfg,
                       traces_path=tmp_path)
    assert summary["traced_cells"] == 2 and summary["clicks"] == 4  # the unclicked root became a click
    assert np.isfinite(summary["final_loss"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.swc").write_text("1 1 0 0 0\n")
    with pytest.raises(InputError, match="broken.swc: .*expected 7 columns"):
        finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "a.pt", cfg, traces_path=tmp_path / "bad")
    _swc(tmp_path / "far.swc", [[5.0, 5000.0, 20.0]])
    with pytest.raises(InputError, match="far.swc: the soma of tree 1 .* lies outside the image"):
        finetune(field / "image.ome.zarr", field / "clicks.csv", tmp_path / "a.pt", cfg, traces_path=tmp_path / "far.swc")
    assert not (tmp_path / "a.pt").exists()


def test_crops_past_the_edge_of_finer_voxels_are_background_there():
    from traice.io.ome import ArrayImage
    from traice.stages.plan import intensity_stats

    rng = np.random.default_rng(3)
    image = ArrayImage(rng.poisson(4, (20, 160, 160)).astype(np.uint16), (1.0, 0.32, 0.32))  # finer than the grid
    stats = intensity_stats(image)
    assert stats["grid_median"] != stats["median"]  # averaged onto the grid, the background sits elsewhere
    window = (8, 32, 32)
    corner = np.array([[2.0, 3.0, 3.0]])  # µm: most of the crop lies outside the image
    crop = ft.click_crops(image, stats, corner, window)[0].image
    outside = crop[:6, :20, :20]  # grid voxels before the image's start on every axis
    inside = crop[-4:, -20:, -20:]
    assert abs(float(outside.mean())) < 1e-3 and float(outside.std()) < 1e-6  # flat background, set to 0
    assert abs(float(np.median(inside))) < 0.15  # the image's own background is at 0 too
