"""Score a finished run against the truth of its synthetic or rendered image (``traice evaluate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from traice.core.metrics import cldice, match_points, panoptic_quality, per_cell_dice
from traice.synth import truth_path


def evaluate_run(results: str | Path, image: str | Path | None = None) -> dict:
    """Soma P/R/F1, per-cell Dice and clDice, and PQ of a finished run against the truth of its synthetic or rendered image.

    ``image`` defaults to the sample's own ``input.ome.zarr`` (a synthetic sample);
    its truth table lies beside it and its cell labels in ``labels/cells``.
    """
    results = Path(results)
    image = Path(image) if image is not None else results / "input.ome.zarr"
    cells = pd.read_parquet(results / "cells.parquet")
    truth = pd.read_parquet(truth_path(image))
    m = match_points(cells[["z_um", "y_um", "x_um"]].to_numpy(), truth[["z_um", "y_um", "x_um"]].to_numpy(), 6.0)
    pred = np.asarray(zarr.open_array(str(results / "segmentation.ome.zarr" / "0"), mode="r")[...])
    true = np.asarray(zarr.open_array(str(image / "labels" / "cells" / "0"), mode="r")[...])
    pairs = [(int(cells["cell_id"].iloc[p]), int(truth["cell_id"].iloc[t])) for p, t in m.pairs]
    d = per_cell_dice(pred, true, pairs)
    cl = per_cell_dice(pred, true, pairs, score=cldice)
    return {
        "cells (true)": len(truth),
        "cells (detected)": len(cells),
        "soma precision": m.precision,
        "soma recall": m.recall,
        "soma F1": m.f1,
        "branch Dice (matched cells)": float(d.mean()) if len(d) else 0.0,
        "branch Dice (all true cells)": float(d.sum() / max(len(truth), 1)),
        "branch clDice (all true cells)": float(cl.sum() / max(len(truth), 1)),
        "PQ": panoptic_quality(pred, true)["pq"],
    }
