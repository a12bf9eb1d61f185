import numpy as np
import pytest
from skimage.graph import MCP_Geometric

from traice.core import voxel_graph
from traice.core.voxel_graph import geodesic_cost, neighbour_pairs

SPACING = (1.25, 0.4, 0.4)


def test_a_cube_of_eight_voxels_has_every_pair_once_with_its_length():
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    coords, first, second, step_um = neighbour_pairs(mask, SPACING)
    np.testing.assert_array_equal(coords, np.argwhere(mask))
    assert len(first) == 8 * 7 // 2 and np.all(first < second)
    assert len({(a, b) for a, b in zip(first, second)}) == 28
    expected = np.linalg.norm((coords[second] - coords[first]) * np.asarray(SPACING), axis=1)
    np.testing.assert_allclose(step_um, expected)
    z, y, x = SPACING
    assert sorted(np.round(step_um, 9)) == pytest.approx(sorted([z] * 4 + [y] * 4 + [x] * 4 + [np.hypot(z, y)] * 4
                                                                + [np.hypot(z, x)] * 4 + [np.hypot(y, x)] * 4
                                                                + [np.sqrt(z * z + y * y + x * x)] * 4))


def test_voxels_on_the_edge_of_the_array_find_their_neighbours_and_nothing_wraps():
    mask = np.zeros((2, 3, 5), bool)
    mask[0, 0, 4] = mask[1, 1, 0] = True       # far apart in space, neighbours in a flattened array
    mask[1, 2, 4] = mask[0, 2, 3] = True       # true neighbours in a corner
    coords, first, second, _ = neighbour_pairs(mask, SPACING)
    pairs = {tuple(map(tuple, coords[[a, b]])) for a, b in zip(first, second)}
    assert pairs == {((0, 2, 3), (1, 2, 4))}


def test_cost_along_a_line_of_uniform_cost_is_its_length_and_a_wall_forces_a_detour():
    cost = np.ones((1, 9, 9))
    seeds = np.zeros(cost.shape, bool)
    seeds[0, 4, 0] = True
    straight = geodesic_cost(cost, seeds, (1.0, 1.0, 1.0))
    assert straight[0, 4, 8] == pytest.approx(8.0) and straight[0, 4, 0] == 0.0
    cost[0, 1:9, 4] = np.inf                    # a wall with a gap at the top row only
    around = geodesic_cost(cost, seeds, (1.0, 1.0, 1.0))
    assert np.isinf(around[0, 5, 4])
    assert around[0, 4, 8] == pytest.approx(8 * np.sqrt(2), abs=1e-9)  # four diagonal steps up to the gap, four down
    cost[0, 0, 4] = np.inf                      # the gap closed: the far side is unreachable
    assert np.isinf(geodesic_cost(cost, seeds, (1.0, 1.0, 1.0))[0, :, 5:]).all()


def test_no_seed_on_a_passable_voxel_reaches_nothing():
    cost = np.ones((2, 4, 4))
    seeds = np.zeros(cost.shape, bool)
    assert np.isinf(geodesic_cost(cost, seeds, SPACING)).all()
    cost[0, 0, 0], seeds[0, 0, 0] = np.inf, True
    assert np.isinf(geodesic_cost(cost, seeds, SPACING)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_costs_equal_skimages_mcp_geometric_on_random_fields(seed):
    """The reference: scikit-image's MCP_Geometric, which seeded growth used before (same step cost)."""
    rng = np.random.default_rng(seed)
    cost = 1.0 / np.maximum(rng.random((8, 40, 40)), 0.05)
    cost[rng.random(cost.shape) < 0.8] = np.inf    # a fifth passable: the graph of the passable voxels
    seeds = np.zeros(cost.shape, bool)
    seeds[4, 18:22, 18:22] = True
    seeds &= np.isfinite(cost)
    assert np.isfinite(cost).mean() <= voxel_graph.DIJKSTRA_SHARE
    reference, _ = MCP_Geometric(cost, sampling=SPACING).find_costs(np.argwhere(seeds))
    ours = geodesic_cost(cost, seeds, SPACING)
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(reference))
    reached = np.isfinite(ours)
    assert reached.sum() > 500
    np.testing.assert_allclose(ours[reached], reference[reached], rtol=1e-9, atol=1e-9)


def test_a_mostly_passable_array_gets_the_same_costs_from_the_whole_array_search(monkeypatch):
    """Above DIJKSTRA_SHARE passable, the search runs over the whole array (bounded memory): same costs."""
    rng = np.random.default_rng(7)
    cost = 1.0 / np.maximum(rng.random((6, 30, 30)), 0.05)
    cost[rng.random(cost.shape) < 0.2] = np.inf   # 80 % passable: the whole-array search
    seeds = np.zeros(cost.shape, bool)
    seeds[3, 15, 15] = True
    cost[3, 15, 15] = 1.0
    assert np.isfinite(cost).mean() > voxel_graph.DIJKSTRA_SHARE
    whole = geodesic_cost(cost, seeds, SPACING)
    monkeypatch.setattr(voxel_graph, "DIJKSTRA_SHARE", 1.0)   # the graph of the passable voxels instead
    graph = geodesic_cost(cost, seeds, SPACING)
    np.testing.assert_array_equal(np.isfinite(whole), np.isfinite(graph))
    assert np.isfinite(whole).sum() > 3000 and whole[3, 15, 15] == 0.0
    np.testing.assert_allclose(whole[np.isfinite(whole)], graph[np.isfinite(graph)], rtol=1e-9, atol=1e-9)
