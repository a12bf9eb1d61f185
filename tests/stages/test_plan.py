"""The plan: what it counts of a damaged input, and when it refuses one."""

from __future__ import annotations

import numpy as np
import pytest

from traice.core.errors import InputError
from traice.core.geometry import Box
from traice.core.intensity import robust_stats
from traice.io.ome import open_image
from traice.stages.plan import PlanParams, make_plan

PARAMS = PlanParams(tile_shape=(40, 128, 128), halo_um=4, stitch_chunk=(8, 64, 64))


@pytest.fixture
def damaged(write_image):
    """A 40 x 256 x 256 image in 32 x 128 x 128 chunks (8 at level 0): one chunk file deleted, none corrupt yet."""
    path = write_image(np.random.default_rng(0).poisson(100, size=(40, 256, 256)).astype(np.uint16), spacing=(1.0, 1.0, 1.0))
    chunks = sorted(p for p in (path / "0" / "c").rglob("*") if p.is_file())
    assert len(chunks) >= 2
    chunks[-1].unlink()
    return path, chunks


def test_missing_chunks_are_counted_or_refused(damaged):
    path, chunks = damaged
    image = open_image(path)
    key = "/".join(chunks[-1].relative_to(path / "0").parts)
    assert image.missing_chunks() == (1, len(chunks), [key])
    plan = make_plan(image, PARAMS)
    assert plan.info["missing_chunks"] == 1 and plan.info["missing_chunk_keys"] == [key]
    with pytest.raises(InputError, match=f"1 of {len(chunks)} chunks of the full-resolution array are missing .first: {key}"):
        make_plan(image, PlanParams(**{**PARAMS.__dict__, "missing_chunks": "refuse"}))


def test_a_corrupt_chunk_is_named(damaged):
    path, chunks = damaged
    chunks[0].write_bytes(b"not a chunk")
    key = "/".join(chunks[0].relative_to(path / "0").parts)
    with pytest.raises(InputError, match=f"chunk {key} cannot be read"):
        open_image(path).read(Box.from_shape((40, 256, 256)))


def test_statistics_leave_non_finite_voxels_out():
    data = np.random.default_rng(0).normal(100, 5, size=10_000).astype(np.float32)
    holed = data.copy()
    holed[:7] = [np.nan, np.inf, -np.inf, np.nan, np.nan, np.inf, np.nan]
    clean, stats = robust_stats(data[7:]), robust_stats(holed)
    assert stats["non_finite"] == 7 and clean["non_finite"] == 0
    assert {k: v for k, v in stats.items() if k != "non_finite"} == {k: v for k, v in clean.items() if k != "non_finite"}
    with pytest.raises(InputError, match="no finite voxel"):
        robust_stats(np.full(10, np.nan, np.float32))


def test_ownership_runs_detect_out_to_the_cells_reach(write_image):
    """With maps_cover_margin, a region run also detects in the tiles the ROI's arbors reach into,
    so the one-pass maps cover them; without it, only in the tiles touching the ROI."""
    import dataclasses

    path = write_image(np.random.default_rng(1).poisson(100, size=(40, 384, 384)).astype(np.uint16), spacing=(1.25, 0.4, 0.4))
    image = open_image(path)
    roi = {"start_um": [0, 52, 52], "stop_um": [50, 100, 100]}  # voxels 130-250: inside the middle tile of a 3 x 3 grid
    params = dataclasses.replace(PARAMS, margin_um=20.0)
    plain = make_plan(image, params, roi)
    covered = make_plan(image, dataclasses.replace(params, maps_cover_margin=True), roi)
    assert len(plain.tiles) == 1 and len(covered.tiles) == 9


@pytest.mark.parametrize("spacing, averaged", [((1.0, 0.32, 0.32), True), ((2.5, 0.8, 0.8), False),
                                               ((1.25, 0.4, 0.4), False)])
def test_noise_is_also_measured_on_the_networks_grid_where_voxels_are_finer(write_image, spacing, averaged):
    """Finer voxels are averaged onto the grid, which lowers their noise: the plan measures it there too
    (grid_sigma), and the networks' input is normalised with it. Coarser voxels and the grid's own keep theirs."""
    from traice.core.intensity import grid_stats
    from traice.stages.plan import intensity_stats

    noise = np.random.default_rng(1).poisson(400, size=(40, 256, 256)).astype(np.uint16)
    stats = intensity_stats(open_image(write_image(noise, spacing=spacing)))
    assert stats["sigma"] == pytest.approx(20, rel=0.1)
    assert ("grid_sigma" in stats) == averaged and (grid_stats(stats) is stats) != averaged
    if averaged:  # each grid voxel averages ~1.95 finer ones (plus the anti-aliasing blur)
        assert grid_stats(stats)["median"] == pytest.approx(400, abs=2)
        assert 0.4 * stats["sigma"] < grid_stats(stats)["sigma"] < 0.8 * stats["sigma"]


def test_default_tile_read_box_is_whole_windows():
    """An inner tile's read box (core + halo on both sides, on the networks' grid) is covered by the sliding
    windows of the shipped one-pass network without a last window moved back: the core is as large as the
    windows it needs allow (docs/scale.md, "How large a tile")."""
    from traice.core.geometry import um_to_voxels
    from traice.core.grid import MODEL_SPACING_UM
    from traice.core.windows import window_starts
    from traice.nn.checkpoints import load_checkpoint
    from traice.stages.detect import DetectParams
    from traice.weights import shipped_weights

    window = load_checkpoint(shipped_weights("cells"))["config"]["window"]
    params = PlanParams()
    halo = um_to_voxels(params.halo_um, MODEL_SPACING_UM)
    for core, h, w in zip(params.tile_shape, halo, window):
        box = core + 2 * h
        starts = window_starts(box, w, DetectParams.overlap)
        stride = int(w * (1 - DetectParams.overlap))
        assert starts == list(range(0, box - w + 1, stride)) and starts[-1] + w == box, (core, h, w, starts)


@pytest.mark.parametrize("fill", ["zeros", "dark"])
def test_statistics_are_the_tissues_not_the_empty_space_around_it(write_image, fill):
    """A whole-brain stack is mostly the space around the brain: 0 where a stitched volume has no data, or a
    camera's dark level. The plan measures the background and its noise in the tissue only, so a field inside
    such a stack gets the statistics it has alone; measured over every voxel, the space would be taken for the
    background (a median of 0 and no noise, or the dark level)."""
    from traice.stages.plan import intensity_stats

    rng = np.random.default_rng(2)
    tissue = rng.poisson(400, size=(40, 256, 256)).astype(np.uint16)
    empty = np.zeros((40, 256, 768), np.uint16) if fill == "zeros" else \
        np.rint(100 + rng.normal(0, 3, size=(40, 256, 768))).astype(np.uint16)
    stack = np.concatenate([empty[..., :384], tissue, empty[..., 384:]], axis=2)  # the tissue is a quarter of it
    alone = make_plan(open_image(write_image(tissue, name="alone.ome.zarr")), PARAMS)
    inside = make_plan(open_image(write_image(stack, name="stack.ome.zarr")), PARAMS)
    assert inside.info["tiles_without_tissue"] > 0  # the mask found the empty space
    assert inside.info["stats"]["median"] == pytest.approx(alone.info["stats"]["median"], abs=1)
    assert inside.info["stats"]["sigma"] == pytest.approx(alone.info["stats"]["sigma"], rel=0.05)
    assert alone.info["stats"]["sigma"] == pytest.approx(20, rel=0.1)
    everything = robust_stats(stack[:, ::4, ::4])
    assert everything["median"] < 150  # what every voxel would have given


@pytest.mark.parametrize("kind", ["clipped", "quantised"])
def test_noise_of_a_clipped_or_quantised_background(kind):
    """Where most lower voxels sit exactly at the background, their median deviation is 0: a background-subtracted
    image clipped at 0 measures its noise above the background, integer counts with under a count of noise their
    root mean square deviation; neither leaves the noise at 0 (which would make every voxel a cell)."""
    rng = np.random.default_rng(3)
    if kind == "clipped":
        data = np.clip(rng.normal(0, 6, 100_000), 0, None).astype(np.float32)
        sigma = 6
    else:
        data = np.rint(10 + rng.normal(0, 0.6, 100_000)).astype(np.uint8)
        sigma = 0.6
    stats = robust_stats(data)
    assert stats["median"] == (0 if kind == "clipped" else 10)
    assert stats["sigma"] == pytest.approx(sigma, rel=0.25)
