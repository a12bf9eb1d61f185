"""A skeleton image as a graph of its voxels, cut into branches between its nodes (tips and junctions).

Each voxel of the skeleton is a vertex, joined to its 26 neighbours by edges
as long as the step between their centres (µm). Where junction voxels touch
each other, only the shortest tree joining them is kept (a minimum spanning
tree), so a clump of junction voxels is not a web of tiny loops. A *branch*
is the run of voxels from a node (a tip: one neighbour; a junction: three or
more) to the next node; a closed loop without a node is one branch from a
voxel back to itself. Branches are found in a fixed order: nodes by voxel
index, each node's unvisited edges by neighbour index, then loops.

This is the decomposition of skan's ``Skeleton`` and ``summarize`` (the
tests check the branch tables equal skan 0.13's on random and cell
skeletons), in numpy and scipy. skan walks its branches in numba-compiled
code that cannot be cached on disk, so every morphology job imported numba
and compiled that code again: 3 to 3.5 s of a job on the demo (docs/scale.md,
"Morphology without a compiler").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph
from skimage.morphology import skeletonize

from traice.core.voxel_graph import neighbour_pairs

TIP_TIP, TIP_JUNCTION, JUNCTION_JUNCTION, LOOP = 0, 1, 2, 3
"""Branch types, as skan numbers them."""


def adjacency(image: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, sparse.csr_matrix]:
    """The skeleton voxels of ``image`` (Z, Y, X; nonzero = skeleton) in raster order, ``(N, 3)`` int, and
    their adjacency ``(N, N)``: the µm step between 26-neighbours, junction clumps cut to their
    minimum spanning tree."""
    coords, first, second, step_um = neighbour_pairs(np.asarray(image) != 0, spacing)
    n = len(coords)
    graph = sparse.coo_matrix((np.concatenate([step_um, step_um]),
                               (np.concatenate([first, second]), np.concatenate([second, first]))), shape=(n, n)).tocsr()
    graph.sort_indices()
    return coords, _junction_trees(graph)


def _junction_trees(graph: sparse.csr_matrix) -> sparse.csr_matrix:
    """``graph`` without the edges between junction voxels (degree ≥ 3) that their minimum spanning tree leaves out."""
    junction = np.diff(graph.indptr) >= 3
    coo = graph.tocoo()
    between = junction[coo.row] & junction[coo.col]
    if not between.any():
        return graph
    among = sparse.csr_matrix((coo.data[between], (coo.row[between], coo.col[between])), shape=graph.shape)
    tree = csgraph.minimum_spanning_tree(among)
    tree = (tree + tree.T).tocsr()
    drop = among - among.multiply(tree.astype(bool))  # junction-junction edges outside the tree
    pruned = (graph - drop).tocsr()
    pruned.eliminate_zeros()
    pruned.sort_indices()
    return pruned


class SkeletonGraph:
    """A skeleton image (Z, Y, X) of ``spacing`` µm voxels as :func:`adjacency` and its branches.

    ``coordinates`` (N, 3) voxels, ``graph`` (N, N) µm steps, ``degrees`` (N,) neighbours per voxel,
    ``paths`` the voxel indices of each branch from its first node to its last, ``spacing`` (3,) µm."""

    def __init__(self, image: np.ndarray, spacing: Sequence[float]):
        self.image = np.asarray(image) != 0
        self.spacing = np.asarray(spacing, dtype=float)
        self.coordinates, self.graph = adjacency(self.image, self.spacing)
        self.degrees = np.diff(self.graph.indptr)
        self.paths = self._walk_branches()

    def _walk_branches(self) -> list[np.ndarray]:
        indptr, indices = self.graph.indptr.tolist(), self.graph.indices.tolist()
        degree = self.degrees.tolist()
        visited: set[tuple[int, int]] = set()

        def walk(start: int, first: int) -> np.ndarray:
            path, here, there = [start], start, first
            while (min(here, there), max(here, there)) not in visited:
                visited.add((min(here, there), max(here, there)))
                path.append(there)
                if degree[there] != 2 or there == start:
                    break
                a, b = indices[indptr[there]:indptr[there + 1]]
                here, there = there, (a if a != here else b)
            return np.asarray(path, dtype=np.int64)

        paths = []
        for node, d in enumerate(degree):  # from every tip and junction, along each edge not yet walked
            if d == 1 or d > 2:
                for nb in indices[indptr[node]:indptr[node + 1]]:
                    if (min(node, nb), max(node, nb)) not in visited:
                        paths.append(walk(node, nb))
        for node, d in enumerate(degree):  # what is left are loops without a node
            if d > 0:
                nb = indices[indptr[node]]
                if (min(node, nb), max(node, nb)) not in visited:
                    paths.append(walk(node, nb))
        return paths

    def branches(self) -> pd.DataFrame:
        """One row per branch, in :attr:`paths` order: ``skeleton_id`` (connected piece), ``node_id_src``,
        ``node_id_dst`` (voxel indices of its ends), ``branch_distance`` (µm along it), ``branch_type``
        (:data:`TIP_TIP`, :data:`TIP_JUNCTION`, :data:`JUNCTION_JUNCTION`, :data:`LOOP`) and
        ``euclidean_distance`` (µm between its ends)."""
        _, piece = csgraph.connected_components(self.graph, directed=False)
        src = np.array([p[0] for p in self.paths], dtype=np.int64)
        dst = np.array([p[-1] for p in self.paths], dtype=np.int64)
        along = np.zeros(len(self.paths))
        if self.paths:  # each branch's steps summed: the steps between one branch's end and the next's start dropped
            flat = np.concatenate(self.paths)
            starts = np.cumsum([0] + [len(p) for p in self.paths[:-1]])
            step = np.append(np.linalg.norm(np.diff(self.coordinates[flat], axis=0) * self.spacing, axis=1), 0.0)
            step[starts[1:] - 1] = 0.0
            along = np.add.reduceat(step, starts)
        kind = np.full(len(src), JUNCTION_JUNCTION)
        tip_src, tip_dst = self.degrees[src] == 1, self.degrees[dst] == 1
        kind[tip_src | tip_dst] = TIP_JUNCTION
        kind[tip_src & tip_dst] = TIP_TIP
        kind[src == dst] = LOOP
        ends = (self.coordinates[dst] - self.coordinates[src]) * self.spacing
        return pd.DataFrame({
            "skeleton_id": piece[src], "node_id_src": src, "node_id_dst": dst, "branch_distance": along,
            "branch_type": kind, "euclidean_distance": np.sqrt((ends ** 2).sum(axis=1)),
        })

    def without(self, branches: Sequence[int]) -> "SkeletonGraph":
        """The skeleton with the voxels of ``branches`` (indices into :attr:`paths`) removed, junctions kept,
        thinned again (what is left may have lost its one-voxel width where a branch left a junction)."""
        image = self.image.copy()
        for i in branches:
            path = self.paths[i]
            gone = path[self.degrees[path] <= 2]
            image[tuple(self.coordinates[gone].T)] = False
        return SkeletonGraph(skeletonize(image) > 0, self.spacing)
