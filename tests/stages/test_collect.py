import pandas as pd
import pytest

from traice.core import schema
from traice.core.errors import InputError
from traice.stages.collect import KINDS, collect


def _result(folder, sample: str, n: int) -> None:
    folder.mkdir(parents=True)
    for kind, columns in KINDS.items():
        rows = pd.DataFrame({c: [0] * n for c in columns}).assign(sample=sample)
        if "cell_id" in columns:
            rows["cell_id"] = range(1, n + 1)
        schema.conform(rows, columns).to_parquet(folder / f"{kind}.parquet")


def test_collect_concatenates_samples_from_results_and_sample_folders(tmp_path):
    _result(tmp_path / "run1" / "mouse1", "mouse1", 3)
    _result(tmp_path / "run1" / "mouse2", "mouse2", 2)
    _result(tmp_path / "run2" / "mouse3", "mouse3", 4)
    rows = collect([tmp_path / "run1", tmp_path / "run2" / "mouse3"], tmp_path / "pooled")
    assert rows["cells"] == 9 and rows["morphology"] == 9
    cells = pd.read_parquet(tmp_path / "pooled" / "cells.parquet")
    assert list(cells.columns) == list(schema.CELLS)
    assert cells.groupby("sample")["cell_id"].max().to_dict() == {"mouse1": 3, "mouse2": 2, "mouse3": 4}
    csv = pd.read_csv(tmp_path / "pooled" / "morphology.csv")
    assert csv["sample"].tolist() == ["mouse1"] * 3 + ["mouse2"] * 2 + ["mouse3"] * 4


def test_collect_refuses_one_sample_twice_and_non_results(tmp_path):
    _result(tmp_path / "a" / "mouse1", "mouse1", 1)
    _result(tmp_path / "b" / "mouse1", "mouse1", 1)
    with pytest.raises(InputError, match="sample 'mouse1' is in both"):
        collect([tmp_path / "a", tmp_path / "b"], tmp_path / "pooled")
    assert not (tmp_path / "pooled").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a traice result"):
        collect([tmp_path / "empty"], tmp_path / "pooled")
