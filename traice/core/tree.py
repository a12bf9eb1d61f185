"""A cell's skeleton as a tree hanging from its soma, as morphometry tools (NeuroM, MorphIO, navis) read one.

A voxel skeleton is a graph: it runs through the soma, may close loops, and
may come in pieces. Morphometry wants a tree with the soma as its root and one
subtree per primary process. :func:`process_tree` makes that tree, the same
way every time:

- skeleton nodes inside the soma are folded into it (they are not process);
- each connected piece of what remains that touches the soma is one primary
  process, rooted at its node next to the soma that lies nearest the soma
  centre;
- each piece is walked breadth-first from its root, neighbours in index order,
  so a loop is cut where the walk first closes it;
- a piece that does not touch the soma is attached to the tree at the node that
  lies nearest to it (or to the soma, when that is nearer).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

SOMA = -1
"""Parent of the first node of a primary process."""
FOLDED = -2
"""Parent value of a skeleton node inside the soma: folded into the soma, not a node of the tree."""


@dataclass(frozen=True)
class ProcessTree:
    """``coords`` (N, 3) skeleton nodes in voxels; ``parent`` (N,) each node's parent node index, or
    :data:`SOMA` / :data:`FOLDED`; ``order`` the tree's nodes, each after its parent; ``spacing`` µm per voxel."""

    coords: np.ndarray
    parent: np.ndarray
    order: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def n_primary(self) -> int:
        """Primary processes: subtrees leaving the soma."""
        return int(np.count_nonzero(self.parent == SOMA))

    def length_um(self) -> float:
        """Total length of the processes (µm): every edge between two process nodes. The step from the
        soma centre to a primary process's first node is not process, as NeuroM counts it."""
        child = np.flatnonzero(self.parent >= 0)
        steps = (self.coords[child] - self.coords[self.parent[child]]) * np.asarray(self.spacing)
        return float(np.linalg.norm(steps, axis=1).sum())


def process_tree(coords: np.ndarray, graph: csr_matrix, inside: np.ndarray, soma: Sequence[float],
                 spacing: Sequence[float]) -> ProcessTree:
    """The tree of a skeleton: ``coords`` (N, 3) node voxels, ``graph`` (N, N) their adjacency, ``inside`` (N,)
    bool the nodes inside the soma, ``soma`` the soma centre (voxels). With no node inside the soma, the node
    nearest its centre is folded into it."""
    coords = np.asarray(coords, dtype=float)
    sp = np.asarray(spacing, dtype=float)
    n = len(coords)
    graph = csr_matrix(graph)
    inside = np.asarray(inside, bool).copy()
    to_soma = np.linalg.norm((coords - np.asarray(soma, dtype=float)) * sp, axis=1)
    if n and not inside.any():
        inside[np.argmin(to_soma)] = True
    parent = np.full(n, FOLDED)
    order: list[int] = []
    outside = np.flatnonzero(~inside)
    n_pieces, piece = connected_components(graph[outside][:, outside], directed=False)
    touches = np.array([inside[graph.indices[graph.indptr[i]:graph.indptr[i + 1]]].any() for i in outside], bool)
    attached = np.zeros(n_pieces, bool)
    attached[piece[touches]] = True

    def walk(root: int, up: int) -> None:
        parent[root] = up
        queue = deque([root])
        while queue:
            node = queue.popleft()
            order.append(node)
            for nb in graph.indices[graph.indptr[node]:graph.indptr[node + 1]]:
                if not inside[nb] and parent[nb] == FOLDED:  # not yet in the tree
                    parent[nb] = node
                    queue.append(nb)

    roots = []
    for k in np.flatnonzero(attached):
        next_to_soma = outside[(piece == k) & touches]
        roots.append(int(next_to_soma[np.lexsort((next_to_soma, to_soma[next_to_soma]))[0]]))
    for root in sorted(roots):
        walk(root, SOMA)
    for p in sorted((outside[piece == k] for k in np.flatnonzero(~attached)), key=lambda p: int(p.min())):
        placed = np.asarray(order, int)
        gaps = np.linalg.norm((coords[p][:, None] - coords[placed][None]) * sp, axis=2) if len(placed) else None
        if gaps is not None and gaps.min() < to_soma[p].min():
            i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
            walk(int(p[i]), int(placed[j]))
        else:
            walk(int(p[np.argmin(to_soma[p])]), SOMA)
    return ProcessTree(coords, parent, np.asarray(order, int), tuple(float(s) for s in sp))
