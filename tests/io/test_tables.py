"""Tables and JSON: written atomically, readable as an ordinary write would be."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from traice.io.tables import read_json, write_json, write_table


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        write_json({"a": 1}, tmp_path / "r.json")
    finally:
        os.umask(old)
    for name in ("t.parquet", "t.csv", "r.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert read_json(tmp_path / "r.json") == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "t.csv", "t.parquet"]  # no temporary left
