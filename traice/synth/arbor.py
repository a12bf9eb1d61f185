"""Random microglia-like arbors as trees (nodes in µm, radii, parent indices).

Primary processes leave the soma in random directions and wander as
persistent random walks (tortuous), tapering towards their tips and branching
stochastically up to a maximum order, all within the arbor radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArborParams:
    primary: tuple[int, int] = (5, 8)          # number of primary processes (min, max)
    step_um: float = 1.0                        # centre-line step
    persistence: float = 0.8                    # 0 = random walk, 1 = straight
    branch_prob: float = 0.12                   # per step
    max_order: int = 4
    radius_um: tuple[float, float] = (0.55, 0.9)  # primary process radius at the soma
    tip_radius_um: float = 0.25
    z_damping: float = 0.6                      # flatten arbors a little along z


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)


def random_arbor(
    rng: np.random.Generator,
    soma_um: np.ndarray,
    soma_radius_um: float,
    arbor_radius_um: float,
    params: ArborParams = ArborParams(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grow one arbor around ``soma_um``.

    Returns ``points`` (N, 3) µm, ``radii`` (N,) µm and ``parents`` (N,) with node 0
    the soma (radius ``soma_radius_um``, parent -1).
    """
    points = [np.asarray(soma_um, dtype=float)]
    radii = [soma_radius_um]
    parents = [-1]
    damp = np.array([params.z_damping, 1.0, 1.0])
    # (parent node, direction, start radius, length budget, order)
    stack = []
    for _ in range(int(rng.integers(params.primary[0], params.primary[1] + 1))):
        d = _unit(rng.normal(size=3) * damp)
        budget = rng.uniform(0.55, 1.0) * arbor_radius_um * 1.3
        stack.append((0, d, rng.uniform(*params.radius_um), budget, 1))
    while stack:
        parent, d, r0, budget, order = stack.pop()
        n_steps = max(2, int(budget / params.step_um))
        pos = points[parent] + d * (soma_radius_um * 0.6 if parent == 0 else 0.0)
        for i in range(n_steps):
            outward = _unit(pos - points[0])
            noise = rng.normal(size=3) * damp
            d = _unit(params.persistence * d + (1 - params.persistence) * _unit(noise) + 0.1 * outward)
            pos = pos + d * params.step_um
            if np.linalg.norm(pos - points[0]) > arbor_radius_um:
                break
            frac = (i + 1) / n_steps
            r = r0 + (params.tip_radius_um - r0) * frac
            points.append(pos.copy())
            radii.append(max(r, params.tip_radius_um))
            parents.append(parent)
            parent = len(points) - 1
            if order < params.max_order and i > 2 and i < n_steps - 3 and rng.random() < params.branch_prob:
                side = _unit(np.cross(d, rng.normal(size=3)))
                angle = rng.uniform(np.pi / 6, np.pi / 2.5)
                nd = _unit(np.cos(angle) * d + np.sin(angle) * side)
                stack.append((parent, nd, max(r * 0.75, params.tip_radius_um), (n_steps - i) * params.step_um * 0.7, order + 1))
    return np.array(points), np.array(radii), np.array(parents)
