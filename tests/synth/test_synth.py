import numpy as np

from traice.synth import SynthParams, synthesize
from traice.synth.raster import tube_mask
from traice.core.geometry import Box


def test_deterministic_from_seed():
    p = SynthParams(shape=(16, 128, 128), cells=3, seed=5)
    a, b = synthesize(p), synthesize(p)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.cells, b.cells)
    c = synthesize(SynthParams(shape=(16, 128, 128), cells=3, seed=6))
    assert not np.array_equal(a.image, c.image)


def test_truth_matches_labels():
    brain = synthesize(SynthParams(shape=(24, 256, 256), cells=6, seed=2))
    t = brain.truth
    assert len(t) == 6
    assert set(np.unique(brain.cells)) - {0} <= set(t["cell_id"])
    for _, row in t.iterrows():
        z, y, x = (int(row[a]) for a in "zyx")
        assert brain.somas[z, y, x] in (row["cell_id"], 0) or brain.cells[z, y, x] != 0
        assert 3.0 <= row["soma_radius_um"] <= 6.0
    assert brain.image.dtype == np.uint16
    # cells are brighter than background on average
    assert brain.image[brain.somas > 0].mean() > brain.image[brain.cells == 0].mean() + 10


def test_tube_mask_straight_segment_length():
    spacing = (1.0, 0.5, 0.5)
    pts = np.array([[5.0, 5.0, 2.0], [5.0, 5.0, 22.0]])
    mask = tube_mask(pts, np.array([1.0, 1.0]), np.array([-1, 0]), Box.from_shape((11, 21, 50)), spacing)
    # a 20 µm tube of radius 1 µm: volume ~ pi r^2 L (+ end caps)
    volume = mask.sum() * np.prod(spacing)
    assert 0.8 * np.pi * 20 < volume < 1.5 * np.pi * 22
    assert mask[5, 10, 4:45].all()


def test_written_field_is_valid_ngff_with_its_labels(tmp_path):
    import zarr
    from ome_zarr_models.v05 import Image

    from traice.synth import write_synthetic

    write_synthetic(synthesize(SynthParams(shape=(16, 128, 128), cells=2, seed=1)), tmp_path / "f.ome.zarr")
    Image.from_zarr(zarr.open_group(str(tmp_path / "f.ome.zarr"), mode="r"))  # validates the labels group too
    labels = zarr.open_group(str(tmp_path / "f.ome.zarr" / "labels"), mode="r").attrs["ome"]
    assert labels["version"] == "0.5" and labels["labels"] == ["cells", "somas"]
