"""Pool the per-sample tables of several results into one table per kind, for statistics across animals.

Every per-cell and per-region table carries its ``sample`` column, so the pooled
tables are plain concatenations: ``cells``, ``morphology``, ``sholl`` and
``regions``, each as Parquet and CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq

from traice.core import schema
from traice.core.errors import InputError
from traice.io.tables import write_table

KINDS = {"cells": schema.CELLS, "morphology": schema.MORPHOLOGY, "sholl": schema.SHOLL, "regions": schema.REGIONS}


def sample_folders(paths: Sequence[str | Path]) -> list[Path]:
    """The sample result folders (those holding ``cells.parquet``) that ``paths`` name: each path is such a
    folder or a results folder holding them. InputError naming a path that holds none."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "cells.parquet").is_file():
            found.append(path)
            continue
        inner = sorted(p.parent for p in path.glob("*/cells.parquet")) if path.is_dir() else []
        if not inner:
            raise InputError(f"{path}: not a traice result (no cells.parquet in it or in its sample folders)")
        found += inner
    return found


def collect(paths: Sequence[str | Path], out_dir: str | Path) -> dict[str, int]:
    """Concatenate the tables of every sample under ``paths`` into ``out_dir/{kind}.parquet`` and ``.csv``;
    returns the rows per kind. Checks every table before writing: a missing or older-schema table, or two
    results of one sample name, stop with one line naming the file."""
    folders = sample_folders(paths)
    seen: dict[str, Path] = {}
    for folder in folders:
        for kind, columns in KINDS.items():
            path = folder / f"{kind}.parquet"
            if not path.is_file():
                raise InputError(f"{path}: missing; is the run in {folder} finished?")
            missing = [c for c in columns if c not in pq.read_schema(path).names]
            if missing:
                raise InputError(f"{path}: lacks columns {missing} (written by an older traice); run it again")
        names = set(pd.read_parquet(folder / "cells.parquet", columns=["sample"])["sample"].dropna())
        names |= set(pd.read_parquet(folder / "regions.parquet", columns=["sample"])["sample"].dropna())
        for name in names:
            if name in seen:
                raise InputError(f"sample '{name}' is in both {seen[name]} and {folder}; "
                                 "pooled tables need one result per sample name")
            seen[name] = folder
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for kind, columns in KINDS.items():
        parts = [pd.read_parquet(f / f"{kind}.parquet") for f in folders]
        parts = [p for p in parts if len(p)]
        table = schema.conform(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), columns)
        write_table(table, out_dir / f"{kind}.parquet")
        write_table(table, out_dir / f"{kind}.csv")
        rows[kind] = len(table)
    return rows
