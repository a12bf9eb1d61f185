import warnings

import numpy as np
import pytest

from conftest import SHARED_DATA
from traice.synth import SynthParams
from traice.io.swc import SwcError, read_swc
from traice.synth.traces import (MIN_SOMA_RADIUS_UM, field_split, read_field, render_traces, trace_fields,
                                 traces_origin)

Y_TREE = """# a soma and a Y
1 1 10.0 10.0 4.0 2.0 -1
3 3 40.0 10.0 4.0 1.0 2
2 3 25.0 10.0 4.0 1.0 1
4 3 40.0 25.0 4.0 0.8 3
5 3 40.0 0.0 4.0 0.8 3
"""


def test_read_swc_root_first_in_zyx(tmp_path):
    path = tmp_path / "y.swc"
    path.write_text(Y_TREE)
    points, radii, parents = read_swc(path)
    assert parents[0] == -1 and (parents[1:] >= 0).all()
    np.testing.assert_allclose(points[0], [4.0, 10.0, 10.0])      # (z, y, x)
    # every edge joins the nodes the file says it joins
    xyz = {1: (10, 10, 4), 2: (25, 10, 4), 3: (40, 10, 4), 4: (40, 25, 4), 5: (40, 0, 4)}
    parent_of = {2: 1, 3: 2, 4: 3, 5: 3}
    by_pos = {tuple(p[::-1]): i for i, p in enumerate(points)}
    for child, parent in parent_of.items():
        assert parents[by_pos[xyz[child]]] == by_pos[xyz[parent]]
    assert radii[by_pos[xyz[4]]] == pytest.approx(0.8)


@pytest.mark.parametrize("text, message", [
    ("", "expected 7 columns"),
    ("1 1 0 0 0 1 -1\n2 3 1 0 0 1 -1\n", "2 roots"),
    ("1 1 0 0 0 1 -1\n2 3 1 0 0 1 7\n", "parent 7"),
    ("1 1 0 0 0 1\n", "expected 7 columns"),
    ("a b c d e f g\n", "not a numeric"),
])
def test_malformed_swc_is_refused(tmp_path, text, message):
    path = tmp_path / "bad.swc"
    path.write_text(text)
    with pytest.raises(SwcError, match=message):
        read_swc(path)


def test_read_field_skips_malformed_with_warning(tmp_path):
    (tmp_path / "a.swc").write_text(Y_TREE)
    (tmp_path / "b.swc").write_text("")
    with pytest.warns(UserWarning, match="skipping"):
        trees = read_field(tmp_path)
    assert len(trees) == 1


def test_render_traces_soma_and_arbor_labels(tmp_path):
    path = tmp_path / "y.swc"
    path.write_text(Y_TREE)
    brain = render_traces([read_swc(path)], SynthParams(seed=1), margin_um=8.0)
    spacing = np.asarray(brain.params.spacing)
    assert brain.image.shape == tuple(np.ceil((np.array([0, 25, 30]) + 16) / spacing).astype(int))
    soma_volume = (brain.somas == 1).sum() * np.prod(spacing)
    assert soma_volume == pytest.approx(4 / 3 * np.pi * MIN_SOMA_RADIUS_UM**3, rel=0.15)
    # the far tip of the Y (x = 40 µm, y = 25 µm in the file) is labelled, shifted by the margin
    tip = np.rint((np.array([4.0, 25.0, 40.0]) - np.array([4.0, 0.0, 10.0]) + 8.0) / spacing).astype(int)
    assert brain.cells[tuple(tip)] == 1
    assert brain.truth["cell_id"].tolist() == [1]
    # a trace moved by -traces_origin is in µm of the rendered volume: its root is the soma
    root = read_swc(path)[0][0] - traces_origin([read_swc(path)], margin_um=8.0)
    np.testing.assert_allclose(brain.truth[["z_um", "y_um", "x_um"]].to_numpy()[0], root, atol=1e-6)


def test_traced_somas_take_drawn_radii_when_asked(tmp_path):
    """``traced_soma_radius_um``: each soma's radius drawn from the range (the Y's root says 2 µm, which the
    default raises to 5 µm); labels and truth follow the drawn radius, the arbor stays the trace's."""
    path = tmp_path / "y.swc"
    path.write_text(Y_TREE)
    points, radii, parents = read_swc(path)
    trees = [(points + [40.0 * k, 0.0, 0.0], radii, parents) for k in range(4)]  # four Ys, 40 µm apart in z
    spacing = np.asarray(SynthParams().spacing)
    default = render_traces(trees, SynthParams(seed=1))
    drawn = render_traces(trees, SynthParams(seed=1, traced_soma_radius_um=(3.0, 3.5)))
    assert np.allclose(default.truth["soma_radius_um"], MIN_SOMA_RADIUS_UM)
    assert ((drawn.truth["soma_radius_um"] >= 3.0) & (drawn.truth["soma_radius_um"] <= 3.5)).all()
    assert drawn.truth["soma_radius_um"].nunique() == len(trees)
    for cell in drawn.truth.itertuples():
        volume = (drawn.somas == cell.cell_id).sum() * np.prod(spacing)
        assert volume == pytest.approx(4 / 3 * np.pi * cell.soma_radius_um ** 3, rel=0.2)
    assert (drawn.cells > 0).sum() < (default.cells > 0).sum()   # smaller somas, the same processes


def test_field_split_is_fixed_and_disjoint():
    fields = [f"g{i // 6}/field{i}" for i in range(18)]
    split = field_split(fields[::-1])
    assert [len(split[k]) for k in ("train", "val", "test")] == [12, 3, 3]
    assert not set(split["val"]) & set(split["test"])
    assert split == field_split(fields)


@pytest.mark.skipif(not (SHARED_DATA / "morphomics_kxa").exists(), reason="real tracings (../shared/data/morphomics_kxa) absent")
def test_real_fields_read_and_split():
    fields = trace_fields(SHARED_DATA / "morphomics_kxa")
    assert len(fields) == 18
    split = field_split(fields)
    assert [len(split[k]) for k in ("train", "val", "test")] == [12, 3, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trees = read_field(split["test"][0])
    assert len(trees) >= 16
    for points, radii, parents in trees:
        assert parents[0] == -1 and len(points) > 10
