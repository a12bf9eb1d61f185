"""The skeleton as a tree hanging from the soma: folding, primary processes, loops, detached pieces."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from traice.core.tree import FOLDED, SOMA, process_tree

ISO = (1.0, 1.0, 1.0)


def _graph(n: int, edges: list[tuple[int, int]]) -> csr_matrix:
    a = np.zeros((n, n))
    for i, j in edges:
        a[i, j] = a[j, i] = 1
    return csr_matrix(a)


def test_two_processes_leave_a_soma_and_its_nodes_fold_into_it():
    # x = 0..8 on one line; nodes 3, 4, 5 lie in the soma
    coords = np.array([[0, 0, x] for x in range(9)], float)
    inside = np.isin(np.arange(9), [3, 4, 5])
    tree = process_tree(coords, _graph(9, [(i, i + 1) for i in range(8)]), inside, (0, 0, 4), ISO)
    assert tree.n_primary == 2 and sorted(np.flatnonzero(tree.parent == SOMA)) == [2, 6]
    assert (tree.parent[inside] == FOLDED).all()
    assert tree.length_um() == 4.0  # 2-1-0 and 6-7-8; the steps from the soma are not process
    placed = list(tree.order)
    assert all(tree.parent[n] < 0 or placed.index(tree.parent[n]) < placed.index(n) for n in placed)


def test_a_loop_is_cut_once_the_same_way_every_time():
    # soma node 0; a square loop 1-2-3-4-1 hanging from node 1
    coords = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 2], [0, 0, 2]], float)
    graph = _graph(5, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 1)])
    trees = [process_tree(coords, graph, np.arange(5) == 0, (0, 0, 0), ISO) for _ in range(2)]
    assert trees[0].parent.tolist() == trees[1].parent.tolist() == [FOLDED, SOMA, 1, 2, 1]
    assert trees[0].length_um() == 3.0  # four edges, one cut


def test_a_detached_piece_hangs_where_it_comes_closest():
    coords = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 3, 3], [0, 4, 3]], float)
    graph = _graph(6, [(0, 1), (1, 2), (2, 3), (4, 5)])   # nodes 4-5 are a piece of their own
    tree = process_tree(coords, graph, np.arange(6) == 0, (0, 0, 0), ISO)
    assert tree.n_primary == 1 and tree.parent[4] == 3 and tree.parent[5] == 4
    assert set(tree.order) == {1, 2, 3, 4, 5}


def test_without_nodes_in_the_soma_the_nearest_is_folded():
    coords = np.array([[0, 0, x] for x in range(5)], float)
    tree = process_tree(coords, _graph(5, [(i, i + 1) for i in range(4)]), np.zeros(5, bool), (0, 0, 0.2), ISO)
    assert tree.parent.tolist() == [FOLDED, SOMA, 1, 2, 3]
