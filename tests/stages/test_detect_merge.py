import numpy as np
import pandas as pd
import pytest

from traice.stages.detect import DetectParams, detect_classical, detect_tile, load_detector
from traice.core.geometry import Box, tile_grid
from traice.io.ome import open_image
from traice.stages.merge import dedupe, merge_detections
from traice.synth.raster import ellipsoid_mask, tube_mask

SPACING = (1.25, 0.4, 0.4)
STATS = {"median": 100.0, "sigma": 3.0}


def _phantom(shape, somas, tube=None, seed=0):
    """Background 100 +- 3 with bright spheres (radius 4.5 µm) and an optional thin process."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 3, size=shape).astype(np.float32)
    box = Box.from_shape(shape)
    for c in somas:
        img[ellipsoid_mask(np.asarray(c) * SPACING, (4.5, 4.5, 4.5), np.eye(3), box, SPACING)] += 60
    if tube is not None:
        a, b = tube
        img[tube_mask(np.array([a, b], float), np.array([0.5, 0.5]), np.array([-1, 0]), box, SPACING)] += 60
    return img


def test_classical_finds_somas_not_processes():
    somas = [(12, 60, 60), (12, 60, 150)]
    img = _phantom((24, 128, 200), somas, tube=((15, 30, 90), (15, 40, 170)))
    found = detect_classical(img, SPACING, STATS, DetectParams())
    assert len(found) == 2
    got = found.sort_values("x")[["z", "y", "x"]].to_numpy()
    assert np.abs(got - np.array(somas)).max() < 2.0


def test_classical_empty_on_noise():
    img = np.random.default_rng(1).normal(100, 3, size=(16, 96, 96)).astype(np.float32)
    assert len(detect_classical(img, SPACING, STATS, DetectParams())) == 0


@pytest.mark.parametrize("method", ["classical", "traice"])
def test_soma_on_tile_border_found_once(write_image, method):
    shape = (24, 128, 128)
    soma = (12, 64, 64)  # exactly on the corner of four tile cores
    img = _phantom(shape, [soma])
    path = write_image(np.clip(img, 0, 65535).astype(np.uint16))
    image = open_image(path)
    bounds = image.bounds
    tiles = tile_grid(bounds, bounds, (24, 64, 64), (13, 40, 40))
    params = DetectParams(method=method, min_processes=0)  # a bare sphere: no processes (test_detect_processes.py)
    model = load_detector(params)
    parts = [detect_tile(image, t.core, t.read, STATS, params, model)[0] for t in tiles]
    found = pd.concat(parts)
    assert len(found) == 1
    assert np.abs(found[["z", "y", "x"]].to_numpy()[0] - soma).max() < 2.0


def test_dedupe_keeps_highest_score():
    pts = np.array([[0, 0, 0], [0, 0, 3.0], [0, 0, 10.0]])
    keep = dedupe(pts, np.array([1.0, 5.0, 2.0]), radius_um=4.0)
    assert keep.tolist() == [1, 2]
    assert dedupe(np.zeros((0, 3)), np.zeros(0), 4.0).tolist() == []


def test_merge_assigns_ids_by_position_deterministically():
    a = pd.DataFrame({"z": [5.0, 1.0], "y": [2.0, 2.0], "x": [3.0, 3.0], "score": [1.0, 2.0]})
    b = pd.DataFrame({"z": [1.0], "y": [2.0], "x": [3.5], "score": [0.5]})  # duplicate of a[1]
    cells = merge_detections([a, b], SPACING, dedupe_um=2.0)
    assert cells["cell_id"].tolist() == [1, 2]
    assert cells["z"].tolist() == [1, 5]
    assert cells["z_um"].tolist() == [1.25, 6.25]
    again = merge_detections([b, a], SPACING, dedupe_um=2.0)
    pd.testing.assert_frame_equal(cells, again)
    empty = merge_detections([], SPACING, 2.0)
    assert len(empty) == 0 and "cell_id" in empty
