import numpy as np
import pytest

from traice.morphology import measure, swc_table

ISO = (1.0, 1.0, 1.0)
ANISO = (2.0, 0.5, 0.5)


def _line(shape, z, y, x0, x1):
    m = np.zeros(shape, bool)
    m[z, y, x0:x1] = True
    return m


@pytest.mark.parametrize("spacing", [ISO, ANISO])
def test_straight_process_length(spacing):
    mask = _line((5, 9, 60), 2, 4, 5, 45)
    metrics, _ = measure(mask, spacing)
    assert metrics["skeleton_length_um"] == pytest.approx(39 * spacing[2], rel=0.02)
    assert metrics["n_branch_points"] == 0
    assert metrics["n_endpoints"] == 2
    assert metrics["volume_um3"] == pytest.approx(40 * np.prod(spacing))


def test_along_z_uses_z_spacing():
    mask = np.zeros((30, 5, 5), bool)
    mask[2:22, 2, 2] = True
    metrics, _ = measure(mask, ANISO)
    assert metrics["skeleton_length_um"] == pytest.approx(19 * ANISO[0], rel=0.02)


def test_y_shape():
    mask = _line((3, 60, 60), 1, 30, 5, 31)
    mask[1, 5:31, 30] = True
    mask[1, 30:55, 30] = True
    metrics, _ = measure(mask, ISO)
    assert metrics["n_branch_points"] == 1
    assert metrics["n_endpoints"] == 3
    assert metrics["n_branches"] == 3
    assert metrics["skeleton_length_um"] == pytest.approx(25 + 25 + 25, rel=0.05)


@pytest.mark.parametrize("arms", [3, 5, 8])
def test_star_with_n_arms(arms):
    mask = np.zeros((3, 81, 81), bool)
    for k in range(arms):
        a = 2 * np.pi * k / arms
        for r in np.arange(0, 30, 0.25):
            mask[1, int(round(40 + r * np.sin(a))), int(round(40 + r * np.cos(a)))] = True
    metrics, _ = measure(mask, ISO)
    assert metrics["n_endpoints"] == arms
    assert metrics["n_branch_points"] == 1
    assert metrics["skeleton_length_um"] == pytest.approx(arms * 29.5, rel=0.12)


def test_sphere_volume_anisotropic():
    spacing = ANISO
    grids = np.meshgrid(*[(np.arange(n) - n // 2) * s for n, s in zip((15, 61, 61), spacing)], indexing="ij")
    mask = sum(g**2 for g in grids) <= 10.0**2
    metrics, _ = measure(mask, spacing)
    assert metrics["volume_um3"] == pytest.approx(4 / 3 * np.pi * 1000, rel=0.05)


def test_swc_soma_is_root_and_tree_is_connected():
    mask = _line((3, 40, 60), 1, 20, 5, 55)
    mask[1, 5:21, 30] = True
    metrics, skel = measure(mask, ISO)
    table = swc_table(mask, skel, soma=(1, 20, 30), spacing=ISO, origin_um=(10.0, 0.0, 0.0))
    assert table.iloc[0]["type"] == 1 and table.iloc[0]["parent"] == -1
    assert (table["parent"].iloc[1:] > 0).all()  # one tree, rooted at the soma
    assert set(table["parent"].iloc[1:]) <= set(table["id"])
    assert table["z"].min() == pytest.approx(11.0)  # origin offset applied, µm
    # edges (excluding soma-to-first-node) sum to the skeleton length
    pos = table.set_index("id")[["x", "y", "z"]]
    child = table[table["parent"] > 1]
    lengths = np.linalg.norm(pos.loc[child["id"]].to_numpy() - pos.loc[child["parent"]].to_numpy(), axis=1)
    assert lengths.sum() == pytest.approx(metrics["skeleton_length_um"], rel=0.02)
