"""Vascular-tree timings: constrained constructive optimization (CCO)."""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from insitu.grid import Grid


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


if __name__ == "__main__":
    print(json.dumps(bench_cco_4000()))
