import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from traice.core.skeleton import LOOP, TIP_JUNCTION, TIP_TIP, SkeletonGraph, adjacency

SPACING = (1.25, 0.4, 0.4)
COLUMNS = ["skeleton_id", "node_id_src", "node_id_dst", "branch_distance", "branch_type", "euclidean_distance"]


def test_a_line_is_one_branch_tip_to_tip_with_its_length_in_um():
    image = np.zeros((3, 3, 12), bool)
    image[1, 1, 2:10] = True
    branches = SkeletonGraph(image, SPACING).branches()
    assert len(branches) == 1 and branches["branch_type"].iloc[0] == TIP_TIP
    assert branches["branch_distance"].iloc[0] == pytest.approx(7 * 0.4)
    assert branches["euclidean_distance"].iloc[0] == pytest.approx(7 * 0.4)


def test_a_y_has_three_tip_to_junction_branches_and_diagonal_steps_count_their_length():
    image = np.zeros((1, 12, 12), bool)
    image[0, 6, 0:6] = True                      # stem along x to the junction at (6, 5)
    for k in range(1, 5):
        image[0, 6 - k, 5 + k] = True            # up-right diagonal
        image[0, 6 + k, 5 + k] = True            # down-right diagonal
    graph = SkeletonGraph(image, (1.0, 1.0, 1.0))
    branches = graph.branches()
    assert sorted(branches["branch_type"]) == [TIP_JUNCTION] * 3
    assert sorted(branches["branch_distance"].round(6)) == pytest.approx(sorted([5.0, 4 * np.sqrt(2), 4 * np.sqrt(2)]))
    assert np.count_nonzero(graph.degrees == 3) == 1 and np.count_nonzero(graph.degrees == 1) == 3


def _diamond(r: int, size: int) -> np.ndarray:
    image = np.zeros((1, size, size), bool)
    c = size // 2
    for k in range(-r, r + 1):
        image[0, c + k, c + (r - abs(k))] = image[0, c + k, c - (r - abs(k))] = True
    return image


def test_a_ring_without_a_node_is_one_loop_and_a_ring_with_a_tail_is_a_loop_at_its_junction():
    ring = _diamond(4, 13)                       # diagonal steps only: every voxel has two neighbours
    loop = SkeletonGraph(ring, SPACING).branches()
    assert list(loop["branch_type"]) == [LOOP] and loop["node_id_src"].iloc[0] == loop["node_id_dst"].iloc[0]
    assert loop["branch_distance"].iloc[0] == pytest.approx(16 * 0.4 * np.sqrt(2))
    ring[0, 6, 11:13] = True                     # a tail off the ring's right tip (x = 10)
    branches = SkeletonGraph(ring, SPACING).branches()
    assert sorted(branches["branch_type"]) == [TIP_JUNCTION, LOOP]
    assert sorted(branches["branch_distance"]) == pytest.approx([2 * 0.4, 16 * 0.4 * np.sqrt(2)])


def _clump() -> np.ndarray:
    image = np.zeros((1, 9, 9), bool)
    image[0, 3:5, 3:5] = True                    # a 2 x 2 clump: six edges among four voxels ...
    image[0, 0:3, 3] = image[0, 5:9, 4] = image[0, 3, 0:3] = image[0, 4, 5:9] = True  # ... each with an arm
    return image


def test_a_clump_of_junction_voxels_keeps_only_its_spanning_tree():
    image = _clump()
    coords, graph = adjacency(image, (1.0, 1.0, 1.0))
    clump = [i for i, c in enumerate(coords) if 3 <= c[1] <= 4 and 3 <= c[2] <= 4]
    inner = graph[clump][:, clump]
    assert inner.nnz == 2 * 3                    # a tree of four voxels has three edges (each stored twice)
    assert inner.data.max() == pytest.approx(1.0)  # the diagonals went, the unit steps stayed


def test_removing_branches_keeps_their_junction_and_thins_what_is_left():
    image = np.zeros((1, 12, 12), bool)
    image[0, 6, 0:11] = True
    image[0, 4:6, 5] = True                      # a 2-voxel spur off the line at x = 5
    graph = SkeletonGraph(image, (1.0, 1.0, 1.0))
    branches = graph.branches()
    spur = branches.index[(branches["branch_type"] == TIP_JUNCTION) & (branches["branch_distance"] < 2.5)]
    assert len(spur) == 1
    pruned = graph.without(spur.to_numpy())
    assert list(pruned.branches()["branch_type"]) == [TIP_TIP]
    assert pruned.branches()["branch_distance"].iloc[0] == pytest.approx(10.0)


def _random_skeletons(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        blobs = ndimage.binary_opening(rng.random((10, 36, 36)) < 0.3) | (rng.random((10, 36, 36)) < 0.02)
        out.append(skeletonize(ndimage.binary_closing(blobs)) > 0)
    return out


@pytest.mark.parametrize("spacing", [SPACING, (1.0, 1.0, 1.0), (2.5, 0.8, 0.8)])
def test_branches_and_pruning_equal_skans_on_random_skeletons(spacing):
    """The reference: skan 0.13's Skeleton, summarize and prune_paths (a test dependency only)."""
    skan = pytest.importorskip("skan", reason="skan, the reference decomposition, is a test dependency")
    for image in [_clump(), _diamond(4, 13)] + _random_skeletons(12, seed=int(spacing[0] * 100)):
        ours, theirs = SkeletonGraph(image, spacing), skan.Skeleton(image, spacing=spacing)
        np.testing.assert_array_equal(ours.coordinates, theirs.coordinates)
        np.testing.assert_array_equal(ours.degrees, theirs.degrees)
        assert abs(ours.graph - theirs.graph).max() < 1e-12
        mine, ref = ours.branches(), skan.summarize(theirs, separator="_")[COLUMNS]
        assert len(mine) == len(ref) > 0
        for column in COLUMNS:
            np.testing.assert_allclose(mine[column].to_numpy(float), ref[column].to_numpy(float), rtol=0, atol=1e-9)
        spurs = ref.index[ref["branch_type"] == TIP_JUNCTION][:4].to_numpy()
        if len(spurs):
            np.testing.assert_array_equal(ours.without(spurs).coordinates, theirs.prune_paths(spurs).coordinates)
