import numpy as np
import pytest

from scipy import ndimage

from traice.core.masks import ellipsoid_footprint, soma_component
from traice.stages.morphology import SOMA_OPENING_UM, SPUR_UM, measure, soma_mask, swc_table

ISO = (1.0, 1.0, 1.0)
ANISO = (2.0, 0.5, 0.5)


def _line(shape, z, y, x0, x1):
    m = np.zeros(shape, bool)
    m[z, y, x0:x1] = True
    return m


@pytest.mark.parametrize("spacing", [ISO, ANISO])
def test_straight_process_length(spacing):
    mask = _line((5, 9, 60), 2, 4, 5, 45)
    metrics, tree, _ = measure(mask, spacing)
    # the soma (default: the centroid) sits mid-line: two processes, each from the step after the soma
    assert tree.n_primary == metrics["n_primary_processes"] == 2
    assert metrics["total_length_um"] == pytest.approx(37 * spacing[2], rel=0.02)
    assert metrics["n_branch_points"] == 0
    assert metrics["n_endpoints"] == 2
    assert metrics["cell_volume_um3"] == pytest.approx(40 * np.prod(spacing))


def test_along_z_uses_z_spacing():
    mask = np.zeros((30, 5, 5), bool)
    mask[2:22, 2, 2] = True
    metrics, _, _ = measure(mask, ANISO)
    assert metrics["total_length_um"] == pytest.approx(17 * ANISO[0], rel=0.02)  # 19 steps, less one each side of the soma


def test_y_shape():
    mask = _line((3, 60, 60), 1, 30, 5, 31)
    mask[1, 5:31, 30] = True
    mask[1, 30:55, 30] = True
    metrics, _, _ = measure(mask, ISO)
    assert metrics["n_branch_points"] == 1
    assert metrics["n_endpoints"] == 3
    assert metrics["n_branches"] == 3
    assert metrics["total_length_um"] == pytest.approx(25 + 25 + 25, rel=0.05)


@pytest.mark.parametrize("spacing", [ISO, (0.5, 0.5, 0.5)])
def test_side_branches_shorter_than_a_spur_are_pruned_longer_ones_kept(spacing):
    mask = _line((3, 40, 80), 1, 30, 5, 75)
    mask[1, 27:30, 20] = True   # 3 voxels out of the line: 2-3 µm at 1 µm voxels (kept), 1-1.5 µm at 0.5 µm (pruned)
    mask[1, 29, 50] = True      # a bump of one voxel: 1 or 0.5 µm (pruned)
    mask[1, 10:30, 60] = True   # a real side process, 20 voxels
    metrics, tree, _ = measure(mask, spacing, soma=(1, 30, 40))
    side = 3 * spacing[1]
    kept = side > SPUR_UM
    assert metrics["n_branch_points"] == 1 + kept
    assert metrics["n_endpoints"] == 3 + kept
    line = (75 - 5 - 1) * spacing[2] - 2 * spacing[2]  # the line, less the soma node and the step off it each side
    assert metrics["total_length_um"] == pytest.approx(line + 20 * spacing[1] + side * kept, abs=3 * spacing[2])


def test_a_small_blob_whose_every_branch_is_short_keeps_its_skeleton():
    mask = np.zeros((5, 16, 10), bool)
    for voxel in [(1, 13, 8), (2, 13, 8), (3, 12, 7), (3, 14, 7)]:  # a Y of three branches, each under 2 µm
        mask[voxel] = True
    metrics, tree, _ = measure(mask, (1.25, 0.4, 0.4), soma=(2, 13, 8))  # pruned, only its junction would be left
    assert tree is not None and metrics["n_endpoints"] == 3 and metrics["n_branch_points"] == 1


@pytest.mark.parametrize("arms", [3, 5, 8])
def test_star_with_n_arms(arms):
    mask = np.zeros((3, 81, 81), bool)
    for k in range(arms):
        a = 2 * np.pi * k / arms
        for r in np.arange(0, 30, 0.25):
            mask[1, int(round(40 + r * np.sin(a))), int(round(40 + r * np.cos(a)))] = True
    metrics, _, _ = measure(mask, ISO)
    assert metrics["n_endpoints"] == arms
    assert metrics["n_branch_points"] == 1
    assert metrics["total_length_um"] == pytest.approx(arms * 29.5, rel=0.12)


def test_sphere_volume_anisotropic():
    spacing = ANISO
    grids = np.meshgrid(*[(np.arange(n) - n // 2) * s for n, s in zip((15, 61, 61), spacing)], indexing="ij")
    mask = sum(g**2 for g in grids) <= 10.0**2
    metrics, _, _ = measure(mask, spacing)
    assert metrics["cell_volume_um3"] == pytest.approx(4 / 3 * np.pi * 1000, rel=0.05)


def test_swc_soma_is_root_and_tree_is_connected():
    mask = _line((3, 40, 60), 1, 20, 5, 55)
    mask[1, 5:21, 30] = True
    metrics, skel, _ = measure(mask, ISO)
    table = swc_table(mask, skel, soma=(1, 20, 30), spacing=ISO, origin_um=(10.0, 0.0, 0.0))
    assert table.iloc[0]["type"] == 1 and table.iloc[0]["parent"] == -1
    assert (table["parent"].iloc[1:] > 0).all()  # one tree, rooted at the soma
    assert set(table["parent"].iloc[1:]) <= set(table["id"])
    assert table["z"].min() == pytest.approx(11.0)  # origin offset applied, µm
    # edges (excluding soma-to-first-node) sum to the skeleton length
    pos = table.set_index("id")[["x", "y", "z"]]
    child = table[table["parent"] > 1]
    lengths = np.linalg.norm(pos.loc[child["id"]].to_numpy() - pos.loc[child["parent"]].to_numpy(), axis=1)
    assert lengths.sum() == pytest.approx(metrics["total_length_um"], rel=0.02)


def _ball(shape, centre, radius_um, spacing):
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_um**2


@pytest.mark.parametrize("spacing", [ISO, ANISO])
def test_soma_territory_and_ramification_of_a_sphere(spacing):
    shape = tuple(int(30 / s) for s in spacing)
    centre = [n // 2 for n in shape]
    mask = _ball(shape, centre, 6.0, spacing)
    metrics, _, _ = measure(mask, spacing, centre)
    sphere = 4 / 3 * np.pi * 6.0**3
    assert metrics["soma_volume_um3"] == pytest.approx(sphere, rel=0.1)
    assert metrics["cell_volume_um3"] == pytest.approx(sphere, rel=0.1)
    assert metrics["territory_volume_um3"] == pytest.approx(sphere, rel=0.15)
    assert 1.0 <= metrics["ramification_index"] < 1.25


def test_soma_excludes_processes_and_territory_grows_with_them():
    spacing = ISO
    mask = _ball((21, 81, 81), (10, 40, 40), 5.0, spacing)
    mask[10, 40, 40:80] = True   # a 1-voxel process, 35 µm beyond the soma
    mask[10, 5:40, 40] = True
    metrics, _, _ = measure(mask, spacing, (10, 40, 40))
    assert metrics["soma_volume_um3"] == pytest.approx(4 / 3 * np.pi * 125, rel=0.1)
    assert metrics["territory_volume_um3"] > 3 * metrics["cell_volume_um3"]
    assert metrics["ramification_index"] > 3


_opening = ndimage.binary_opening


def _soma_of_whole_mask(mask, soma, spacing):
    """The soma by its definition: the whole mask opened, the component at the soma, its surface given back."""
    opened = _opening(mask, structure=ellipsoid_footprint(SOMA_OPENING_UM, spacing))
    if not opened.any():
        return np.zeros_like(mask)
    return ndimage.binary_dilation(soma_component(opened, soma)) & mask


@pytest.mark.parametrize("spacing", [ISO, ANISO])
def test_soma_mask_near_the_soma_equals_the_whole_mask_opened(spacing, monkeypatch):
    """The soma is opened in a box around it first; wherever that box cannot tell, the whole mask is opened."""
    openings = []
    monkeypatch.setattr(ndimage, "binary_opening", lambda m, **kw: openings.append(m.shape) or _opening(m, **kw))
    rng = np.random.default_rng(3)
    shape = tuple(int(70 / s) for s in spacing)
    centre = np.array([n // 2 for n in shape])
    cell = _ball(shape, centre, 5.0, spacing)
    cell[centre[0], centre[1], :] = True  # a thin process across the mask
    for _ in range(40):
        cell |= _ball(shape, rng.uniform(0, 1, 3) * shape, rng.uniform(0.5, 2.5), spacing)
    trunk = cell.copy()  # and a trunk thicker than the opening, out past the box
    for x in range(centre[2], shape[2], 2):
        trunk |= _ball(shape, (centre[0], centre[1], x), 3.0, spacing)
    edge = np.array([centre[0], centre[1], 1])  # a soma cut by the mask's face
    at_edge = cell | _ball(shape, edge, 5.0, spacing)
    off = centre + np.array([0, int(6.5 / spacing[1]), 0])  # a soma position off the opened mask
    cases = [(cell, centre, 1), (at_edge, edge, 1), (trunk, centre, 2), (cell, off, 2)]
    for mask, soma, n_openings in cases:
        openings.clear()
        found = soma_mask(mask, soma, spacing, near_um=8.0)
        assert len(openings) == n_openings  # 1: the box told; 2: the whole mask was opened too
        np.testing.assert_array_equal(found, _soma_of_whole_mask(mask, soma, spacing))
    assert found.any()


def test_branch_order_y_from_its_stem():
    # stem from the soma at (1, 30, 5) to a fork at x = 30, two daughters
    mask = _line((3, 60, 60), 1, 30, 5, 31)
    mask[1, 5:31, 30] = True
    mask[1, 30:55, 30] = True
    metrics, _, _ = measure(mask, ISO, (1, 30, 5))
    assert metrics["max_branch_order"] == 2
    assert metrics["mean_branch_length_um"] == pytest.approx(25, rel=0.1)
    assert metrics["max_branch_length_um"] == pytest.approx(25.4, rel=0.1)


@pytest.mark.parametrize("spacing", [ISO, (1.0, 0.5, 0.5)])
def test_star_sholl_and_order(spacing):
    arms, length = 6, 30.0
    shape = (3, int(2 * length / spacing[1]) + 11, int(2 * length / spacing[2]) + 11)
    centre = (1, shape[1] // 2, shape[2] // 2)
    mask = np.zeros(shape, bool)
    for k in range(arms):
        a = 2 * np.pi * k / arms
        for r in np.arange(0, length, 0.1):
            mask[1, int(round(centre[1] + r * np.sin(a) / spacing[1])), int(round(centre[2] + r * np.cos(a) / spacing[2]))] = True
    metrics, _, sholl = measure(mask, spacing, centre)
    assert metrics["max_branch_order"] == 1
    assert metrics["sholl_max_intersections"] == arms
    inner = sholl[(sholl["radius_um"] >= 5) & (sholl["radius_um"] <= 25)]
    assert (inner["intersections"] == arms).all()
    assert metrics["sholl_auc"] == pytest.approx(sholl["intersections"].sum() * 5.0)
    assert metrics["mean_tortuosity"] == pytest.approx(1.0, abs=0.08)


def test_tortuosity_of_a_zigzag():
    mask = np.zeros((3, 40, 80), bool)
    # a square wave: 10 up, 10 across, 10 down, ... path 1.0 + detours
    y, x = 10, 5
    for seg in range(6):
        mask[1, y, x:x + 10] = True
        x += 9
        ny = 25 if y == 10 else 10
        mask[1, min(y, ny):max(y, ny) + 1, x] = True
        y = ny
    metrics, _, _ = measure(mask, ISO, (1, 10, 5))
    assert metrics["n_branch_points"] == 0
    assert metrics["mean_tortuosity"] > 2.0


def test_swc_total_length_matches_neurom(tmp_path):
    neurom = pytest.importorskip("neurom", reason="neurom (test dependency) not installed")
    from traice.io.swc import write_swc

    mask = _ball((21, 81, 81), (10, 40, 40), 4.0, ISO)
    mask[10, 40, 40:78] = True
    mask[10, 3:40, 40] = True
    for i in range(25):
        mask[10 - i // 3, 40 + i, 40 - i] = True
    metrics, skel, _ = measure(mask, ISO, (10, 40, 40))
    swc = swc_table(mask, skel, (10, 40, 40), ISO, (0.0, 0.0, 0.0))
    write_swc(swc, tmp_path / "c.swc", 1)
    m = neurom.load_morphology(tmp_path / "c.swc")
    theirs = neurom.get("total_length", m)
    assert theirs == pytest.approx(metrics["total_length_um"], rel=0.01)
    assert len(m.neurites) == metrics["n_primary_processes"] == 3  # each process its own neurite
    inside = swc[(swc["type"] == 3) & (np.linalg.norm(swc[["z", "y", "x"]].to_numpy() - (10, 40, 40), axis=1) < 3.0)]
    assert inside.empty  # nodes inside the soma are folded into it


def test_cells_without_processes_have_a_zero_sholl_profile():
    """A lone voxel (no skeleton) and a small blob (a skeleton inside the first shell) get zero rows, not none."""
    dot = np.zeros((5, 11, 11), bool)
    dot[2, 5, 5] = True
    blob = _ball((11, 21, 21), (5, 10, 10), 2.0, ISO)
    for mask, centre in [(dot, (2, 5, 5)), (blob, (5, 10, 10))]:
        metrics, skel, sholl = measure(mask, ISO, centre)
        assert sholl["radius_um"].tolist() == [5.0] and sholl["intersections"].tolist() == [0]
        assert metrics["sholl_max_intersections"] == 0 and metrics["sholl_max_radius_um"] == 0.0
    assert measure(dot, ISO, (2, 5, 5))[1] is None


def test_quality_flags_of_a_cut_cell_a_blob_and_a_cell_in_pieces():
    import pandas as pd
    import zarr

    from traice.core.geometry import Box
    from traice.stages.morphology import border_faces, measure_cell

    labels = np.zeros((20, 80, 80), np.uint32)
    labels[_ball((20, 80, 80), (10, 40, 20), 4.0, ISO)] = 1     # cell 1: soma and a process out to x = 0
    labels[10, 40, 0:20] = 1
    labels[10, 60, 60:70] = 1                                  # ... and a loose piece
    labels[_ball((20, 80, 80), (10, 15, 60), 3.0, ISO)] = 2     # cell 2: a process-free blob
    store = zarr.create_array(zarr.storage.MemoryStore(), shape=labels.shape, dtype=np.uint32, chunks=(20, 80, 80))
    store[...] = labels
    box = Box.from_shape(labels.shape)
    one, _, _ = measure_cell(store, pd.Series({"cell_id": 1, "z": 10, "y": 40, "x": 20}), box, ISO)
    two, _, _ = measure_cell(store, pd.Series({"cell_id": 2, "z": 10, "y": 15, "x": 60}), box, ISO)
    assert one["border_faces"] == "x0" and one["n_components"] == 2 and one["has_processes"]
    assert two["border_faces"] == "" and two["n_components"] == 1 and not two["has_processes"]
    corner = np.zeros((3, 3, 3), bool)
    corner[2, 0, 2] = True
    assert border_faces(corner, (7, 0, 5), (10, 10, 10)) == "y0 z1"


def test_a_region_update_over_an_older_result_is_refused_with_a_reason(tmp_path):
    import pandas as pd

    from traice.core.errors import InputError
    from traice.core.schema import MORPHOLOGY, SHOLL, conform
    from traice.stages.morphology import gather

    base = tmp_path / "base"
    (base / "swc").mkdir(parents=True)
    conform(pd.DataFrame(), MORPHOLOGY).drop(columns=["n_components"]).to_parquet(base / "morphology.parquet")
    conform(pd.DataFrame(), SHOLL).to_parquet(base / "sholl.parquet")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"morphology.parquet lacks \['n_components'\] .* run the whole image again"):
        gather([], out / "m.parquet", out / "m.csv", out / "s.parquet", out / "swc", base, keep_ids=[1])
    assert not out.exists()


def test_thin_processes_at_coarser_voxels_keep_their_volume_where_the_foreground_weighs_each_voxel():
    """A cell drawn on the networks' grid, its foreground resized onto 2x coarser voxels as the detect step does
    and thresholded as the growth segmenter does: every coarse voxel a one-voxel-wide process touches is in the
    mask, so counting voxels whole makes the cell far bigger than it is; weighing each by the foreground
    probability (the share of it filled) gives back the grid's volume."""
    import pandas as pd
    import zarr

    from traice.core.geometry import Box
    from traice.core.grid import MODEL_SPACING_UM, from_model_grid
    from traice.io.maps import ArrayMaps
    from traice.stages.morphology import measure_cell

    grid = (32, 160, 160)
    cell = _ball(grid, (16, 80, 80), 4.0, MODEL_SPACING_UM)              # an 8 µm wide soma
    for i, y in enumerate(range(72, 89, 3)):                            # six 28 µm processes, one grid voxel thin
        cell[15 + i % 3, y, slice(80, 150) if i % 2 else slice(10, 80)] = True
    coarse = tuple(n // 2 for n in grid)
    spacing = tuple(2 * s for s in MODEL_SPACING_UM)
    foreground = from_model_grid(cell[None].astype(np.float32), coarse)[0]

    def measured(labels, spacing, foreground):
        store = zarr.create_array(zarr.storage.MemoryStore(), shape=labels.shape, dtype=np.uint32, chunks=labels.shape)
        store[...] = labels
        maps = ArrayMaps(np.stack([np.zeros_like(foreground), foreground, *np.zeros((3, *foreground.shape))]))
        centre = pd.Series({"cell_id": 1, "z": labels.shape[0] // 2, "y": labels.shape[1] // 2, "x": labels.shape[2] // 2})
        box = Box.from_shape(labels.shape)
        return (measure_cell(store, centre, box, spacing, maps)[0]["cell_volume_um3"],
                measure_cell(store, centre, box, spacing)[0]["cell_volume_um3"])

    on_grid, on_grid_whole = measured(cell.astype(np.uint32), MODEL_SPACING_UM, cell.astype(np.float32))
    partial, whole = measured((foreground > 0.1).astype(np.uint32), spacing, foreground)
    assert on_grid_whole == pytest.approx(cell.sum() * np.prod(MODEL_SPACING_UM))
    assert on_grid == pytest.approx(on_grid_whole, rel=0.01)  # a foreground of 1: whole voxels (uint8 storage)
    assert whole > 1.3 * on_grid
    assert partial == pytest.approx(on_grid, rel=0.05)


def _grid_cell() -> np.ndarray:
    """A cell on the networks' grid: a soma and six processes one grid voxel thin, four of them diagonal in (y, x)."""
    from traice.core.grid import MODEL_SPACING_UM

    cell = _ball((24, 152, 152), (12, 76, 76), 4.0, MODEL_SPACING_UM)
    for i, (dy, dx) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (1, 0)]):
        for step in range(10, 60):
            cell[11 + i % 3, 76 + dy * step, 76 + dx * step] = True
    return cell


def test_skeleton_grid_undoes_the_finer_voxels_the_maps_were_resized_onto():
    from traice.core.grid import from_model_grid
    from traice.stages.morphology import skeleton_grid

    cell = _grid_cell()
    finer = tuple(round(n * 1.25) for n in cell.shape)  # 0.8x the grid's voxels
    mask = from_model_grid(cell[None].astype(np.float32), finer)[0] > 0.5
    back, scale, shift = skeleton_grid(mask, (1.0, 0.32, 0.32))
    np.testing.assert_array_equal(back, cell)
    np.testing.assert_allclose(scale, 1.25)
    np.testing.assert_allclose(shift, 0.125)
    same, scale, shift = skeleton_grid(cell, (1.25, 0.4, 0.4))  # on the grid, or coarser: as it is
    assert same is cell and (scale == 1).all() and (shift == 0).all()
    coarse = cell[::2, ::2, ::2]
    assert skeleton_grid(coarse, (2.5, 0.8, 0.8))[0] is coarse


def test_a_cell_on_finer_voxels_measures_as_on_the_grid_when_its_mask_came_from_the_maps():
    """Traced on the finer voxels, the steps of the diagonal processes add spurs and zig-zags; traced on the grid
    (``on_grid``) the lengths and branch points are the grid's, and the tree and SWC refer to the finer voxels."""
    from traice.core.grid import MODEL_SPACING_UM, from_model_grid

    cell = _grid_cell()
    finer_shape = tuple(round(n * 1.25) for n in cell.shape)
    finer_spacing = tuple(0.8 * s for s in MODEL_SPACING_UM)
    mask = from_model_grid(cell[None].astype(np.float32), finer_shape)[0] > 0.5
    soma = (np.asarray((12, 76, 76)) + 0.5) * 1.25 - 0.5
    grid, _, _ = measure(cell, MODEL_SPACING_UM, (12, 76, 76))
    own, _, _ = measure(mask, finer_spacing, soma)
    traced, tree, _ = measure(mask, finer_spacing, soma, on_grid=True)
    for key in ("total_length_um", "n_branch_points", "n_endpoints", "sholl_max_intersections"):
        assert traced[key] == pytest.approx(grid[key], rel=0.02), key
    assert own["n_endpoints"] > grid["n_endpoints"]  # what tracing on the finer voxels did: spurs
    assert own["total_length_um"] > 1.02 * grid["total_length_um"]
    assert traced["cell_volume_um3"] == own["cell_volume_um3"]  # volumes stay on the image's voxels
    assert tree.spacing == finer_spacing
    swc = swc_table(mask, tree, soma, finer_spacing, (0.0, 0.0, 0.0))
    voxels = np.rint(swc[["z", "y", "x"]].to_numpy() / np.asarray(finer_spacing)).astype(int)
    assert mask[tuple(voxels.T)].all()  # every SWC node on the cell, in the finer voxels' µm
