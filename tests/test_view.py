import numpy as np
import pandas as pd
import pytest

from traice.core.errors import InputError
from traice.io.multiscale import write_block, write_multiscale
from traice.io.swc import write_swc
from traice.core.geometry import Box
from traice.stages.stitch import init_labels

SPACING = (2.0, 0.5, 0.5)


@pytest.fixture
def result(tmp_path):
    """A tiny result folder as the workflow writes one: image, linked labels, cells, one SWC."""
    out = tmp_path / "results" / "s"
    out.mkdir(parents=True)
    image = np.random.default_rng(0).integers(0, 100, (8, 128, 128)).astype(np.uint16)
    write_multiscale(tmp_path / "brain.ome.zarr", image, SPACING, footprint=(8, 64, 64))
    init_labels(out / "segmentation.ome.zarr", (8, 128, 128), SPACING, (8, 64, 64), image=tmp_path / "brain.ome.zarr")
    labels = np.zeros((8, 128, 128), np.uint32)
    labels[2:5, 10:20, 10:20] = 1
    write_block(out / "segmentation.ome.zarr", Box.from_shape(labels.shape), labels, label=True)
    pd.DataFrame({"sample": ["s"], "cell_id": [1], "z_um": [7.0], "y_um": [7.5], "x_um": [7.5], "score": [3.0]}).to_parquet(
        out / "cells.parquet")
    swc = pd.DataFrame({"id": [1, 2, 3], "type": [1, 3, 3], "x": [7.5, 9.5, 11.5], "y": [7.5, 7.5, 8.5],
                        "z": [7.0, 7.0, 7.0], "radius": [2.0, 0.5, 0.5], "parent": [-1, 1, 2]})
    (out / "swc").mkdir()
    write_swc(swc, out / "swc" / "1.swc", 1)
    return out


def test_result_opens_in_napari_aligned_in_um(result):
    napari = pytest.importorskip("napari", reason="napari (test dependency, traice[view]) not installed")
    from traice.view import add_result

    viewer = napari.components.ViewerModel()  # headless: no window, no Qt
    image, labels, somas, skeletons = add_result(viewer, result, swc=True)
    assert image.multiscale and labels.multiscale and labels.visible
    np.testing.assert_allclose(image.scale, SPACING)
    np.testing.assert_allclose(labels.scale, SPACING)
    assert labels.data[0].shape == (8, 128, 128) and len(labels.data) == len(image.data)
    # the soma point sits on its label, in world (µm) coordinates
    world = somas.data[0]
    voxel = np.floor(world / np.asarray(SPACING)).astype(int)
    assert np.asarray(labels.data[0][tuple(voxel)]) == 1
    assert somas.features["cell_id"].tolist() == [1]
    # two SWC edges, from each child to its parent, in µm (z, y, x)
    np.testing.assert_allclose(skeletons.data[:, 0], [[7.0, 7.5, 9.5], [7.0, 8.5, 11.5]])
    np.testing.assert_allclose(skeletons.data[:, 1], [[0.0, 0.0, -2.0], [0.0, -1.0, -2.0]])


def test_view_of_a_folder_that_is_not_a_result(tmp_path):
    from traice.view import result_image

    with pytest.raises(InputError, match="not a traice result"):
        result_image(tmp_path)
