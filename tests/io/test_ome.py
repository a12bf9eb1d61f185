import numpy as np
import pytest
import zarr
from ome_zarr.format import FormatV04
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_image
from ome_zarr_models.v05 import Image, ImageLabel

from traice.core.geometry import Box
from traice.core.errors import InputError
from traice.io.multiscale import pyramid_factors, write_multiscale
from traice.io.ome import open_image


def test_round_trip_block_read(write_image):
    data = np.random.default_rng(0).integers(0, 1000, size=(20, 150, 130), dtype=np.uint16)
    path = write_image(data)
    image = open_image(path)
    assert image.shape == data.shape
    assert image.spacing == (1.25, 0.4, 0.4)
    box = Box((3, 40, 50), (9, 140, 90))
    np.testing.assert_array_equal(image.read(box), data[box.slices].astype(np.float32))
    Image.from_zarr(zarr.open_group(str(path), mode="r"))  # valid NGFF 0.5


def test_pyramid_goes_towards_isotropy():
    f = pyramid_factors((32, 1024, 1024), (1.25, 0.4, 0.4))
    assert f[0] == (1, 1, 1) and f[1] == (1, 2, 2) and f[2] == (1, 4, 4)
    assert f[3] == (2, 8, 8)


def test_label_image_is_valid_and_downsampled_by_picking(tmp_path):
    lab = np.zeros((16, 256, 256), np.uint32)
    lab[4:8, 10:100, 10:100] = 7
    write_multiscale(tmp_path / "l.ome.zarr", lab, (1.0, 0.5, 0.5), footprint=(16, 128, 128), label=True)
    g = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r")
    ImageLabel.from_zarr(g)
    assert set(np.unique(g["1"][...])) == {0, 7}
    # ome-zarr-py reads it with the right scale
    node = next(iter(Reader(parse_url(str(tmp_path / "l.ome.zarr")))()))
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [1.0, 0.5, 0.5]


def test_reads_ngff_04_with_channels(tmp_path):
    data = np.zeros((2, 8, 64, 64), np.uint16)
    data[1] = 5
    path = tmp_path / "v04.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    write_image(data, root, axes="czyx", fmt=FormatV04(), scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5}, scale_factors=[])
    with pytest.raises(InputError, match="2 channels; set 'channel'"):
        open_image(path)
    with pytest.raises(InputError, match="out of range"):
        open_image(path, channel=2)
    image = open_image(path, channel=1)
    assert image.spacing == (2.0, 0.5, 0.5)
    assert image.read(Box((0, 0, 0), (2, 2, 2))).max() == 5


def test_bad_inputs_have_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_image(tmp_path / "missing.ome.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="not an OME-Zarr image"):
        open_image(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "nomulti.zarr"), mode="w")
    with pytest.raises(InputError, match="no 'multiscales'"):
        open_image(tmp_path / "nomulti.zarr")

    flat = tmp_path / "flat.ome.zarr"
    g = zarr.open_group(str(flat), mode="w", zarr_format=3)
    g.create_array("0", shape=(64, 64), dtype=np.uint16)
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}]}
    with pytest.raises(InputError, match="2D"):
        open_image(flat)

    noscale = tmp_path / "noscale.ome.zarr"
    g = zarr.open_group(str(noscale), mode="w", zarr_format=3)
    g.create_array("0", shape=(4, 64, 64), dtype=np.uint16)
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": a, "type": "space"} for a in "zyx"], "datasets": [{"path": "0"}]}]}
    with pytest.raises(InputError, match="no scale metadata"):
        open_image(noscale)
    for err in [InputError("x")]:
        assert "\n" not in str(err)
