"""Microscope files in: TIFF planes or stacks, Imaris, CZI and ND2 files to a chunked, multiscale NGFF OME-Zarr.

Sources (:func:`open_source`), each read through ``tifffile`` only where a
block needs it (its zarr view decodes just the strips or tiles a region
touches), so memory follows the block, never the number of planes:

- a folder of 2D TIFF planes, or a glob matching them, one plane per z in
  natural order (``plane_2`` before ``plane_10``);
- a multi-page TIFF, ImageJ hyperstack or OME-TIFF holding a (c,)z,y,x stack;
- an Imaris ``.ims`` file (HDF5, read with ``h5py``: level 0, time point 0, one channel);
- a Zeiss ``.czi`` file (read with ``pylibCZIrw``, Zeiss's libCZI: one scene, time point 0, one channel);
- a Nikon ``.nd2`` file (read with ``nd2``: one z-stack, one channel);
- an OME-Zarr image, level 0 and one channel, when it is to take a voxel size of the user's instead of its own.

The voxel size comes from the file (OME ``PhysicalSize*``; ImageJ ``spacing``
and the resolution tags; Imaris extents; CZI ``Scaling``; ND2 calibration and z step) or from ``voxel_size_um``, which wins when given; a
file with neither stops with one line naming it. :func:`convert` checks the
whole source before it writes anything, writes into a temporary folder beside
the output and renames it into place when complete: a killed conversion leaves
no half-written image and restarts cleanly.
"""

from __future__ import annotations

import glob
import re
from xml.etree import ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
import zarr

from traice.core.errors import InputError
from traice.core.geometry import Box, grid
from traice.io.multiscale import create_multiscale, write_block
from traice.io.ome import OmeImage, is_ome_zarr, open_image
from traice.io.tables import atomic_dir

TIFF_SUFFIXES = (".tif", ".tiff")
FOOTPRINT = (32, 256, 256)      # label-sized chunks of the written image, level-0 voxels
BLOCK_CHUNKS = (1, 4, 4)        # chunks written per block: one block is 32 x 1024 x 1024 voxels at most
UM_PER = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
          "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3}


def natural_key(path: Path) -> list:
    """Sort key that puts ``plane_2`` before ``plane_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


@dataclass
class TiffPlanes:
    """A z-stack stored as one 2D TIFF per plane."""

    files: list[Path]
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float, float, float] | None

    @classmethod
    def open(cls, files: Sequence[Path], where: str) -> "TiffPlanes":
        files = sorted(files, key=natural_key)
        if not files:
            raise InputError(f"{where} is not an OME-Zarr image (no zarr metadata) and holds no TIFF planes (.tif, .tiff)")
        first = _plane_header(files[0])
        for f in files[1:]:
            shape, dtype = _plane_header(f)
            if (shape, dtype) != first:
                raise InputError(f"{f}: plane is {shape} {dtype}, but {files[0].name} is {first[0]} {first[1]}; "
                                 "all planes must have one shape and dtype")
        yx = _tiff_yx_um(files[0])
        return cls(files, (len(files), *first[0]), first[1], None if yx is None else (None, *yx))  # type: ignore[arg-type]

    def read(self, box: Box) -> np.ndarray:
        out = np.empty(box.shape, self.dtype)
        (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
        for i, z in enumerate(range(z0, z1)):
            try:
                with tifffile.TiffFile(self.files[z]) as tif:
                    out[i] = zarr.open(tif.aszarr(), mode="r")[y0:y1, x0:x1]
            except (ValueError, OSError, KeyError, RuntimeError, tifffile.TiffFileError) as err:
                raise InputError(f"{self.files[z]}: cannot read the plane: it is truncated or corrupt "
                                 f"({type(err).__name__}: {err})".replace("\n", " ")) from None
        return out


@dataclass
class TiffStack:
    """A (c,)z,y,x stack in one multi-page TIFF, ImageJ hyperstack or OME-TIFF."""

    path: Path
    axes: str
    full_shape: tuple[int, ...]
    channel: int | None
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float | None, float | None, float | None] | None

    @classmethod
    def open(cls, path: Path, channel: int | None) -> "TiffStack":
        with _tiff(path) as tif:
            series = tif.series[0]
            axes, full = series.axes.upper(), tuple(series.shape)
            spacing = _ome_spacing(tif) if tif.is_ome else _imagej_spacing(tif)
            dtype = series.dtype
        # the pages of a plain multi-page TIFF (axis I, image sequence, or Q, unknown) are its z planes
        if "Z" not in axes:
            for page_axis in "IQ":
                if page_axis in axes:
                    axes = axes.replace(page_axis, "Z", 1)
                    break
        # samples per pixel (RGB, planar) are the channels when there is no channel axis
        if "C" not in axes and "S" in axes:
            axes = axes.replace("S", "C", 1)
        # singleton axes other than z, y, x (time, sample) are dropped; a channel axis is chosen
        extra = [a for a, n in zip(axes, full) if a not in "ZYXC" and n > 1]
        if extra:
            raise InputError(f"{path}: axes {axes} {full}: only a single z-stack (with channels) is supported, "
                             f"not {', '.join(extra)} > 1")
        if "Y" not in axes or "X" not in axes:
            raise InputError(f"{path}: axes {axes} hold no y, x plane")
        channel = _stack_channel(path, [], full[axes.index("C")] if "C" in axes else 1, channel)
        z = full[axes.index("Z")] if "Z" in axes else 1
        shape = (z, full[axes.index("Y")], full[axes.index("X")])
        return cls(path, axes, full, channel, shape, dtype, spacing)

    def read(self, box: Box) -> np.ndarray:
        index = []
        for axis, n in zip(self.axes, self.full_shape):
            if axis in "ZYX":
                k = "ZYX".index(axis)
                index.append(slice(box.start[k], box.stop[k]))
            elif axis == "C":
                index.append(self.channel or 0)
            else:
                index.append(0)
        with tifffile.TiffFile(self.path) as tif:
            data = zarr.open(tif.series[0].aszarr(), mode="r")[tuple(index)]
        order = [a for a in self.axes if a in "ZYX"]
        data = np.transpose(data, [order.index(a) for a in "ZYX" if a in order])
        return data.reshape(box.shape)


@dataclass
class ImarisFile:
    """An Imaris ``.ims`` file (HDF5): resolution level 0, time point 0, one channel.

    ``DataSet/ResolutionLevel 0/TimePoint 0/Channel {c}/Data`` holds (z, y, x),
    padded past the image to whole chunks; the true size is ``DataSetInfo/Image``'s
    ``X``, ``Y``, ``Z`` and the voxel size its extents (``ExtMax - ExtMin``) over it.
    """

    path: Path
    dataset: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float, float, float] | None

    @classmethod
    def open(cls, path: Path, channel: int | None) -> "ImarisFile":
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"{path}: not a readable Imaris (HDF5) file ({err})") from None
        with f:
            try:
                level = f["DataSet/ResolutionLevel 0/TimePoint 0"]
                info = f["DataSetInfo/Image"].attrs
            except KeyError:
                raise InputError(f"{path}: no DataSet/ResolutionLevel 0/TimePoint 0 or DataSetInfo/Image: "
                                 "not an Imaris 5.5 file") from None
            channels = sorted(int(k.split()[-1]) for k in level if k.startswith("Channel "))
            if not channels:
                raise InputError(f"{path}: no channel in resolution level 0")
            if len(channels) > 1 and channel is None:
                raise InputError(f"{path}: the image has {len(channels)} channels; choose one (channel: N, or --channel N)")
            c = 0 if channel is None else channel
            if c not in channels:
                raise InputError(f"{path}: channel {c} does not exist (the image has {len(channels)})")
            dataset = f"DataSet/ResolutionLevel 0/TimePoint 0/Channel {c}/Data"
            data = f[dataset]
            try:
                size = tuple(int(_ims_attr(info, k)) for k in ("Z", "Y", "X"))
            except (KeyError, ValueError):
                raise InputError(f"{path}: DataSetInfo/Image has no X, Y, Z size") from None
            if data.ndim != 3 or any(n > m for n, m in zip(size, data.shape)):
                raise InputError(f"{path}: the data {data.shape} do not hold the image size {size} (z, y, x)")
            try:
                ext = [(float(_ims_attr(info, f"ExtMin{i}")), float(_ims_attr(info, f"ExtMax{i}"))) for i in (2, 1, 0)]
                spacing = tuple((hi - lo) / n for (lo, hi), n in zip(ext, size))
            except (KeyError, ValueError):
                spacing = None
            return cls(path, dataset, size, data.dtype, spacing)  # type: ignore[arg-type]

    def read(self, box: Box) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.dataset][box.slices]


@dataclass
class CziFile:
    """A Zeiss ``.czi`` file, read through ``pylibCZIrw`` (Zeiss's libCZI): one scene, time point 0, one channel.

    Each z plane of a box is read as one region of interest, so memory follows the box. The voxel size is
    ``Metadata/Scaling/Items/Distance``: in metres as ZEN writes it, or in µm as ``pylibCZIrw``'s writer
    does; a value below 1e-3 can only be metres (no voxel is under a nanometre, none over a millimetre).
    """

    path: Path
    channel: int
    origin: tuple[int, int, int]     # (z, y, x) of the bounding box's first voxel in the file's coordinates
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float | None, float | None, float | None] | None

    PIXEL_TYPES = {"Gray8": np.dtype("uint8"), "Gray16": np.dtype("uint16"), "Gray32Float": np.dtype("float32")}

    @classmethod
    def open(cls, path: Path, channel: int | None) -> "CziFile":
        from pylibCZIrw import czi as pyczi

        try:
            with pyczi.open_czi(str(path)) as doc:
                bounds = doc.total_bounding_box
                scenes = doc.scenes_bounding_rectangle
                pixel_types = doc.pixel_types
                metadata = doc.metadata
        except (RuntimeError, OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable CZI file ({err})".replace("\n", " ")) from None
        extra = [f"{a} = {hi - lo}" for a, (lo, hi) in bounds.items() if a not in "ZCYX" and hi - lo > 1]
        extra += [f"{len(scenes)} scenes"] if len(scenes) > 1 else []
        c0, c1 = bounds.get("C", (0, 1))
        c = _stack_channel(path, extra, c1 - c0, channel)
        pixel_type = pixel_types.get(c0 + c)
        if pixel_type not in cls.PIXEL_TYPES:
            raise InputError(f"{path}: channel {c} is {pixel_type}; only gray 8-bit, 16-bit and float images are read")
        z0, z1 = bounds.get("Z", (0, 1))
        (y0, y1), (x0, x1) = bounds["Y"], bounds["X"]
        return cls(path, c, (z0, y0, x0), (z1 - z0, y1 - y0, x1 - x0), cls.PIXEL_TYPES[pixel_type],
                   _czi_spacing(metadata))

    def read(self, box: Box) -> np.ndarray:
        from pylibCZIrw import czi as pyczi

        out = np.empty(box.shape, self.dtype)
        z0, y0, x0 = (s + o for s, o in zip(box.start, self.origin))
        roi = (x0, y0, box.shape[2], box.shape[1])
        with pyczi.open_czi(str(self.path)) as doc:
            for i in range(box.shape[0]):
                out[i] = doc.read(roi=roi, plane={"C": self.channel, "Z": z0 + i, "T": 0})[..., 0]
        return out


@dataclass
class Nd2File:
    """A Nikon ``.nd2`` file, read through ``nd2``: a z-stack (or one plane), one channel.

    Each frame of the file is one z plane holding every channel; a box reads only its planes. The voxel size is
    the file's calibration (y, x) and z step, on the axes the file marks calibrated (``nd2`` reports an
    uncalibrated axis as 1 µm, which is not taken).
    """

    path: Path
    channel: int
    n_channels: int
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float | None, float | None, float | None] | None

    @classmethod
    def open(cls, path: Path, channel: int | None) -> "Nd2File":
        import nd2

        try:
            with nd2.ND2File(path) as f:
                sizes, dtype = dict(f.sizes), np.dtype(f.dtype)
                volume = f.metadata.channels[0].volume if f.metadata.channels else None
        except Exception as err:  # nd2 raises what its parsers meet: the file is unreadable either way
            raise InputError(f"{path}: not a readable ND2 file ({type(err).__name__}: {err})".replace("\n", " ")) from None
        n_channels = sizes.get("C", 1)
        c = _stack_channel(path, [f"{axis} = {n}" for axis, n in sizes.items() if axis not in "ZCYX"], n_channels,
                           channel)
        spacing = None
        if volume is not None:
            (x, y, z), known = volume.axesCalibration, volume.axesCalibrated
            spacing = tuple(float(v) if ok else None for v, ok in zip((z, y, x), known[::-1]))
        return cls(path, c, n_channels, (sizes.get("Z", 1), sizes["Y"], sizes["X"]), dtype, spacing)

    def read(self, box: Box) -> np.ndarray:
        import nd2

        out = np.empty(box.shape, self.dtype)
        (z0, y0, x0), (_, y1, x1) = box.start, box.stop
        with nd2.ND2File(self.path) as f:
            for i in range(box.shape[0]):
                frame = f.read_frame(z0 + i).reshape(self.n_channels, *self.shape[1:])
                out[i] = frame[self.channel, y0:y1, x0:x1]
        return out


def _stack_channel(path: Path, extra: list[str], n_channels: int, channel: int | None) -> int:
    """The channel to read from a file holding one z-stack of ``n_channels``; InputError naming the file when it
    holds more than one stack (``extra``: its other axes, as ``"T = 3"``) or the channel is missing or not
    chosen among several."""
    if extra:
        raise InputError(f"{path}: only a single z-stack (with channels) is supported, not {', '.join(extra)}")
    if n_channels > 1 and channel is None:
        raise InputError(f"{path}: the image has {n_channels} channels; choose one (channel: N, or --channel N)")
    c = 0 if channel is None else channel
    if not 0 <= c < n_channels:
        raise InputError(f"{path}: channel {c} does not exist (the image has {n_channels})")
    return c


def _czi_spacing(metadata: dict) -> tuple[float | None, float | None, float | None] | None:
    """(z, y, x) voxel size in µm from a CZI's ``Scaling`` (None where an axis is not given)."""
    try:
        items = metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    except (KeyError, TypeError):
        return None
    items = items if isinstance(items, list) else [items]
    values = {}
    for item in items:
        try:
            value = float(item["Value"])
        except (KeyError, TypeError, ValueError):
            continue
        values[item.get("@Id")] = value * 1e6 if 0 < value < 1e-3 else value
    if not values:
        return None
    return tuple(values.get(axis) for axis in "ZYX")  # type: ignore[return-value]


def _ims_attr(attrs, key: str) -> str:
    """An Imaris attribute: stored as an array of single characters."""
    value = attrs[key]
    if isinstance(value, np.ndarray):
        return b"".join(np.asarray(value).ravel().tolist()).decode() if value.dtype.kind == "S" else str(value.ravel()[0])
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class OmeZarrFile:
    """An OME-Zarr image converted again, so that it takes the voxel size the user gives (``voxel_size_um``, for an
    image whose scale metadata are wrong): level 0, one channel, in its own dtype."""

    image: OmeImage
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing: tuple[float, float, float]

    @classmethod
    def open(cls, path: Path, channel: int | None) -> "OmeZarrFile":
        image = open_image(path, channel)
        return cls(image, image.shape, image.array(0).dtype, image.spacing)

    @property
    def channel(self) -> int | None:
        return self.image.channel

    def read(self, box: Box) -> np.ndarray:
        return self.image.read(box, dtype=None)


Source = TiffPlanes | TiffStack | ImarisFile | CziFile | Nd2File | OmeZarrFile
"""What :func:`open_source` gives: ``shape``, ``dtype``, ``spacing`` (z, y, x µm, None where unknown) and ``read(box)``."""


def is_pattern(path: str | Path) -> bool:
    return any(c in str(path) for c in "*?[")


def source_paths(path: str | Path) -> list[str]:
    """The files an image at ``path`` is read from: the TIFF planes a folder holds or a glob matches, in natural
    order, or the file (or OME-Zarr folder) itself; nothing when there is none (:func:`open_source` says why)."""
    if is_pattern(path):
        files = [Path(p) for p in glob.glob(str(path))]
    elif is_ome_zarr(path):
        return [str(path)]
    elif Path(path).is_dir():
        files = list(Path(path).iterdir())
    else:
        return [str(path)] if Path(path).is_file() else []
    return [str(f) for f in sorted(files, key=natural_key) if f.suffix.lower() in TIFF_SUFFIXES and f.is_file()]


def open_source(path: str | Path, channel: int | None = None) -> Source:
    """The image at ``path``: a folder or glob of TIFF planes, one TIFF stack file, an Imaris, a CZI or an ND2
    file, or an OME-Zarr image (InputError otherwise)."""
    if is_pattern(path):
        matches = [Path(p) for p in source_paths(path)]
        if not matches:
            raise InputError(f"{path}: the pattern matches no TIFF file")
        return TiffPlanes.open(matches, str(path))
    path = Path(path)
    if is_ome_zarr(path):
        return OmeZarrFile.open(path, channel)
    if path.is_dir():
        return TiffPlanes.open([Path(p) for p in source_paths(path)], str(path))
    if not path.exists():
        raise InputError(f"input image not found: {path}")
    if path.suffix.lower() == ".ims":
        return ImarisFile.open(path, channel)
    if path.suffix.lower() == ".czi":
        return CziFile.open(path, channel)
    if path.suffix.lower() == ".nd2":
        return Nd2File.open(path, channel)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"{path}: not a format traice converts (a TIFF stack, a folder or glob of TIFF planes, "
                         "an Imaris .ims, a Zeiss .czi, a Nikon .nd2)")
    with _tiff(path) as tif:
        is_plane = len(tif.pages) == 1 and tif.series[0].ndim == 2
    return TiffPlanes.open([path], str(path)) if is_plane else TiffStack.open(path, channel)


def voxel_size(source: Source, where: str, override: Sequence[float] | None) -> tuple[float, float, float]:
    """The source's (z, y, x) voxel size in µm: ``override`` when given, else the file's; InputError when unknown."""
    if override is not None:
        size = tuple(float(v) for v in override)
        if len(size) != 3 or not all(np.isfinite(v) and v > 0 for v in size):
            raise InputError(f"{where}: voxel_size_um must be three positive numbers (z, y, x) in µm, got {list(override)}")
        return size  # type: ignore[return-value]
    known = source.spacing
    if known is None or any(v is None for v in known):
        raise InputError(f"{where}: the file does not say its voxel size; set voxel_size_um: [z, y, x] (µm) "
                         "for this sample (or --voxel-size Z Y X)")
    if any(not v > 0 for v in known):  # type: ignore[operator]
        raise InputError(f"{where}: the file's voxel size {list(known)} is not positive; set voxel_size_um: [z, y, x]")
    return tuple(float(v) for v in known)  # type: ignore[return-value]


FORMATS = {TiffPlanes: "TIFF planes", TiffStack: "TIFF stack", ImarisFile: "Imaris .ims", CziFile: "Zeiss .czi",
           Nd2File: "Nikon .nd2", OmeZarrFile: "OME-Zarr"}
"""How :func:`describe` names each source kind."""


def describe(path: str | Path, channel: int | None = None, voxel_size_um: Sequence[float] | None = None) -> dict:
    """What :func:`convert` will read from the image at ``path``, from its headers alone: its format, shape
    (z, y, x) and dtype, the channel read, and its voxel size (µm, z, y, x; ``voxel_size_um`` wins), or None with
    the reason where neither the file nor ``voxel_size_um`` gives one. InputError for what :func:`convert` refuses
    otherwise (an unreadable file, a missing channel, a bad ``voxel_size_um``)."""
    source = open_source(path, channel)
    _check_not_empty(source, path)
    try:
        spacing, why = list(voxel_size(source, str(path), voxel_size_um)), None
    except InputError as err:
        if voxel_size_um is not None:
            raise
        spacing, why = None, str(err)
    described = {"path": str(path), "format": FORMATS[type(source)], "shape_zyx": list(source.shape),
                 "dtype": str(source.dtype), "channel": getattr(source, "channel", None), "spacing_um_zyx": spacing}
    if isinstance(source, TiffPlanes):
        described["planes"] = len(source.files)
    if why:
        described["voxel_size"] = why
    return described


@dataclass(frozen=True)
class SourceImage:
    """What converting a file will give, known from its headers alone: shape and voxel size (z, y, x)."""

    path: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def bounds(self) -> Box:
        return Box.from_shape(self.shape)

    @classmethod
    def check(cls, path: str | Path, channel: int | None = None,
              voxel_size_um: Sequence[float] | None = None) -> "SourceImage":
        """Every check :func:`convert` makes before writing (InputError naming the file and the problem)."""
        source, spacing = _checked_source(path, channel, voxel_size_um)
        return cls(str(path), source.shape, spacing)


def _checked_source(path: str | Path, channel: int | None, voxel_size_um: Sequence[float] | None):
    """The opened source of ``path`` and its voxel size, every check made (headers only)."""
    source = open_source(path, channel)
    spacing = voxel_size(source, str(path), voxel_size_um)
    _check_not_empty(source, path)
    return source, spacing


def _check_not_empty(source: Source, path: str | Path) -> None:
    if 0 in source.shape:
        raise InputError(f"{path}: the image is empty ({source.shape})")


def convert(path: str | Path, out: str | Path, channel: int | None = None,
            voxel_size_um: Sequence[float] | None = None) -> dict:
    """Convert the image at ``path`` into an NGFF 0.5 multiscale OME-Zarr at ``out``, one block at a time.

    Every check runs before anything is written (those of :meth:`SourceImage.check`).
    Returns what was written: shape, dtype, voxel size.
    """
    source, spacing = _checked_source(path, channel, voxel_size_um)  # headers read once
    block = tuple(c * n for c, n in zip(FOOTPRINT, BLOCK_CHUNKS))
    out = Path(out)
    with atomic_dir(out) as tmp:
        create_multiscale(tmp, source.shape, spacing, source.dtype, FOOTPRINT, name=out.name.removesuffix(".zarr"))
        for box in grid(Box.from_shape(source.shape), block):
            try:
                data = source.read(box)
            except (ValueError, OSError, KeyError, RuntimeError, tifffile.TiffFileError) as err:
                raise InputError(f"{path}: cannot read voxels {box.start} to {box.stop}: the file is truncated "
                                 f"or corrupt ({type(err).__name__}: {err})".replace("\n", " ")) from None
            if data.shape != box.shape:
                raise InputError(f"{path}: reading {box} gave {data.shape}: the file is truncated or inconsistent")
            write_block(tmp, box, data)
    return {"shape": list(source.shape), "dtype": str(source.dtype), "voxel_size_um": list(spacing)}


# ------------------------------------------------------------------ metadata


def _tiff(path: Path) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable TIFF ({err})") from None


def _plane_header(path: Path) -> tuple[tuple[int, int], np.dtype]:
    with _tiff(path) as tif:
        series = tif.series[0]
        if series.ndim != 2:
            raise InputError(f"{path}: a plane of a folder must be 2D, this one is {series.axes} {series.shape}")
        return tuple(series.shape), series.dtype  # type: ignore[return-value]


def _unit_um(unit: str | None) -> float | None:
    """µm per ``unit`` (None: not a length unit traice knows)."""
    text = str(unit).strip().replace("\\u00B5", "µ").replace("\u03bc", "µ").lower()
    return UM_PER.get(text)


def _tiff_yx_um(path: Path) -> tuple[float, float] | None:
    """(y, x) pixel size in µm from the resolution tags, when their unit is µm-like (ImageJ's ``unit``) or cm."""
    with _tiff(path) as tif:
        return _resolution_yx(tif)


def _resolution_yx(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    tags = tif.pages[0].tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    ij_unit = (tif.imagej_metadata or {}).get("unit")
    if ij_unit is not None:
        scale = _unit_um(ij_unit)
    elif unit == 3:  # centimetre
        scale = 1e4
    else:
        return None  # inches or no unit: a print resolution, not a voxel size
    if scale is None:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not xn or not yn:
        return None
    return scale * yd / yn, scale * xd / xn


def _imagej_spacing(tif: tifffile.TiffFile):
    yx = _resolution_yx(tif)
    meta = tif.imagej_metadata or {}
    z = meta.get("spacing")
    if z is not None:
        z = float(z) * (_unit_um(meta.get("unit")) or 1.0)
    if yx is None and z is None:
        return None
    return (z, *(yx or (None, None)))


def _ome_spacing(tif: tifffile.TiffFile):
    try:
        root = ElementTree.fromstring(tif.ome_metadata or "")
    except ElementTree.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    attrs = pixels.attrib
    out = []
    for axis in "ZYX":
        value = attrs.get(f"PhysicalSize{axis}")
        scale = _unit_um(attrs.get(f"PhysicalSize{axis}Unit", "µm"))
        out.append(None if value is None or scale is None else float(value) * scale)
    return tuple(out)
