"""TIFF planes and stacks to OME-Zarr: voxel sizes from the files or the user, bad files refused before writing."""

from __future__ import annotations

import numpy as np
import zarr
import pytest
import tifffile

from traice.cli import main
from traice.core.errors import InputError
from traice.core.geometry import Box
from traice.io.convert import convert, open_source
from traice.io.ome import open_image

from helpers import write_czi
from nd2_writer import write_nd2


def _volume(shape=(5, 70, 90), seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape, dtype=np.uint16)


def _planes(folder, volume, **kw):
    folder.mkdir()
    for z, plane in enumerate(volume):
        tifffile.imwrite(folder / f"plane_{z}.tif", plane, **kw)  # plane_10 after plane_9: natural order
    return folder


def test_planes_in_natural_order_with_the_given_voxel_size(tmp_path):
    volume = _volume((12, 70, 90))
    folder = _planes(tmp_path / "planes", volume)
    done = convert(folder, tmp_path / "out.ome.zarr", voxel_size_um=[5, 2, 2])
    image = open_image(tmp_path / "out.ome.zarr")
    assert done["shape"] == [12, 70, 90] and image.spacing == (5.0, 2.0, 2.0)
    np.testing.assert_array_equal(image.read(image.bounds), volume)
    from ome_zarr_models.v05 import Image

    Image.from_zarr(zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r"))  # valid NGFF 0.5
    # a glob gives the same image
    convert(str(folder / "plane_*.tif"), tmp_path / "glob.ome.zarr", voxel_size_um=[5, 2, 2])
    np.testing.assert_array_equal(open_image(tmp_path / "glob.ome.zarr").read(image.bounds), volume)


def test_stacks_carry_their_voxel_size_and_channels(tmp_path):
    volume = np.stack([_volume(seed=1), _volume(seed=2)], axis=1)  # z, c, y, x
    tifffile.imwrite(tmp_path / "ij.tif", volume, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"spacing": 1.25, "unit": "um", "axes": "ZCYX"})
    convert(tmp_path / "ij.tif", tmp_path / "ij.ome.zarr", channel=1)
    image = open_image(tmp_path / "ij.ome.zarr")
    assert image.spacing == pytest.approx((1.25, 0.4, 0.4))
    np.testing.assert_array_equal(image.read(image.bounds), volume[:, 1])

    tifffile.imwrite(tmp_path / "s.ome.tif", volume[:, 0], ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeZ": 5, "PhysicalSizeY": 2000, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeX": 2, "PhysicalSizeXUnit": "µm"})
    convert(tmp_path / "s.ome.tif", tmp_path / "ome.ome.zarr")
    image = open_image(tmp_path / "ome.ome.zarr")
    assert image.spacing == pytest.approx((5.0, 2.0, 2.0))
    np.testing.assert_array_equal(image.read(image.bounds), volume[:, 0])
    # the user's voxel size wins over the file's
    convert(tmp_path / "s.ome.tif", tmp_path / "over.ome.zarr", voxel_size_um=[1, 0.5, 0.5])
    assert open_image(tmp_path / "over.ome.zarr").spacing == (1.0, 0.5, 0.5)


def test_large_planes_convert_block_by_block(tmp_path, monkeypatch):
    import traice.io.convert as mod

    volume = _volume((40, 300, 200))
    folder = _planes(tmp_path / "planes", volume)
    reads = []
    source_read = mod.TiffPlanes.read
    monkeypatch.setattr(mod.TiffPlanes, "read", lambda self, box: reads.append(box.shape) or source_read(self, box))
    monkeypatch.setattr(mod, "BLOCK_CHUNKS", (1, 1, 1))
    monkeypatch.setattr(mod, "FOOTPRINT", (16, 128, 128))
    convert(folder, tmp_path / "out.ome.zarr", voxel_size_um=[1, 1, 1])
    assert max(np.prod(s) for s in reads) <= 16 * 128 * 128 and len(reads) == 3 * 3 * 2
    image = open_image(tmp_path / "out.ome.zarr")
    np.testing.assert_array_equal(image.read(image.bounds), volume)
    assert len(image.levels) > 1  # a pyramid, written with the blocks


@pytest.mark.parametrize("case, message", [
    ("empty folder", "is not an OME-Zarr image .* holds no TIFF planes"),
    ("glob matches nothing", "matches no TIFF"),
    ("planes differ in shape", "all planes must have one shape and dtype"),
    ("planes differ in dtype", "all planes must have one shape and dtype"),
    ("not a TIFF", "not a readable TIFF"),
    ("truncated", "not a readable TIFF"),
    ("unknown format", "not a format traice converts"),
    ("no voxel size", "set voxel_size_um"),
    ("zero voxel size", "three positive numbers"),
    ("missing channel", "channel 3 does not exist"),
    ("channel not chosen", "choose one"),
])
def test_bad_inputs_fail_in_one_line_before_anything_is_written(tmp_path, case, message):
    source, channel, voxel = tmp_path / "in", None, [1, 1, 1]
    if case == "empty folder":
        source.mkdir()
    elif case == "glob matches nothing":
        source = str(tmp_path / "nothing_*.tif")
    elif case.startswith("planes differ"):
        _planes(source, _volume((2, 20, 30)))
        odd = np.zeros((20, 31), np.uint16) if "shape" in case else np.zeros((20, 30), np.float32)
        tifffile.imwrite(source / "plane_2.tif", odd)
    elif case == "not a TIFF":
        source = tmp_path / "in.tif"
        source.write_bytes(b"not an image at all")
    elif case == "truncated":
        source = tmp_path / "in.tif"
        tifffile.imwrite(source, _volume())
        source.write_bytes(source.read_bytes()[:100])
    elif case == "unknown format":
        source = tmp_path / "in.lif"
        source.write_bytes(b"x")
    elif case in ("no voxel size", "zero voxel size"):
        source = tmp_path / "in.tif"
        tifffile.imwrite(source, _volume())
        voxel = None if case == "no voxel size" else [0, 1, 1]
    else:
        source = tmp_path / "in.tif"
        tifffile.imwrite(source, np.zeros((3, 2, 20, 30), np.uint16), imagej=True, metadata={"axes": "ZCYX"})
        channel = 3 if case == "missing channel" else None
    with pytest.raises(InputError, match=message) as err:
        convert(source, tmp_path / "out.ome.zarr", channel=channel, voxel_size_um=voxel)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.ome.zarr").exists() and not list(tmp_path.glob(".out.ome.zarr*"))


def test_a_plane_truncated_after_its_header_stops_the_conversion_in_one_line(tmp_path):
    folder = _planes(tmp_path / "planes", _volume())
    plane = folder / "plane_3.tif"
    plane.write_bytes(plane.read_bytes()[:-4000])  # the header and first rows stay, the last rows are gone
    with pytest.raises(InputError, match="plane_3.tif: cannot read the plane") as err:
        convert(folder, tmp_path / "out.ome.zarr", voxel_size_um=[1, 1, 1])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.ome.zarr").exists() and not list(tmp_path.glob(".out.ome.zarr*"))


def test_a_killed_conversion_leaves_nothing_and_restarts_cleanly(tmp_path, monkeypatch):
    import traice.io.convert as mod

    volume = _volume((40, 300, 200))
    folder = _planes(tmp_path / "planes", volume)
    monkeypatch.setattr(mod, "BLOCK_CHUNKS", (1, 1, 1))
    calls = {"n": 0}
    real = mod.write_block

    def dies_halfway(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(mod, "write_block", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        convert(folder, tmp_path / "out.ome.zarr", voxel_size_um=[1, 1, 1])
    assert not (tmp_path / "out.ome.zarr").exists()
    monkeypatch.setattr(mod, "write_block", real)
    convert(folder, tmp_path / "out.ome.zarr", voxel_size_um=[1, 1, 1])
    image = open_image(tmp_path / "out.ome.zarr")
    np.testing.assert_array_equal(image.read(image.bounds), volume)


def test_convert_command(tmp_path, capsys):
    folder = _planes(tmp_path / "planes", _volume())
    main(["convert", str(folder), str(tmp_path / "out.ome.zarr"), "--voxel-size", "5", "2", "2"])
    assert "voxel size [5.0, 2.0, 2.0]" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: .*set voxel_size_um"):
        main(["convert", str(folder), str(tmp_path / "again.ome.zarr")])
    assert open_source(folder).shape == (5, 70, 90)
    # `traice run` on TIFF planes checks them the same way before Snakemake starts
    with pytest.raises(SystemExit, match="error: .*set voxel_size_um"):
        main(["run", str(folder), str(tmp_path / "results")])
    assert not (tmp_path / "results").exists()


def test_inspect_reads_a_microscope_file_from_its_headers(tmp_path, capsys):
    """``traice inspect`` on TIFF planes says what ``traice convert`` will read: the shape, the dtype, and the voxel
    size, or why there is none; ``--voxel-size`` is checked as ``convert`` checks it; nothing is written."""
    import json

    folder = _planes(tmp_path / "planes", _volume())
    main(["inspect", str(folder)])
    said = json.loads(capsys.readouterr().out)
    assert said["format"] == "TIFF planes" and said["shape_zyx"] == [5, 70, 90] and said["dtype"] == "uint16"
    assert said["planes"] == 5 and said["spacing_um_zyx"] is None and "set voxel_size_um" in said["voxel_size"]
    main(["inspect", str(folder), "--voxel-size", "5", "2", "2"])
    said = json.loads(capsys.readouterr().out)
    assert said["spacing_um_zyx"] == [5.0, 2.0, 2.0] and "voxel_size" not in said
    assert "4 x 5 x 5 of the grid's" in said["voxel_size_notes"][0] and len(said["voxel_size_notes"]) == 3
    with pytest.raises(SystemExit, match="error: .*voxel_size_um must be three positive numbers"):
        main(["inspect", str(folder), "--voxel-size", "0", "2", "2"])
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, _volume(), imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"spacing": 1.25, "unit": "um", "axes": "ZYX"})
    main(["inspect", str(stack)])
    said = json.loads(capsys.readouterr().out)
    assert said["format"] == "TIFF stack" and said["spacing_um_zyx"] == pytest.approx([1.25, 0.4, 0.4])
    assert said["voxel_size_notes"] == []  # on the networks' grid: nothing to say
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planes", "stack.tif"]


def test_an_ome_zarr_given_a_voxel_size_is_converted_to_it(tmp_path):
    """An OME-Zarr image with a voxel size of the user's (its scale metadata wrong) converts again: the same
    voxels in the same dtype, the user's voxel size; without one it keeps its own."""
    volume = _volume((12, 70, 90))
    convert(_planes(tmp_path / "planes", volume), tmp_path / "first.ome.zarr", voxel_size_um=[1, 1, 1])
    assert open_source(tmp_path / "first.ome.zarr").spacing == (1.0, 1.0, 1.0)
    done = convert(tmp_path / "first.ome.zarr", tmp_path / "again.ome.zarr", voxel_size_um=[2.5, 0.8, 0.8])
    image = open_image(tmp_path / "again.ome.zarr")
    assert done["dtype"] == "uint16" and image.spacing == (2.5, 0.8, 0.8)
    np.testing.assert_array_equal(image.read(image.bounds, dtype=None), volume)


def _ims_text(value) -> np.ndarray:
    """An Imaris attribute: the text as an array of single characters."""
    return np.array(list(str(value)), dtype="S1")


def write_ims(path, channels, spacing, pad=(3, 5, 6)):
    """A minimal Imaris 5.5 file: level 0 of time point 0, data padded past the image as Imaris pads it."""
    import h5py

    z, y, x = channels[0].shape
    with h5py.File(path, "w") as f:
        info = f.create_group("DataSetInfo/Image")
        for key, value in {"X": x, "Y": y, "Z": z, "Unit": "um", "ExtMin0": 10, "ExtMin1": -4, "ExtMin2": 2,
                           "ExtMax0": 10 + x * spacing[2], "ExtMax1": -4 + y * spacing[1],
                           "ExtMax2": 2 + z * spacing[0]}.items():
            info.attrs[key] = _ims_text(value)
        level = f.create_group("DataSet/ResolutionLevel 0/TimePoint 0")
        for c, data in enumerate(channels):
            padded = np.zeros(tuple(n + p for n, p in zip(data.shape, pad)), data.dtype)
            padded[: z, : y, : x] = data
            level.create_dataset(f"Channel {c}/Data", data=padded, chunks=(4, 16, 16), compression="gzip")


def test_imaris_files_give_their_size_voxels_and_channel(tmp_path):
    a, b = _volume(seed=3), _volume(seed=4)
    write_ims(tmp_path / "cells.ims", [a, b], (2.0, 0.5, 0.5))
    done = convert(tmp_path / "cells.ims", tmp_path / "out.ome.zarr", channel=1)
    image = open_image(tmp_path / "out.ome.zarr")
    assert done["shape"] == [5, 70, 90] and image.spacing == pytest.approx((2.0, 0.5, 0.5))
    np.testing.assert_array_equal(image.read(image.bounds), b)  # the padding left out
    with pytest.raises(InputError, match="2 channels; choose one"):
        convert(tmp_path / "cells.ims", tmp_path / "again.ome.zarr")
    (tmp_path / "broken.ims").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(InputError, match="not a readable Imaris"):
        convert(tmp_path / "broken.ims", tmp_path / "again.ome.zarr")
    assert not (tmp_path / "again.ome.zarr").exists()


_TWO_CHANNEL_FILES = {  # name -> voxel size (z, y, x) µm; the files hold a (7, 70, 90) stack of two channels
    "cells_um.czi": (2.0, 0.5, 0.25),  # µm, as pylibCZIrw writes
    "cells_m.czi": (2.0, 0.5, 0.25),   # metres, as ZEN does
    "cells.nd2": (2.0, 0.5, 0.5),      # ND2 has one calibration for y and x
}


def _write_two_channels(path, volumes, spacing):
    if path.suffix == ".nd2":
        write_nd2(path, volumes, spacing, names=["Iba1", "DAPI"])
    else:
        write_czi(path, volumes, spacing, origin=(-12, 30), scale_factor=1e-6 if "_m" in path.stem else 1.0)


@pytest.mark.parametrize("name", sorted(_TWO_CHANNEL_FILES))
def test_czi_and_nd2_files_give_their_voxel_size_and_channel(tmp_path, name, monkeypatch):
    a, b = _volume((7, 70, 90), seed=5), _volume((7, 70, 90), seed=6)
    spacing = _TWO_CHANNEL_FILES[name]
    _write_two_channels(tmp_path / name, [a, b], spacing)
    monkeypatch.setattr("traice.io.convert.BLOCK_CHUNKS", (1, 1, 1))  # several blocks in z, y, x: partial reads
    monkeypatch.setattr("traice.io.convert.FOOTPRINT", (4, 32, 32))
    done = convert(tmp_path / name, tmp_path / "out.ome.zarr", channel=1)
    image = open_image(tmp_path / "out.ome.zarr")
    assert done["shape"] == [7, 70, 90] and image.spacing == pytest.approx(spacing)
    np.testing.assert_array_equal(image.read(image.bounds), b)
    with pytest.raises(InputError, match="2 channels; choose one"):
        convert(tmp_path / name, tmp_path / "again.ome.zarr")
    with pytest.raises(InputError, match="channel 2 does not exist"):
        convert(tmp_path / name, tmp_path / "again.ome.zarr", channel=2)
    assert not (tmp_path / "again.ome.zarr").exists()


def test_czi_files_that_cannot_be_converted_are_refused_in_one_line(tmp_path):
    (tmp_path / "broken.czi").write_bytes(b"ZISRAWFILE" + bytes(20))
    with pytest.raises(InputError, match="broken.czi: not a readable CZI file"):
        convert(tmp_path / "broken.czi", tmp_path / "out.ome.zarr")
    write_czi(tmp_path / "movie.czi", [_volume((2, 20, 30))], (1, 1, 1), times=3)
    with pytest.raises(InputError, match="only a single z-stack .* T = 3"):
        convert(tmp_path / "movie.czi", tmp_path / "out.ome.zarr")
    assert not (tmp_path / "out.ome.zarr").exists()



def test_nd2_files_without_calibration_or_unreadable_are_refused_in_one_line(tmp_path):
    """An uncalibrated file (which ``nd2`` reports as 1 µm voxels) needs the voxel size from the config."""
    a = _volume((3, 20, 30), seed=9)
    write_nd2(tmp_path / "plain.nd2", [a], None)
    with pytest.raises(InputError, match="plain.nd2: the file does not say its voxel size; set voxel_size_um"):
        convert(tmp_path / "plain.nd2", tmp_path / "out.ome.zarr")
    convert(tmp_path / "plain.nd2", tmp_path / "out.ome.zarr", voxel_size_um=(1.0, 0.4, 0.4))
    np.testing.assert_array_equal(open_image(tmp_path / "out.ome.zarr").read(Box.from_shape(a.shape)), a)
    (tmp_path / "broken.nd2").write_bytes(bytes.fromhex("dacebe0a") + bytes(60))
    with pytest.raises(InputError, match="broken.nd2: not a readable ND2 file"):
        convert(tmp_path / "broken.nd2", tmp_path / "again.ome.zarr")
    whole = (tmp_path / "plain.nd2").read_bytes()
    (tmp_path / "cut.nd2").write_bytes(whole[: len(whole) // 2])  # the chunk map is at the end
    with pytest.raises(InputError, match="cut.nd2: not a readable ND2 file"):
        convert(tmp_path / "cut.nd2", tmp_path / "again.ome.zarr")
    assert not (tmp_path / "again.ome.zarr").exists()
