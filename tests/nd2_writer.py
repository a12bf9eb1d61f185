"""Small Nikon ``.nd2`` files for tests: no library on PyPI writes one, so the tests write their own.

The layout is that of NIS-Elements' version 3 files as the ``nd2`` reader
parses them: a file-signature chunk; metadata chunks in the binary "CLX lite"
variant (each item a type byte, the name's length in UTF-16 code units, the
name, then the value; a nested level gives its item count and byte length and
is followed by one 8-byte slot per item); one uncompressed frame chunk per z
plane, holding every channel interleaved per pixel 4096 bytes after the
chunk's start; and the chunk map at the end, whose last 40 bytes point to it.
Each chunk starts with the magic number, its name area's and its data's
lengths (``<IIQ``) and sits on a 4096-byte boundary.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np

MAGIC = 0x0ABECEDA
FILE_SIGNATURE = b"ND2 FILE SIGNATURE CHUNK NAME01!"
FILEMAP_SIGNATURE = b"ND2 FILEMAP SIGNATURE NAME 0001!"
CHUNKMAP_SIGNATURE = b"ND2 CHUNK MAP SIGNATURE 0000001!"
ALIGN = 4096
FRAME_NAME_AREA = ALIGN - 16 - 8  # frame data start 4096 bytes into the chunk: header, name area, a timestamp

LEVEL, BOOL, INT32, UINT32, DOUBLE, STRING = 11, 1, 2, 3, 6, 8


def clx_lite(items: dict) -> bytes:
    """A dict of bools, ints, floats, strings and nested dicts in the CLX lite encoding."""
    return b"".join(_item(name, value) for name, value in items.items())


def _item(name: str, value) -> bytes:
    key = (name + "\0").encode("utf-16-le")
    head = lambda code: struct.pack("<BB", code, len(key) // 2) + key  # noqa: E731
    if isinstance(value, dict):
        body = clx_lite(value)
        size = len(head(LEVEL)) + 12 + len(body)  # from the item's first byte to its last nested item's end
        return head(LEVEL) + struct.pack("<IQ", len(value), size) + body + bytes(8 * len(value))
    if isinstance(value, bool):
        return head(BOOL) + struct.pack("<B", value)
    if isinstance(value, int):
        return head(UINT32) + struct.pack("<I", value) if value >= 0 else head(INT32) + struct.pack("<i", value)
    if isinstance(value, float):
        return head(DOUBLE) + struct.pack("<d", value)
    return head(STRING) + (str(value) + "\0").encode("utf-16-le")


def write_nd2(path: str | Path, channels: Sequence[np.ndarray], voxel_um: tuple[float, float, float] | None,
              names: Sequence[str] | None = None) -> None:
    """A z-stack of ``channels`` (each (Z, Y, X), one dtype: uint8 or uint16), ``voxel_um`` (z, y, x) µm or
    None for an uncalibrated file, as a version 3 ``.nd2``."""
    if voxel_um is not None and voxel_um[1] != voxel_um[2]:
        raise ValueError(f"an ND2 file has one calibration for y and x, not {voxel_um[1]} and {voxel_um[2]}")
    stack = np.stack(channels, axis=-1)  # (Z, Y, X, C): channels interleaved per pixel
    nz, ny, nx, nc = stack.shape
    bits = stack.dtype.itemsize * 8
    z_um, xy_um = (voxel_um[0], voxel_um[2]) if voxel_um else (0.0, 0.0)
    attributes = {"SLxImageAttributes": {
        "uiWidth": nx, "uiWidthBytes": nx * nc * stack.dtype.itemsize, "uiHeight": ny, "uiComp": nc,
        "uiBpcInMemory": bits, "uiBpcSignificant": bits, "uiSequenceCount": nz, "uiTileWidth": nx,
        "uiTileHeight": ny, "eCompression": 2, "uiVirtualComponents": nc}}
    planes = {f"a{c}": {"uiCompCount": 1, "uiSampleIndex": c, "sDescription": (names or [f"ch{c}"] * nc)[c],
                        "uiColor": 0xFFFFFF, "pFluorescentProbe": {"m_sName": f"probe {c}"}} for c in range(nc)}
    picture = {"SLxPictureMetadata": {
        "dCalibration": float(xy_um), "bCalibrated": voxel_um is not None, "dObjectiveMag": 20.0,
        "sPicturePlanes": {"uiCount": nc, "uiCompCount": nc, "sPlaneNew": planes}}}
    experiment = {"SLxExperiment": {"eType": 4, "uLoopPars": {
        "uiCount": nz, "dZStep": float(z_um), "dZLow": 0.0, "dZHigh": float(z_um * (nz - 1)), "dZHome": 0.0,
        "bZInverted": False, "iType": 0}}}
    chunks = [(b"ImageAttributesLV!", clx_lite(attributes), None),
              (b"ImageMetadataSeqLV|0!", clx_lite(picture), None),
              (b"ImageMetadataLV!", clx_lite(experiment), None)]
    chunks += [(f"ImageDataSeq|{z}!".encode(), struct.pack("<d", 100.0 * z) + stack[z].tobytes(), FRAME_NAME_AREA)
               for z in range(nz)]
    with open(path, "wb") as f:
        f.write(_chunk(FILE_SIGNATURE, b"Ver3.0".ljust(64, b"\0")))
        where = {}
        for name, data, area in chunks:
            f.write(bytes(-f.tell() % ALIGN))
            where[name] = (f.tell(), len(data))
            f.write(_chunk(name, data, area))
        f.write(bytes(-f.tell() % ALIGN))
        filemap_at = f.tell()
        table = b"".join(name + struct.pack("<QQ", at, size) for name, (at, size) in where.items())
        f.write(_chunk(FILEMAP_SIGNATURE, table + CHUNKMAP_SIGNATURE + struct.pack("<Q", filemap_at)))


def _chunk(name: bytes, data: bytes, name_area: int | None = None) -> bytes:
    area = len(name) if name_area is None else name_area
    return struct.pack("<IIQ", MAGIC, area, len(data)) + name.ljust(area, b"\0") + data
