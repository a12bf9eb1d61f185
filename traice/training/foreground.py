"""The one-pass network's foreground of a training volume: the second input of the ownership network.

The prompted network that ranks ownership (``segment.method: prompted-growth``,
:mod:`traice.stages.segment.ranked`) sees the image and the one-pass network's
foreground probability, as the workflow stores it, so that it learns whose a
foreground voxel is rather than whether it is microglia. Training therefore
needs the foreground of every training volume: the one-pass network run over
the whole volume in the workflow's sliding windows (the volume's image is the
model input already, normalised with the field's statistics as inference does),
rounded to uint8 as the stored maps are (:func:`traice.core.maps.encode`), and
cached beside the rendered volumes, keyed by the volume and the weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from traice.core.maps import CHANNELS, encode
from traice.stages.detect.params import DetectParams
from traice.training.data import Volume

FOREGROUND_CHANNEL = CHANNELS.index("foreground")


def weights_digest(path: str | Path) -> str:
    """The first 12 hex digits of the SHA-256 of a weights file: foreground maps of other weights are other maps."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def attach_foreground(volumes: Sequence[Volume], weights: str | Path, cache: str | Path, progress: bool = False) -> None:
    """Set ``volume.foreground`` (Z, Y, X) uint8 (``round(255 p)``) of each of ``volumes`` from the one-pass
    network ``weights``, read from ``cache`` or computed and written there (atomically) first."""
    from traice.nn.checkpoints import load_one_pass
    from traice.nn.inferer import sliding_window_maps

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    digest = weights_digest(weights)
    model = None
    for volume in volumes:
        path = cache / f"{volume.name}.foreground-{digest}.npy"
        if path.exists():
            volume.foreground = np.load(path)
            continue
        if model is None:
            model = load_one_pass(weights, "--foreground")
        maps = sliding_window_maps(model, volume.image.astype(np.float32), model.window, DetectParams.overlap,
                                   DetectParams.batch_size, "auto", progress=progress)  # the workflow's default windows
        foreground = encode(maps)[0][FOREGROUND_CHANNEL]  # stored as the detect jobs store it
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, foreground)
        tmp.replace(path)
        volume.foreground = foreground
