"""SWC files: what traice writes reads back as the same tree, with its units stated."""

from __future__ import annotations

import numpy as np
import pandas as pd

from traice.io.swc import SWC_COLUMNS, read_swc, write_swc


def test_written_swc_reads_back_with_units(tmp_path):
    table = pd.DataFrame([(1, 1, 3.0, 2.0, 1.0, 4.0, -1), (2, 3, 5.0, 2.0, 1.0, 0.5, 1), (3, 3, 7.0, 2.0, 1.0, 0.5, 2)],
                         columns=SWC_COLUMNS)
    write_swc(table, tmp_path / "7.swc", 7)
    text = (tmp_path / "7.swc").read_text().splitlines()
    assert text[0].startswith("# traice cell 7") and "# units: um" in text[:3]
    points, radii, parents = read_swc(tmp_path / "7.swc")
    np.testing.assert_allclose(points, [[1, 2, 3], [1, 2, 5], [1, 2, 7]])  # (z, y, x) µm
    assert radii.tolist() == [4.0, 0.5, 0.5] and parents.tolist() == [-1, 0, 1]


def test_navis_keeps_micrometres_through_a_round_trip(tmp_path):
    import pytest

    navis = pytest.importorskip("navis", reason="navis (test dependency) not installed")
    table = pd.DataFrame([(1, 1, 3.0, 2.0, 1.0, 4.0, -1), (2, 3, 5.0, 2.0, 1.0, 0.5, 1), (3, 3, 7.0, 2.0, 1.0, 0.5, 2)],
                         columns=SWC_COLUMNS)
    write_swc(table, tmp_path / "7.swc", 7)
    neuron = navis.read_swc(tmp_path / "7.swc")
    assert str(neuron.units) == "1 micrometer" and neuron.id == 7
    navis.write_swc(neuron, tmp_path / "again.swc")
    again = navis.read_swc(tmp_path / "again.swc")
    assert str(again.units) == "1 micrometer"
    assert again.cable_length == pytest.approx(4.0)  # two 2 µm edges
    np.testing.assert_allclose(again.nodes[["x", "y", "z"]].to_numpy(), table[["x", "y", "z"]].to_numpy())
