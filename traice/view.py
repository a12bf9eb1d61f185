"""One sample's result in napari: the image, the labels, the somas and (optionally) the SWC skeletons.

Every layer is placed in µm (z, y, x), so all of them line up whatever the
voxel size: the image and labels as multiscale pyramids with their level-0
voxel size as scale, read lazily from their zarr arrays; the somas as points
at their µm centroids; the skeletons as one vectors layer (one vector per SWC
edge, child to parent). The image is found through the label image's NGFF
``image-label`` ``source`` link, the channel from the run's plan.

``add_result`` works on any napari viewer model (headless in the tests);
``traice view`` opens a window (``pip install 'traice[view]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from traice.core.errors import InputError
from traice.io.ome import OmeImage, open_image
from traice.io.swc import SwcError, read_swc
from traice.io.tables import read_json

SOMA_POINT_UM = 6.0  # drawn size of a soma point


def result_image(result_dir: str | Path) -> OmeImage:
    """The image a result was made from: the label image's ``source`` link, read with the run's channel."""
    labels = Path(result_dir) / "segmentation.ome.zarr"
    if not labels.is_dir():
        raise InputError(f"{result_dir}: not a traice result (no segmentation.ome.zarr)")
    meta = dict(zarr.open_group(str(labels), mode="r").attrs).get("ome", {}).get("image-label", {})
    source = meta.get("source", {}).get("image")
    if source is None:
        raise InputError(f"{labels}: no image-label source link (written by an older traice); run it again")
    plan = Path(result_dir) / "work" / "plan" / "plan.json"
    channel = read_json(plan).get("channel") if plan.is_file() else None
    return open_image((labels / source).resolve(), channel)


def _levels(image: OmeImage) -> list:
    """The image's levels as lazy (z, y, x) arrays, the run's channel picked from a multichannel image."""
    import dask.array as da

    out = []
    for level in range(len(image.levels)):
        array = da.from_zarr(image.array(level))
        index = tuple(slice(None) if ax in "zyx" else (image.channel or 0) for ax in image.axes)
        out.append(array[index])
    return out


def skeleton_vectors(swc_dir: str | Path) -> np.ndarray:
    """Every SWC edge of a result's skeletons as a napari vector (E, 2, 3): child position and the step to its
    parent, in µm (z, y, x)."""
    parts = []
    for path in sorted(Path(swc_dir).glob("*.swc")):
        try:
            points, _, parents = read_swc(path)
        except SwcError:
            continue  # a cell without a skeleton beyond its soma
        child = parents >= 0
        parts.append(np.stack([points[child], points[parents[child]] - points[child]], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, 2, 3))


def add_result(viewer, result_dir: str | Path, swc: bool = False) -> list:
    """Add a sample's image, labels (visible), somas and, with ``swc``, skeletons to a napari ``viewer``
    (a ``napari.Viewer`` or a headless ``napari.components.ViewerModel``); returns the layers added."""
    result_dir = Path(result_dir)
    image = result_image(result_dir)
    name = result_dir.name
    labels = zarr.open_group(str(result_dir / "segmentation.ome.zarr"), mode="r")
    n_levels = len([k for k in labels.array_keys() if k.isdigit()])
    layers = [
        viewer.add_image(_levels(image), multiscale=True, scale=image.spacing, name=f"{name} image",
                         blending="additive", colormap="gray"),
        viewer.add_labels([labels[str(k)] for k in range(n_levels)], multiscale=True, scale=image.spacing,
                          name=f"{name} cells", opacity=0.5, visible=True),
    ]
    cells = pd.read_parquet(result_dir / "cells.parquet")
    morphology = result_dir / "morphology.parquet"
    if morphology.is_file():
        status = pd.read_parquet(morphology, columns=["cell_id", "status"])
        cells = cells.merge(status, on="cell_id", how="left")
    features = cells[[c for c in ("cell_id", "score", "status") if c in cells]].reset_index(drop=True)
    layers.append(viewer.add_points(cells[["z_um", "y_um", "x_um"]].to_numpy(float).reshape(-1, 3), features=features,
                                    size=SOMA_POINT_UM, face_color="yellow", border_color="black", name=f"{name} somas"))
    if swc:
        layers.append(viewer.add_vectors(skeleton_vectors(result_dir / "swc"), edge_width=0.4, edge_color="cyan",
                                         vector_style="line", name=f"{name} skeletons"))
    return layers


def view(result_dir: str | Path, swc: bool = False) -> None:
    """Open napari on a result (blocks until the window closes)."""
    try:
        import napari
    except ImportError:
        raise InputError("traice view needs napari: pip install 'traice[view]'") from None
    result_image(result_dir)  # a bad folder stops here, before a window opens
    viewer = napari.Viewer(ndisplay=3, title=f"traice: {Path(result_dir).name}")
    add_result(viewer, result_dir, swc)
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    napari.run()
