"""Vascular-tree timings: constrained constructive optimization (CCO)."""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from insitu.grid import Grid
    from insitu.vascular.tree import VesselTree


def _liver_ellipsoid(spacing_mm: float = 1.0) -> tuple[Grid, np.ndarray]:
    """A 1.5 L ellipsoid (semi-axes 100 × 80 × 45 mm) on a grid at ``spacing_mm``."""
    from insitu.grid import Grid

    semi = (100.0, 80.0, 45.0)
    shape = tuple(int(2 * s / spacing_mm) + 6 for s in semi[::-1])
    origin = tuple(-(n - 1) * spacing_mm / 2.0 for n in shape[::-1])
    grid = Grid(shape=shape, spacing_mm=(spacing_mm,) * 3, origin_mm=origin)
    z, y, x = grid.axis_coordinates_mm()
    mask = (x[None, None, :] / semi[0]) ** 2 + (y[None, :, None] / semi[1]) ** 2 + (
        z[:, None, None] / semi[2]
    ) ** 2 <= 1.0
    return grid, mask


def bench_cco_4000(repeats: int = 3) -> dict[str, float]:
    """Median time to grow one portal-vein-like tree (root radius 7 mm) with 4000 terminals in a
    1.5 L liver-sized ellipsoid at 1 mm, after a warm-up run (numba compilation)."""
    from insitu.vascular.generate import TreeSpec, generate_trees

    grid, mask = _liver_ellipsoid()
    spec = TreeSpec("portal_vein", "portal_vein", (20.0, 10.0, -40.0), 7.0, 4000, (0.0, 0.0, -10.0))
    generate_trees(mask, grid, [TreeSpec("warm", "portal_vein", spec.root_mm, 7.0, 50)], seed=0)
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        (tree,) = generate_trees(mask, grid, [spec], seed=seed)
        times.append(time.perf_counter() - t0)
        if tree.terminals.size != 4000:
            raise RuntimeError(f"CCO benchmark tree has {tree.terminals.size} terminals, not 4000")
    return {"cco_4000_s": statistics.median(times)}


def random_binary_tree(n_segments: int, seed: int = 0) -> VesselTree:
    """A random binary tree with ``n_segments`` segments (leaves split at random, Murray radii, 1–3 mm segments).

    Built in numpy so the flow benchmark does not depend on the CCO generator's speed; its topology (deep,
    unbalanced) is harder for a sparse solver than a symmetric tree.
    """
    from insitu.vascular.tree import VesselTree

    if n_segments % 2 == 0:
        n_segments += 1  # root segment + pairs of daughters
    n = n_segments + 1
    rng = np.random.default_rng(seed)
    parent = np.full(n, -1, dtype=np.int64)
    parent[1] = 0
    leaves = [1]
    nxt = 2
    while nxt + 1 < n:
        pick = int(rng.integers(len(leaves)))
        leaf = leaves[pick]
        leaves[pick] = nxt
        leaves.append(nxt + 1)
        parent[nxt] = parent[nxt + 1] = leaf
        nxt += 2
    tree = VesselTree(points_mm=np.zeros((n, 3)), parent=parent, radius_mm=np.ones(n))
    # Murray radii from the terminal counts below each segment; points from random 1–3 mm steps
    order = tree.order
    count = np.zeros(n)
    count[tree.terminals] = 1.0
    for node in order[::-1][:-1]:
        count[parent[node]] += count[node]
    radius = 2.0 * (count / count[1]) ** (1.0 / 3.0)
    radius[0] = radius[1]
    step = rng.normal(size=(n, 3))
    step *= (rng.uniform(1.0, 3.0, n) / np.linalg.norm(step, axis=1))[:, None]
    points = np.zeros((n, 3))
    for node in order[1:]:
        points[node] = points[parent[node]] + step[node]
    return VesselTree(points_mm=points, parent=parent, radius_mm=radius, name="random", kind="hepatic_artery")


def bench_flow_1e5(repeats: int = 5) -> dict[str, float]:
    """Median time of one steady Poiseuille solve (Fåhræus–Lindqvist viscosity, 100 → 60 mmHg) on a tree with
    1e5 segments, and the ratio to scipy's generic sparse solve of the same system (COLAMD ordering, the
    obvious way), which fills in."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    from insitu.vascular.flow import solve_flow

    tree = random_binary_tree(100_000)
    solve_flow(tree)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        solution = solve_flow(tree)
        times.append(time.perf_counter() - t0)
    if solution.max_relative_imbalance() > 1e-10:
        raise RuntimeError(f"flow benchmark lost mass: {solution.max_relative_imbalance():.2e}")
    ours = statistics.median(times)
    # peer: the same conductance matrix, assembled in node order and solved with default ordering
    seg = np.flatnonzero(tree.parent >= 0)
    g = 1.0 / solution.resistance_pa_s_m3[seg]
    up = tree.parent[seg]
    n = tree.n_nodes
    held = np.zeros(n, dtype=bool)
    held[0] = True
    held[tree.terminals] = True
    diag = np.zeros(n)
    np.add.at(diag, up, g)
    np.add.at(diag, seg, g)
    matrix = sp.csc_matrix(
        (
            np.concatenate([diag, -g, -g]),
            (np.concatenate([np.arange(n), up, seg]), np.concatenate([np.arange(n), seg, up])),
        ),
        shape=(n, n),
    )
    free = np.flatnonzero(~held)
    reduced = matrix[free][:, free].tocsc()
    rhs = -(matrix[free][:, held] @ solution.pressure_pa[held])
    t0 = time.perf_counter()
    peer = spsolve(reduced, rhs)
    peer_s = time.perf_counter() - t0
    if not np.allclose(peer, solution.pressure_pa[free], rtol=1e-9):
        raise RuntimeError("flow benchmark: the generic solve disagrees with solve_flow")
    return {"flow_1e5_s": ours, "flow_1e5_generic_spsolve_ratio": peer_s / ours}


if __name__ == "__main__":
    print(json.dumps({**bench_cco_4000(), **bench_flow_1e5()}))
