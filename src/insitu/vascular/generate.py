"""Synthetic vessel trees by constrained constructive optimization (CCO) inside an organ mask.

After Schreiner & Buxbaum 1993 and Karch et al. 1999: terminals are added one at a time at random
points of the domain (rejected when closer than a shrinking threshold to any vessel); each joins
the best of the k nearest segments of its tree, the new bifurcation being placed where the total
lumen volume Σπr²l is least. All terminals carry the same flow and radii follow Murray's law,
r ∝ Q^(1/γ), so r₀^γ = r₁^γ + r₂^γ holds exactly at every bifurcation and the optimal bifurcation
is a weighted Fermat point (solved by Weiszfeld's iteration). Several trees grow interleaved in
one domain; they keep ``r₁ + r₂ + clearance`` apart, trees of the same kind (e.g. three hepatic
veins) compete for territory, and every centreline stays inside the mask. A trunk whose root
lies outside the mask (an inlet at the hilum) may run outside until it first enters it.
A demand map (relative terminal density, as in VascuSynth) makes terminals denser where tissue needs
more blood; finished trees passed as obstacles are kept clear of but not grown. After the radii of a
grown tree change (``insitu.vascular.balance``), :func:`prune_overlaps` removes branches that now touch
an obstacle.

The hot loop is one numba kernel working on flat arrays; Python only samples random numbers
(a numpy Generator, so a seed fixes the result), reports progress and builds the trees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numba
import numpy as np
import yaml

from insitu.errors import StructureError
from insitu.grid import Grid
from insitu.progress import Progress, ensure_progress
from insitu.vascular.tree import VesselKind, VesselTree

_RANDOM_BLOCK = 1 << 16  # uniform numbers handed to the kernel per refill
_SAFETY = 1.25  # radii are inflated this much in collision checks (radii drift as trees grow)
_DECAY = 0.9  # distance-threshold shrink factor after every ``_N_TOSS`` failed attempts (Karch)
_N_TOSS = 10
_MAX_FAIL = 1500  # consecutive failed attempts before a tree stops growing
# Obstacle trees store their fixed radii in the growth arrays: r = r_max·(nterm/n_done)^(1/γ) with γ = 1,
# n_done = 2^50 and nterm = round(2^50·r/r_max), exact to ~1e-15 (keeps the hot radius lookup branch-free).
_OBSTACLE_COUNT = 1 << 50

# status codes returned by the kernel
_DONE, _CHUNK, _NEED_RANDOM, _NEED_SPACE, _FIRST_FAILED = 0, 1, 2, 3, 4


@dataclass
class TreeSpec:
    """One tree to grow: its root (inlet, or outlet for veins), calibre and terminal count.

    ``first_target_mm`` is where the trunk first heads (the first terminal); ``None`` picks a
    random point. Choose ``n_terminals ≈ (root_radius / terminal_radius)^γ`` for a given
    terminal calibre.
    """

    name: str
    kind: VesselKind | str
    root_mm: Sequence[float]
    root_radius_mm: float
    n_terminals: int
    first_target_mm: Sequence[float] | None = None
    murray_exponent: float = 3.0


def load_anatomy() -> dict[str, Any]:
    """The calibre table ``anatomy.yaml`` (values with sources and status) as a dictionary."""
    text = resources.files("insitu.vascular").joinpath("anatomy.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def generate_trees(
    domain_mask: np.ndarray,
    grid: Grid,
    specs: Sequence[TreeSpec],
    seed: int | np.random.Generator,
    clearance_mm: float = 1.0,
    progress: Progress | None = None,
    *,
    k_nearest: int = 12,
    demand: np.ndarray | None = None,
    obstacles: Sequence[VesselTree] = (),
) -> list[VesselTree]:
    """Grow the trees of ``specs`` together inside ``domain_mask`` (a bool mask on ``grid``).

    Returns one :class:`VesselTree` per spec, nodes numbered depth-first (parents first), flows
    relative to the inlet. Trees of different kinds keep ``clearance_mm`` between walls; trees
    of the same kind also split the domain between them. Deterministic for a given ``seed``.
    A tree that finds no more room stops short of ``n_terminals`` (the final progress message
    names it); rarely, a branch that ends too close to another tree is pruned.

    ``demand`` (a non-negative float volume on ``grid``, like VascuSynth's demand map) is the
    relative terminal density: candidates are drawn with probability ∝ demand and the Karch
    distance threshold scales with the local spacing (mean demand / local demand)^(1/3), so with
    equal terminal flows a region's flow is ∝ its summed demand. ``obstacles`` are finished trees
    (their own radii) that the new trees keep ``clearance_mm`` away from without growing them.
    """
    report = ensure_progress(progress)
    mask = np.ascontiguousarray(np.asarray(domain_mask, dtype=np.bool_))
    grid.require_array(mask, "domain mask")
    specs = list(specs)
    if not specs:
        raise StructureError("no tree to grow", "give at least one TreeSpec")
    if not (math.isfinite(clearance_mm) and clearance_mm >= 0.0):
        raise StructureError(f"clearance_mm {clearance_mm} is invalid", "give ≥ 0 millimetres")
    if k_nearest < 1:
        raise StructureError(f"k_nearest {k_nearest} must be ≥ 1", "give e.g. 12")
    inside = np.flatnonzero(mask.reshape(-1)).astype(np.int64)
    if inside.size == 0:
        raise StructureError("the domain mask is empty", "give the organ mask to grow trees in")
    spacing = np.asarray(grid.spacing_mm, dtype=np.float64)
    volume = float(inside.size * np.prod(spacing))
    n_trees = len(specs)
    inside, cdf, dscale = _demand_sampling(demand, mask, grid, inside)
    obs_pos, obs_parent, obs_radius, obs_tree, obs_roots = _obstacle_arrays(obstacles)
    n_obs = len(obs_roots)
    n_all = n_trees + n_obs

    roots = np.zeros((n_trees, 3))
    firsts = np.zeros((n_all, 3))
    has_first = np.zeros(n_all, dtype=np.int64)
    targets = np.zeros(n_all, dtype=np.int64)
    rroot = np.zeros(n_all)
    gamma = np.full(n_all, 3.0)
    groups = np.zeros(n_all, dtype=np.int64)
    kinds = [VesselKind.parse(s.kind) for s in specs]
    for t, spec in enumerate(specs):
        roots[t] = _point(spec.root_mm, f"root_mm of tree {spec.name!r}")
        if not (math.isfinite(spec.root_radius_mm) and spec.root_radius_mm > 0.0):
            raise StructureError(
                f"root_radius_mm {spec.root_radius_mm} of tree {spec.name!r} is invalid",
                "give a positive radius in millimetres",
            )
        if int(spec.n_terminals) < 1:
            raise StructureError(f"tree {spec.name!r} asks for {spec.n_terminals} terminals", "give at least 1")
        if not (math.isfinite(spec.murray_exponent) and spec.murray_exponent > 1.0):
            raise StructureError(
                f"murray_exponent {spec.murray_exponent} of tree {spec.name!r} is invalid",
                "give an exponent > 1 (Murray's law: 3)",
            )
        if spec.first_target_mm is not None:
            firsts[t] = _point(spec.first_target_mm, f"first_target_mm of tree {spec.name!r}")
            has_first[t] = 1
        targets[t] = int(spec.n_terminals)
        rroot[t] = float(spec.root_radius_mm)
        gamma[t] = float(spec.murray_exponent)
        groups[t] = list(VesselKind).index(kinds[t]) if kinds[t] != VesselKind.OTHER else 100 + t
    for j in range(n_obs):  # obstacles: never grown (target 0), never rivals (a group of their own)
        rroot[n_trees + j] = float(obs_radius[obs_tree == j].max())
        gamma[n_trees + j] = 1.0
        groups[n_trees + j] = -1 - j

    # spatial hash over the domain (and roots) in world coordinates
    lo, hi = _world_box(mask, grid, np.vstack([roots, firsts[:n_trees][has_first[:n_trees] == 1]]))
    n_total = int(targets.sum())
    spacing_per_terminal = (volume / n_total) ** (1.0 / 3.0)
    cell = max(0.5 * spacing_per_terminal, float(spacing.max()))
    while np.prod(np.ceil((hi - lo) / cell)) > 2_000_000:
        cell *= 1.25
    dims = np.maximum(np.ceil((hi - lo) / cell).astype(np.int64), 1)
    diagonal = float(np.linalg.norm(hi - lo))
    per_segment = math.ceil(diagonal / (0.5 * cell)) + 2
    n_nodes_cap = int(2 * n_total + 2 * n_trees + 2) + obs_pos.shape[0]
    entries_cap = max(4 * per_segment, n_total * 12 + 3 * per_segment) + _hash_entries(obs_pos, obs_parent, cell)

    pos = np.zeros((n_nodes_cap, 3))
    parent = np.full(n_nodes_cap, -1, dtype=np.int64)
    child = np.full((n_nodes_cap, 2), -1, dtype=np.int64)
    tree_of = np.zeros(n_nodes_cap, dtype=np.int64)
    nterm = np.zeros(n_nodes_cap, dtype=np.int64)
    for t in range(n_trees):
        pos[t] = roots[t]
        tree_of[t] = t
    root_node = np.arange(n_all, dtype=np.int64)
    n_done = np.zeros(n_all, dtype=np.int64)
    active = np.ones(n_all, dtype=np.int64)
    active[n_trees:] = 0
    n_done[n_trees:] = _OBSTACLE_COUNT
    fails = np.zeros(n_all, dtype=np.int64)
    dfac = np.ones(n_all)
    head = np.full(int(np.prod(dims)), -1, dtype=np.int64)
    nxt = np.full(entries_cap, -1, dtype=np.int64)
    eseg = np.zeros(entries_cap, dtype=np.int64)
    isbig = np.zeros(n_nodes_cap, dtype=np.bool_)
    big = np.zeros(n_nodes_cap, dtype=np.int64)
    bigr = np.zeros(n_nodes_cap)
    seen = np.zeros(n_nodes_cap, dtype=np.int64)
    # counters: n_nodes, n_entries, stamp, n_big, random position, failed tree, terminals
    cnt = np.array([n_trees, 0, 0, 0, 0, -1, 0], dtype=np.int64)
    if n_obs:
        m = obs_pos.shape[0]
        pos[n_trees : n_trees + m] = obs_pos
        parent[n_trees : n_trees + m] = np.where(obs_parent >= 0, obs_parent + n_trees, -1)
        tree_of[n_trees : n_trees + m] = obs_tree + n_trees
        share = np.rint(obs_radius / rroot[n_trees + obs_tree] * _OBSTACLE_COUNT).astype(np.int64)
        nterm[n_trees : n_trees + m] = np.maximum(share, 1)  # the fixed radius (and > 0: alive)
        root_node[n_trees:] = obs_roots + n_trees
        cnt[0] = n_trees + m
    i2w = np.ascontiguousarray(grid.index_to_world_matrix[:3, :])
    w2i = np.ascontiguousarray(np.linalg.inv(grid.index_to_world_matrix)[:3, :])
    fpar = np.array(
        [
            float(clearance_mm),
            _SAFETY,
            volume,
            0.25 * float(spacing.min()),  # shortest segment a bifurcation may create
            0.0,  # (reserved)
            0.5 * cell,  # radius above which a segment is checked by brute force
            _DECAY,
            cell,
        ]
    )
    ipar = np.array([int(k_nearest), _N_TOSS, _MAX_FAIL, per_segment], dtype=np.int64)

    if n_obs:
        nodes = (pos, parent, child, tree_of, nterm)
        trees = (root_node, n_done, targets, rroot, gamma, groups, active, fails, dfac, firsts, has_first)
        hashd = (head, nxt, eseg, lo, dims, isbig, big, seen, bigr)
        _hash_range(n_trees, n_trees + obs_pos.shape[0], nodes, hashd, cnt, cell)
        _refresh_big(nodes, trees, hashd, cnt, fpar[5])

    rng = np.random.default_rng(seed)
    rand = rng.random(_RANDOM_BLOCK)
    chunk = max(1, n_total // 50)
    report("cco", 0.0, f"growing {n_trees} tree(s), {n_total} terminals")
    while True:
        nodes = (pos, parent, child, tree_of, nterm)
        trees = (root_node, n_done, targets, rroot, gamma, groups, active, fails, dfac, firsts, has_first)
        hashd = (head, nxt, eseg, lo, dims, isbig, big, seen, bigr)
        dom = (mask, w2i, i2w, inside, cdf, dscale)
        stop = min(int(cnt[6]) + chunk, n_total)
        status = _grow(nodes, trees, hashd, dom, rand, cnt, fpar, ipar, stop)
        if status == _DONE:
            break
        if status == _NEED_RANDOM:
            rand = rng.random(_RANDOM_BLOCK)
            cnt[4] = 0
        elif status == _NEED_SPACE:
            nxt = np.concatenate([nxt, np.full(nxt.size, -1, dtype=np.int64)])
            eseg = np.concatenate([eseg, np.zeros(eseg.size, dtype=np.int64)])
        elif status == _FIRST_FAILED:
            spec = specs[int(cnt[5])]
            raise StructureError(
                f"the trunk of tree {spec.name!r} from {tuple(np.round(roots[cnt[5]], 1))} to "
                f"its first target {tuple(np.round(firsts[cnt[5]], 1))} mm leaves the domain or "
                "runs into another tree",
                "move first_target_mm (or the root) so the straight trunk stays inside the organ "
                "and clear of the other trunks",
            )
        report("cco", float(cnt[6]) / n_total, f"{int(cnt[6])} of {n_total} terminals")

    nodes = (pos, parent, child, tree_of, nterm)
    trees = (root_node, n_done, targets, rroot, gamma, groups, active, fails, dfac, firsts, has_first)
    hashd = (head, nxt, eseg, lo, dims, isbig, big, seen, bigr)
    _repair(nodes, trees, hashd, cnt, fpar)
    short = [
        f"{spec.name} {int(n_done[t])}/{spec.n_terminals}" for t, spec in enumerate(specs) if n_done[t] < targets[t]
    ]
    note = f" (domain full: {', '.join(short)})" if short else ""
    report("cco", 1.0, f"{int(n_done[:n_trees].sum())} terminals in {n_trees} tree(s){note}")

    out = []
    for t, spec in enumerate(specs):
        if n_done[t] == 0:
            raise StructureError(
                f"tree {spec.name!r} could not place a single terminal in the domain",
                "check that the root lies at or inside the organ mask and the mask is not tiny",
            )
        out.append(_extract(t, spec.name, kinds[t], nodes, trees))
    return out


def prune_overlaps(tree: VesselTree, obstacles: Sequence[VesselTree], clearance_mm: float = 0.0) -> VesselTree:
    """``tree`` without the branches whose walls come closer than ``clearance_mm`` to an obstacle's.

    A segment of ``tree`` closer than r + r_obstacle + clearance to any obstacle segment is removed
    with everything downstream (its upstream node becomes a pass-through). Used after the radii of a
    grown tree change (e.g. :func:`insitu.vascular.balance.balance_radii`); returns ``tree`` itself
    when nothing overlaps. The root segment is never removed: an overlapping trunk is an error.
    """
    if not (math.isfinite(clearance_mm) and clearance_mm >= 0.0):
        raise StructureError(f"clearance_mm {clearance_mm} is invalid", "give ≥ 0 millimetres")
    tree.validate()
    pos, parent, radius, _, _ = _obstacle_arrays(obstacles)
    seg = np.flatnonzero(tree.parent >= 0)
    oseg = np.flatnonzero(parent >= 0)
    if seg.size == 0 or oseg.size == 0:
        return tree
    hit = np.zeros(seg.size, dtype=np.bool_)
    _overlapping(
        tree.points_mm[tree.parent[seg]],
        tree.points_mm[seg],
        tree.radius_mm[seg],
        pos[parent[oseg]],
        pos[oseg],
        radius[oseg],
        float(clearance_mm),
        hit,
    )
    if not hit.any():
        return tree
    bad = seg[hit]
    if np.any(tree.parent[bad] == 0):
        raise StructureError(
            f"the trunk of vessel tree {tree.name!r} overlaps an obstacle",
            "move its root or first target clear of the other trees",
        )
    drop = np.zeros(tree.n_nodes, dtype=np.bool_)
    drop[bad] = True
    for n in tree.order[1:]:  # parents first: a dropped segment takes its subtree along
        drop[n] |= drop[tree.parent[n]]
    keep = np.flatnonzero(~drop)
    index = np.full(tree.n_nodes, -1, dtype=np.int64)
    index[keep] = np.arange(keep.size)
    new_parent = np.where(tree.parent[keep] >= 0, index[tree.parent[keep]], -1)
    pruned = VesselTree(
        points_mm=tree.points_mm[keep],
        parent=new_parent,
        radius_mm=tree.radius_mm[keep],
        flow=None,
        name=tree.name,
        kind=tree.kind,
    )
    return pruned


def optimal_bifurcation_point(
    parent_mm: Sequence[float],
    child_mm: Sequence[float],
    terminal_mm: Sequence[float],
    flow_split: tuple[float, float],
    murray_exponent: float = 3.0,
) -> np.ndarray:
    """The bifurcation point CCO uses: least volume Σ r²·l with r ∝ Q^(1/γ) (a weighted Fermat point).

    ``flow_split`` is the (child, terminal) share of the parent's flow.
    """
    w_child, w_terminal = (float(f) ** (2.0 / murray_exponent) for f in flow_split)
    out = np.empty(3)
    _fermat_point(
        np.asarray(parent_mm, float),
        np.asarray(child_mm, float),
        np.asarray(terminal_mm, float),
        1.0,
        w_child,
        w_terminal,
        1e-6,
        out,
    )
    return out


def _point(value: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise StructureError(f"{what} {value!r} is not a finite 3-D point", "give (x, y, z) mm LPS")
    return arr


def _demand_sampling(
    demand: np.ndarray | None, mask: np.ndarray, grid: Grid, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels to draw candidates from, their cumulative demand and threshold scale (mean/local)^(1/3).

    Without a demand map every mask voxel is drawn with equal chance (empty CDF: the kernel's
    uniform path, unchanged). With one, only voxels of positive demand are kept.
    """
    if demand is None:
        return inside, np.zeros(0), np.zeros(0)
    values = np.asarray(demand)
    if values.shape != tuple(grid.shape):
        raise StructureError(
            f"demand map has shape {values.shape}, the grid {tuple(grid.shape)}",
            "give one non-negative value per voxel of the grid, [k, j, i]",
        )
    values = values.astype(np.float64, copy=False).reshape(-1)
    inner = values[inside]
    if not np.all(np.isfinite(inner)) or np.any(inner < 0.0):
        raise StructureError(
            "the demand map has negative or non-finite values inside the domain",
            "give a finite, non-negative relative terminal density",
        )
    if not np.any(inner > 0.0):
        raise StructureError("the demand map is zero everywhere inside the domain", "give positive demand somewhere")
    keep = inner > 0.0
    mean = float(inner.mean())
    cdf = np.cumsum(inner[keep])
    return inside[keep], cdf, (mean / inner[keep]) ** (1.0 / 3.0)


def _obstacle_arrays(
    obstacles: Sequence[VesselTree],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Obstacle trees stacked: points, parents (stacked indices), radii, tree index per node, roots."""
    pos, parent, radius, tree, roots = [], [], [], [], []
    offset = 0
    for j, obstacle in enumerate(obstacles):
        if not isinstance(obstacle, VesselTree):
            raise StructureError(
                f"obstacle {j} is a {type(obstacle).__name__}, not a VesselTree",
                "give already-built vessel trees as obstacles",
            )
        obstacle.validate()
        n = obstacle.n_nodes
        pos.append(obstacle.points_mm)
        parent.append(np.where(obstacle.parent >= 0, obstacle.parent + offset, -1))
        radius.append(obstacle.radius_mm)
        tree.append(np.full(n, j, dtype=np.int64))
        roots.append(offset + int(np.flatnonzero(obstacle.parent < 0)[0]))
        offset += n
    if not pos:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros((0, 3)), empty, np.zeros(0), empty, empty
    return (
        np.vstack(pos),
        np.concatenate(parent).astype(np.int64),
        np.concatenate(radius),
        np.concatenate(tree),
        np.asarray(roots, dtype=np.int64),
    )


def _hash_entries(pos: np.ndarray, parent: np.ndarray, cell: float) -> int:
    """Upper bound of the hash entries :func:`_hash_add` writes for these segments."""
    seg = np.flatnonzero(parent >= 0)
    if seg.size == 0:
        return 0
    length = np.linalg.norm(pos[seg] - pos[parent[seg]], axis=1)
    return int(np.sum(np.maximum(1, np.ceil(length / (0.5 * cell))) + 1))


def _world_box(mask: np.ndarray, grid: Grid, extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LPS bounding box of the mask's voxels (edges) and of ``extra`` points, with a margin."""
    kji = np.argwhere(mask)
    lo_kji, hi_kji = kji.min(axis=0), kji.max(axis=0)
    corners = np.array(
        [
            [i, j, k]
            for i in (lo_kji[2] - 0.5, hi_kji[2] + 0.5)
            for j in (lo_kji[1] - 0.5, hi_kji[1] + 0.5)
            for k in (lo_kji[0] - 0.5, hi_kji[0] + 0.5)
        ]
    )
    world = np.vstack([grid.index_to_world(corners), extra])
    margin = float(max(grid.spacing_mm))
    return world.min(axis=0) - margin, world.max(axis=0) + margin


def _extract(t: int, name: str, kind: VesselKind, nodes: tuple, trees: tuple) -> VesselTree:
    """Tree ``t`` from the flat arrays, numbered depth-first from its root."""
    pos, parent, child, nterm = nodes[0], nodes[1], nodes[2], nodes[4]
    root_node, n_done, _, rroot, gamma = trees[:5]
    order: list[int] = []
    stack = [int(root_node[t])]
    while stack:
        n = stack.pop()
        order.append(n)
        for c in (child[n, 1], child[n, 0]):
            if c >= 0 and nterm[c] > 0:
                stack.append(int(c))
    order_arr = np.asarray(order, dtype=np.int64)
    index = np.full(parent.shape[0], -1, dtype=np.int64)
    index[order_arr] = np.arange(order_arr.size)
    new_parent = np.where(parent[order_arr] >= 0, index[parent[order_arr]], -1)
    new_parent[0] = -1
    fraction = nterm[order_arr].astype(np.float64) / float(n_done[t])
    fraction[0] = 1.0
    radius = rroot[t] * fraction ** (1.0 / gamma[t])
    return VesselTree(
        points_mm=pos[order_arr].copy(),
        parent=new_parent,
        radius_mm=radius,
        flow=fraction,
        name=name,
        kind=kind,
        flow_unit="relative",
    )


# ---------------------------------------------------------------------- geometry kernels
@numba.njit(cache=True)
def _dist_point_seg(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    dx, dy, dz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    wx, wy, wz = x[0] - a[0], x[1] - a[1], x[2] - a[2]
    len2 = dx * dx + dy * dy + dz * dz
    t = 0.0
    if len2 > 0.0:
        t = (wx * dx + wy * dy + wz * dz) / len2
        t = min(max(t, 0.0), 1.0)
    ex, ey, ez = wx - t * dx, wy - t * dy, wz - t * dz
    return math.sqrt(ex * ex + ey * ey + ez * ez)


@numba.njit(cache=True)
def _dist_seg_seg(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> float:
    """Shortest distance between segments a0–a1 and b0–b1 (Ericson, robust when parallel)."""
    d1x, d1y, d1z = a1[0] - a0[0], a1[1] - a0[1], a1[2] - a0[2]
    d2x, d2y, d2z = b1[0] - b0[0], b1[1] - b0[1], b1[2] - b0[2]
    rx, ry, rz = a0[0] - b0[0], a0[1] - b0[1], a0[2] - b0[2]
    a = d1x * d1x + d1y * d1y + d1z * d1z
    e = d2x * d2x + d2y * d2y + d2z * d2z
    f = d2x * rx + d2y * ry + d2z * rz
    eps = 1e-14
    if a <= eps and e <= eps:
        s, t = 0.0, 0.0
    elif a <= eps:
        s, t = 0.0, min(max(f / e, 0.0), 1.0)
    else:
        c = d1x * rx + d1y * ry + d1z * rz
        if e <= eps:
            t, s = 0.0, min(max(-c / a, 0.0), 1.0)
        else:
            bb = d1x * d2x + d1y * d2y + d1z * d2z
            denom = a * e - bb * bb
            s = min(max((bb * f - c * e) / denom, 0.0), 1.0) if denom > 1e-12 * a * e else 0.0
            t = (bb * s + f) / e
            if t < 0.0:
                t, s = 0.0, min(max(-c / a, 0.0), 1.0)
            elif t > 1.0:
                t, s = 1.0, min(max((bb - c) / a, 0.0), 1.0)
    ex = rx + d1x * s - d2x * t
    ey = ry + d1y * s - d2y * t
    ez = rz + d1z * s - d2z * t
    return math.sqrt(ex * ex + ey * ey + ez * ez)


@numba.njit(cache=True)
def _norm3(a: np.ndarray, b: np.ndarray) -> float:
    dx, dy, dz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    return math.sqrt(dx * dx + dy * dy + dz * dz)


@numba.njit(cache=True)
def _radius(n: int, nodes: tuple, trees: tuple) -> float:
    tree_of, nterm = nodes[3], nodes[4]
    n_done, rroot, gamma = trees[1], trees[3], trees[4]
    t = tree_of[n]
    if n_done[t] == 0:
        return rroot[t]
    return rroot[t] * (nterm[n] / n_done[t]) ** (1.0 / gamma[t])


@numba.njit(cache=True)
def _cell_range(lo_w: float, hi_w: float, origin: float, cell: float, dim: int) -> tuple:
    c0 = math.floor((lo_w - origin) / cell)
    c1 = math.floor((hi_w - origin) / cell)
    return max(c0, 0), min(c1, dim - 1)


@numba.njit(cache=True)
def _hash_add(n: int, nodes: tuple, hashd: tuple, cnt: np.ndarray, cell: float) -> None:
    """Register segment n in every cell holding one of its points sampled every cell/2."""
    pos, parent = nodes[0], nodes[1]
    head, nxt, eseg, lo, dims = hashd[0], hashd[1], hashd[2], hashd[3], hashd[4]
    a = pos[parent[n]]
    b = pos[n]
    length = _norm3(a, b)
    steps = max(1, math.ceil(length / (0.5 * cell)))
    last = -1
    for i in range(steps + 1):
        f = i / steps
        ci = min(max(math.floor((a[0] + f * (b[0] - a[0]) - lo[0]) / cell), 0), dims[0] - 1)
        cj = min(max(math.floor((a[1] + f * (b[1] - a[1]) - lo[1]) / cell), 0), dims[1] - 1)
        ck = min(max(math.floor((a[2] + f * (b[2] - a[2]) - lo[2]) / cell), 0), dims[2] - 1)
        cid = (ck * dims[1] + cj) * dims[0] + ci
        if cid == last:
            continue
        last = cid
        e = cnt[1]
        eseg[e] = n
        nxt[e] = head[cid]
        head[cid] = e
        cnt[1] = e + 1


@numba.njit(cache=True)
def _hash_range(first: int, last: int, nodes: tuple, hashd: tuple, cnt: np.ndarray, cell: float) -> None:
    """Register the segments ending at nodes first … last − 1 (roots skipped)."""
    parent = nodes[1]
    for n in range(first, last):
        if parent[n] >= 0:
            _hash_add(n, nodes, hashd, cnt, cell)


@numba.njit(cache=True)
def _refresh_big(nodes: tuple, trees: tuple, hashd: tuple, cnt: np.ndarray, r_big: float) -> None:
    """List the live segments thicker than ``r_big`` with their radii (checked one by one, not via cells)."""
    parent, tree_of, nterm = nodes[1], nodes[3], nodes[4]
    n_done, rroot, gamma = trees[1], trees[3], trees[4]
    isbig, big, bigr = hashd[5], hashd[6], hashd[8]
    n_trees = n_done.shape[0]
    thresh = np.empty(n_trees)
    for t in range(n_trees):
        thresh[t] = n_done[t] * (r_big / rroot[t]) ** gamma[t]
    count = 0
    for n in range(cnt[0]):
        flag = parent[n] >= 0 and nterm[n] > 0 and nterm[n] > thresh[tree_of[n]]
        isbig[n] = flag
        if flag:
            big[count] = n
            bigr[count] = _radius(n, nodes, trees)
            count += 1
    cnt[3] = count


@numba.njit(cache=True)
def _mask_ok(a: np.ndarray, b: np.ndarray, from_outside: bool, dom: tuple) -> bool:
    """Whether every voxel the centreline a→b passes through is in the mask (exact traversal).

    With ``from_outside`` the voxels before the first one inside may lie outside (a trunk
    entering the organ from its inlet).
    """
    mask, w2i = dom[0], dom[1]
    nk, nj, ni = mask.shape
    fa = np.empty(3)
    fb = np.empty(3)
    for c in range(3):
        fa[c] = w2i[c, 0] * a[0] + w2i[c, 1] * a[1] + w2i[c, 2] * a[2] + w2i[c, 3]
        fb[c] = w2i[c, 0] * b[0] + w2i[c, 1] * b[1] + w2i[c, 2] * b[2] + w2i[c, 3]
    v = np.empty(3, dtype=np.int64)
    step = np.empty(3, dtype=np.int64)
    tmax = np.empty(3)
    tdelta = np.empty(3)
    for c in range(3):
        v[c] = math.floor(fa[c] + 0.5)
        d = fb[c] - fa[c]
        if d > 0.0:
            step[c], tmax[c], tdelta[c] = 1, (v[c] + 0.5 - fa[c]) / d, 1.0 / d
        elif d < 0.0:
            step[c], tmax[c], tdelta[c] = -1, (v[c] - 0.5 - fa[c]) / d, -1.0 / d
        else:
            step[c], tmax[c], tdelta[c] = 0, np.inf, np.inf
    entered = False
    while True:
        i, j, k = v[0], v[1], v[2]
        if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk and mask[k, j, i]:
            entered = True
        elif entered or not from_outside:
            return False
        c = 0
        if tmax[1] < tmax[c]:
            c = 1
        if tmax[2] < tmax[c]:
            c = 2
        if tmax[c] > 1.0:
            return entered
        v[c] += step[c]
        tmax[c] += tdelta[c]


@numba.njit(cache=True)
def _point_clear(
    x: np.ndarray, d_thr: float, nodes: tuple, trees: tuple, hashd: tuple, cnt: np.ndarray, fpar: np.ndarray
) -> bool:
    """Whether every vessel wall is at least ``d_thr`` away from point x."""
    pos, parent, nterm = nodes[0], nodes[1], nodes[4]
    head, nxt, eseg, lo, dims, isbig, big, seen, bigr = hashd
    r_big, cell = fpar[5], fpar[7]
    reach = d_thr + r_big + 0.25 * cell
    i0, i1 = _cell_range(x[0] - reach, x[0] + reach, lo[0], cell, dims[0])
    j0, j1 = _cell_range(x[1] - reach, x[1] + reach, lo[1], cell, dims[1])
    k0, k1 = _cell_range(x[2] - reach, x[2] + reach, lo[2], cell, dims[2])
    cnt[2] += 1
    stamp = cnt[2]
    for ck in range(k0, k1 + 1):
        for cj in range(j0, j1 + 1):
            for ci in range(i0, i1 + 1):
                e = head[(ck * dims[1] + cj) * dims[0] + ci]
                while e >= 0:
                    s = eseg[e]
                    e = nxt[e]
                    if seen[s] == stamp:
                        continue
                    seen[s] = stamp
                    if isbig[s] or nterm[s] == 0:
                        continue
                    d = _dist_point_seg(x, pos[parent[s]], pos[s])
                    if d - r_big >= d_thr:  # small segments are no thicker than r_big
                        continue
                    if d - _radius(s, nodes, trees) < d_thr:
                        return False
    for m in range(cnt[3]):
        s = big[m]
        reach = d_thr + bigr[m]
        a, b = pos[parent[s]], pos[s]
        if _box_apart(x, x, a, b, reach):
            continue
        if _dist_point_seg(x, a, b) - bigr[m] < d_thr:
            return False
    return True


@numba.njit(cache=True)
def _box_apart(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray, gap: float) -> bool:
    """Whether the bounding boxes of segments a and b are more than ``gap`` apart on some axis."""
    for c in range(3):
        if min(a0[c], a1[c]) - gap > max(b0[c], b1[c]) or min(b0[c], b1[c]) - gap > max(a0[c], a1[c]):
            return True
    return False


@numba.njit(cache=True)
def _segment_clear(
    a: np.ndarray,
    b: np.ndarray,
    r_a: float,
    f_a: float,
    tree: int,
    excl: np.ndarray,
    n_excl: int,
    nodes: tuple,
    trees: tuple,
    hashd: tuple,
    cnt: np.ndarray,
    fpar: np.ndarray,
) -> bool:
    """Whether segment a–b of radius r_a keeps clear of every other live segment.

    Other trees: distance ≥ f_a·r_a + f·r + clearance, where f is the safety factor for radii
    that may still grow and 1 for trunks (a trunk always carries its whole tree's flow, so its
    radius is final). Own tree, unless ``n_excl`` < 0:
    neither centreline enters the other lumen (distance ≥ max(r_a, r)), the segments in
    ``excl`` (which meet this one) excepted; near a junction thick lumens overlap anyway.
    """
    pos, parent, nterm = nodes[0], nodes[1], nodes[4]
    head, nxt, eseg, lo, dims, isbig, big, seen, bigr = hashd
    clearance, safety, r_big, cell = fpar[0], fpar[1], fpar[5], fpar[7]
    reach = f_a * r_a + safety * r_big + clearance + 0.25 * cell
    i0, i1 = _cell_range(min(a[0], b[0]) - reach, max(a[0], b[0]) + reach, lo[0], cell, dims[0])
    j0, j1 = _cell_range(min(a[1], b[1]) - reach, max(a[1], b[1]) + reach, lo[1], cell, dims[1])
    k0, k1 = _cell_range(min(a[2], b[2]) - reach, max(a[2], b[2]) + reach, lo[2], cell, dims[2])
    cnt[2] += 1
    stamp = cnt[2]
    for ck in range(k0, k1 + 1):
        for cj in range(j0, j1 + 1):
            for ci in range(i0, i1 + 1):
                e = head[(ck * dims[1] + cj) * dims[0] + ci]
                while e >= 0:
                    s = eseg[e]
                    e = nxt[e]
                    if seen[s] == stamp:
                        continue
                    seen[s] = stamp
                    if isbig[s] or nterm[s] == 0:
                        continue
                    if not _pair_clear(a, b, r_a, f_a, tree, s, r_big, False, excl, n_excl, nodes, trees, fpar):
                        return False
    for m in range(cnt[3]):
        s = big[m]
        if _box_apart(a, b, pos[parent[s]], pos[s], f_a * r_a + safety * bigr[m] + clearance):
            continue
        if not _pair_clear(a, b, r_a, f_a, tree, s, bigr[m], True, excl, n_excl, nodes, trees, fpar):
            return False
    return True


@numba.njit(cache=True)
def _pair_clear(
    a: np.ndarray,
    b: np.ndarray,
    r_a: float,
    f_a: float,
    tree: int,
    s: int,
    r_s: float,
    exact: bool,
    excl: np.ndarray,
    n_excl: int,
    nodes: tuple,
    trees: tuple,
    fpar: np.ndarray,
) -> bool:
    """The clearance rule of :func:`_segment_clear` for one segment s (``r_s`` its radius when
    ``exact``, else an upper bound; the true radius is computed only when the bound fails)."""
    pos, parent, tree_of = nodes[0], nodes[1], nodes[3]
    same = tree_of[s] == tree
    if same:
        if n_excl < 0:
            return True
        for m in range(n_excl):
            if excl[m] == s:
                return True
    d = _dist_seg_seg(a, b, pos[parent[s]], pos[s])
    f_s = 1.0 if (parent[parent[s]] < 0 or trees[2][tree_of[s]] == 0) else fpar[1]  # trunks, obstacles: final r
    need = max(r_a, r_s) if same else f_a * r_a + f_s * r_s + fpar[0]
    if d >= need:
        return True
    if exact:
        return False
    r_s = _radius(s, nodes, trees)
    need = max(r_a, r_s) if same else f_a * r_a + f_s * r_s + fpar[0]
    return d >= need


@numba.njit(cache=True)
def _nearest(
    x: np.ndarray,
    tree: int,
    k: int,
    out_s: np.ndarray,
    out_d: np.ndarray,
    tree_best: np.ndarray,
    nodes: tuple,
    hashd: tuple,
    cnt: np.ndarray,
    cell: float,
) -> int:
    """The k segments of ``tree`` nearest to x (sorted), and each tree's nearest distance."""
    pos, parent, tree_of, nterm = nodes[0], nodes[1], nodes[3], nodes[4]
    head, nxt, eseg, lo, dims, seen = hashd[0], hashd[1], hashd[2], hashd[3], hashd[4], hashd[7]
    radius = cell
    while True:
        tree_best[:] = np.inf
        count = 0
        reach = radius + 0.25 * cell
        i0, i1 = _cell_range(x[0] - reach, x[0] + reach, lo[0], cell, dims[0])
        j0, j1 = _cell_range(x[1] - reach, x[1] + reach, lo[1], cell, dims[1])
        k0, k1 = _cell_range(x[2] - reach, x[2] + reach, lo[2], cell, dims[2])
        cnt[2] += 1
        stamp = cnt[2]
        for ck in range(k0, k1 + 1):
            for cj in range(j0, j1 + 1):
                for ci in range(i0, i1 + 1):
                    e = head[(ck * dims[1] + cj) * dims[0] + ci]
                    while e >= 0:
                        s = eseg[e]
                        e = nxt[e]
                        if seen[s] == stamp:
                            continue
                        seen[s] = stamp
                        if nterm[s] == 0:
                            continue
                        d = _dist_point_seg(x, pos[parent[s]], pos[s])
                        u = tree_of[s]
                        if d < tree_best[u]:
                            tree_best[u] = d
                        if u != tree:
                            continue
                        if count < k:
                            m = count
                            count += 1
                        elif d < out_d[k - 1]:
                            m = k - 1
                        else:
                            continue
                        while m > 0 and out_d[m - 1] > d:
                            out_d[m] = out_d[m - 1]
                            out_s[m] = out_s[m - 1]
                            m -= 1
                        out_d[m] = d
                        out_s[m] = s
        whole = i0 == 0 and j0 == 0 and k0 == 0
        whole = whole and i1 == dims[0] - 1 and j1 == dims[1] - 1 and k1 == dims[2] - 1
        if whole or (count >= k and out_d[k - 1] <= radius):
            return count
        radius *= 2.0


@numba.njit(cache=True)
def _fermat_cost(b: np.ndarray, ends: np.ndarray, w: np.ndarray) -> float:
    return w[0] * _norm3(b, ends[0]) + w[1] * _norm3(b, ends[1]) + w[2] * _norm3(b, ends[2])


@numba.njit(cache=True)
def _fermat_point(
    p: np.ndarray,
    x: np.ndarray,
    t: np.ndarray,
    w1: float,
    w2: float,
    w3: float,
    min_len: float,
    out: np.ndarray,
) -> None:
    """Point b minimising w1|b−p| + w2|b−x| + w3|b−t|, kept at least 2·``min_len`` from each end.

    Safeguarded Newton iterations (Weiszfeld's step as fallback) from the weighted centroid;
    every accepted step lowers the cost, so when the optimum is an end point (a trifurcation)
    the point stops at the last admissible iterate, just short of it.
    """
    ends = np.empty((3, 3))
    w = np.empty(3)
    for c in range(3):
        ends[0, c], ends[1, c], ends[2, c] = p[c], x[c], t[c]
    w[0], w[1], w[2] = w1, w2, w3
    wsum = w1 + w2 + w3
    for c in range(3):
        out[c] = (w1 * p[c] + w2 * x[c] + w3 * t[c]) / wsum
    guard = 2.0 * min_len
    cand = np.empty(3)
    grad = np.empty(3)
    hess = np.empty((3, 3))
    cost = _fermat_cost(out, ends, w)
    for _ in range(100):
        grad[:] = 0.0
        hess[:, :] = 0.0
        wz = 0.0  # Weiszfeld weights
        for c in range(3):
            cand[c] = 0.0
        for m in range(3):
            d = _norm3(out, ends[m])
            if d < 1e-12:
                return
            wz += w[m] / d
            for c in range(3):
                u_c = (out[c] - ends[m, c]) / d
                grad[c] += w[m] * u_c
                cand[c] += w[m] * ends[m, c] / d
                for e in range(3):
                    u_e = (out[e] - ends[m, e]) / d
                    hess[c, e] += w[m] / d * ((1.0 if c == e else 0.0) - u_c * u_e)
        # Newton step by Cramer's rule; fall back to Weiszfeld when it does not help
        det = (
            hess[0, 0] * (hess[1, 1] * hess[2, 2] - hess[1, 2] * hess[2, 1])
            - hess[0, 1] * (hess[1, 0] * hess[2, 2] - hess[1, 2] * hess[2, 0])
            + hess[0, 2] * (hess[1, 0] * hess[2, 1] - hess[1, 1] * hess[2, 0])
        )
        accepted = False
        if abs(det) > 1e-300:
            step = np.empty(3)
            for c in range(3):
                mat = hess.copy()
                mat[:, c] = grad
                step[c] = (
                    mat[0, 0] * (mat[1, 1] * mat[2, 2] - mat[1, 2] * mat[2, 1])
                    - mat[0, 1] * (mat[1, 0] * mat[2, 2] - mat[1, 2] * mat[2, 0])
                    + mat[0, 2] * (mat[1, 0] * mat[2, 1] - mat[1, 1] * mat[2, 0])
                ) / det
            newton = out - step
            new_cost = _fermat_cost(newton, ends, w)
            if new_cost <= cost and _admissible(newton, ends, guard):
                shift = math.sqrt(step[0] ** 2 + step[1] ** 2 + step[2] ** 2)
                out[:] = newton
                cost = new_cost
                accepted = True
                if shift < 1e-10:
                    return
        if not accepted:
            for c in range(3):
                cand[c] /= wz
            new_cost = _fermat_cost(cand, ends, w)
            if new_cost >= cost or not _admissible(cand, ends, guard):
                return
            out[:] = cand
            cost = new_cost


@numba.njit(cache=True)
def _admissible(b: np.ndarray, ends: np.ndarray, guard: float) -> bool:
    return _norm3(b, ends[0]) >= guard and _norm3(b, ends[1]) >= guard and _norm3(b, ends[2]) >= guard


@numba.njit(cache=True)
def _grow(
    nodes: tuple,
    trees: tuple,
    hashd: tuple,
    dom: tuple,
    rand: np.ndarray,
    cnt: np.ndarray,
    fpar: np.ndarray,
    ipar: np.ndarray,
    stop_total: int,
) -> int:
    """Add terminals until every tree is done (0), ``stop_total`` is reached (1), or the kernel
    needs more random numbers (2) or hash space (3); a failed first target returns 4."""
    pos, parent, child, tree_of, nterm = nodes[0], nodes[1], nodes[2], nodes[3], nodes[4]
    root_node, n_done, target, rroot, _gamma, group, active, fails, dfac, first, has_first = trees
    nxt = hashd[1]
    mask, i2w, inside, cdf, dscale = dom[0], dom[2], dom[3], dom[4], dom[5]
    weighted = cdf.shape[0] > 0
    _nk, nj, ni = mask.shape
    volume, r_big, decay, cell = fpar[2], fpar[5], fpar[6], fpar[7]
    k, n_toss, max_fail, per_segment = ipar[0], ipar[1], ipar[2], ipar[3]
    n_trees = root_node.shape[0]
    cand_s = np.empty(k, dtype=np.int64)
    cand_d = np.empty(k)
    cost = np.empty(k)
    bpts = np.empty((k, 3))
    rank = np.empty(k, dtype=np.int64)
    tree_best = np.empty(n_trees)
    excl = np.empty(8, dtype=np.int64)
    x = np.empty(3)
    while True:
        tree = -1
        best = np.inf
        for u in range(n_trees):
            if active[u] == 1 and n_done[u] < target[u]:
                ratio = n_done[u] / target[u]
                if ratio < best:
                    best = ratio
                    tree = u
        if tree < 0:
            return 0
        if cnt[6] >= stop_total:
            return 1
        if cnt[4] + 4 > rand.shape[0]:
            return 2
        if cnt[1] + 3 * per_segment > nxt.shape[0]:
            return 3
        # ---- candidate terminal point
        u0, u1, u2, u3 = rand[cnt[4]], rand[cnt[4] + 1], rand[cnt[4] + 2], rand[cnt[4] + 3]
        cnt[4] += 4
        root = root_node[tree]
        first_try = n_done[tree] == 0 and has_first[tree] == 1 and fails[tree] == 0
        local = 1.0  # (mean demand / local demand)^(1/3)
        if first_try:
            for c in range(3):
                x[c] = first[tree, c]
        else:
            if weighted:
                m = min(np.searchsorted(cdf, u0 * cdf[-1], side="right"), cdf.shape[0] - 1)
                v = inside[m]
                local = dscale[m]
            else:
                v = inside[min(int(u0 * inside.shape[0]), inside.shape[0] - 1)]
            vk = v // (nj * ni)
            vj = (v // ni) % nj
            vi = v % ni
            fi, fj, fk = vi + u1 - 0.5, vj + u2 - 0.5, vk + u3 - 0.5
            for c in range(3):
                x[c] = i2w[c, 0] * fi + i2w[c, 1] * fj + i2w[c, 2] * fk + i2w[c, 3]
        total = 0
        for u in range(n_trees):
            if target[u] > 0:  # obstacles hold a radius code in n_done, not terminals
                total += n_done[u]
        d_thr = dfac[tree] * (volume / (total + 1)) ** (1.0 / 3.0)
        if weighted:
            d_thr *= local
        ok = False
        if n_done[tree] == 0:
            # ---- the trunk: root → first terminal
            ok = _point_clear(x, 0.0 if first_try else d_thr, nodes, trees, hashd, cnt, fpar)
            ok = ok and _mask_ok(pos[root], x, True, dom)
            ok = ok and _segment_clear(pos[root], x, rroot[tree], 1.0, tree, excl, 0, nodes, trees, hashd, cnt, fpar)
            if ok:
                n = cnt[0]
                cnt[0] = n + 1
                pos[n, :] = x
                parent[n] = root
                child[root, 0] = n
                tree_of[n] = tree
                nterm[n] = 1
                nterm[root] = 1
                n_done[tree] = 1
                _hash_add(n, nodes, hashd, cnt, cell)
            elif first_try:
                cnt[5] = tree
                return 4
        elif _point_clear(x, d_thr, nodes, trees, hashd, cnt, fpar):
            count = _nearest(x, tree, k, cand_s, cand_d, tree_best, nodes, hashd, cnt, cell)
            rival = False
            for u in range(n_trees):
                if u != tree and group[u] == group[tree] and tree_best[u] < cand_d[0]:
                    rival = True
            if count > 0 and not rival:
                ok = _connect(x, tree, count, cand_s, cost, bpts, rank, excl, nodes, trees, hashd, dom, cnt, fpar)
        if ok:
            fails[tree] = 0
            dfac[tree] = min(1.0, dfac[tree] / decay)  # adaptive: one notch back up
            cnt[6] += 1
            _refresh_big(nodes, trees, hashd, cnt, r_big)
        else:
            fails[tree] += 1
            if fails[tree] % n_toss == 0:
                dfac[tree] *= decay
            if fails[tree] >= max_fail:
                active[tree] = 0


@numba.njit(cache=True)
def _connect(
    x: np.ndarray,
    tree: int,
    count: int,
    cand_s: np.ndarray,
    cost: np.ndarray,
    bpts: np.ndarray,
    rank: np.ndarray,
    excl: np.ndarray,
    nodes: tuple,
    trees: tuple,
    hashd: tuple,
    dom: tuple,
    cnt: np.ndarray,
    fpar: np.ndarray,
) -> bool:
    """Join terminal x to the cheapest admissible candidate segment; False when none is."""
    pos, parent, child, tree_of, nterm = nodes[0], nodes[1], nodes[2], nodes[3], nodes[4]
    root_node, n_done, rroot, gamma = trees[0], trees[1], trees[3], trees[4]
    safety, min_len = fpar[1], fpar[3]
    g = gamma[tree]
    expo = 2.0 / g
    w_new = 1.0
    # ---- cost of every candidate: Δ Σ q^(2/γ)·l (the common radius scale drops out)
    for c in range(count):
        s = cand_s[c]
        p = parent[s]
        q = nterm[s]
        w_up = (q + 1.0) ** expo
        w_dn = q**expo
        b = bpts[c]
        _fermat_point(pos[p], pos[s], x, w_up, w_dn, w_new, min_len, b)
        l_up, l_dn, l_new = _norm3(pos[p], b), _norm3(b, pos[s]), _norm3(b, x)
        if l_up < min_len or l_dn < min_len or l_new < min_len:
            cost[c] = np.inf
            continue
        delta = w_up * l_up + w_dn * l_dn + w_new * l_new - w_dn * _norm3(pos[p], pos[s])
        a = p
        while parent[a] >= 0:
            qa = nterm[a]
            delta += _norm3(pos[parent[a]], pos[a]) * ((qa + 1.0) ** expo - qa**expo)
            a = parent[a]
        cost[c] = delta
    for c in range(count):
        rank[c] = c
    for c in range(1, count):  # insertion sort by cost
        m = c
        while m > 0 and cost[rank[m - 1]] > cost[rank[m]]:
            rank[m - 1], rank[m] = rank[m], rank[m - 1]
            m -= 1
    n_after = n_done[tree] + 1.0
    for c in range(count):
        idx = rank[c]
        if not np.isfinite(cost[idx]):
            break
        s = cand_s[idx]
        p = parent[s]
        q = nterm[s]
        b = bpts[idx]
        r_up = rroot[tree] * ((q + 1.0) / n_after) ** (1.0 / g)
        r_dn = rroot[tree] * (q / n_after) ** (1.0 / g)
        r_new = rroot[tree] * (1.0 / n_after) ** (1.0 / g)
        from_root = p == root_node[tree]
        f_up = 1.0 if from_root else safety  # p → b stays the trunk when p is the root
        if not (_mask_ok(pos[p], b, from_root, dom) and _mask_ok(b, pos[s], False, dom) and _mask_ok(b, x, False, dom)):
            continue
        # segments meeting the changed ones: s itself, p's segment and siblings, s's children
        n_excl = 0
        excl[n_excl] = s
        n_excl += 1
        if parent[p] >= 0:
            excl[n_excl] = p
            n_excl += 1
        for m in range(2):
            if child[p, m] >= 0 and child[p, m] != s:
                excl[n_excl] = child[p, m]
                n_excl += 1
            if child[s, m] >= 0:
                excl[n_excl] = child[s, m]
                n_excl += 1
        if not _segment_clear(b, x, r_new, safety, tree, excl, n_excl, nodes, trees, hashd, cnt, fpar):
            continue
        if not _segment_clear(pos[p], b, r_up, f_up, tree, excl, -1, nodes, trees, hashd, cnt, fpar):
            continue
        if not _segment_clear(b, pos[s], r_dn, safety, tree, excl, -1, nodes, trees, hashd, cnt, fpar):
            continue
        # ---- apply: p → nb → {s, nt}
        nb = cnt[0]
        nt = nb + 1
        cnt[0] = nb + 2
        pos[nb, :] = b
        pos[nt, :] = x
        parent[nb] = p
        if child[p, 0] == s:
            child[p, 0] = nb
        else:
            child[p, 1] = nb
        child[nb, 0] = s
        child[nb, 1] = nt
        child[nt, 0] = -1
        child[nt, 1] = -1
        parent[s] = nb
        parent[nt] = nb
        tree_of[nb] = tree
        tree_of[nt] = tree
        nterm[nb] = q + 1
        nterm[nt] = 1
        a = p
        while a >= 0:
            nterm[a] += 1
            a = parent[a]
        n_done[tree] += 1
        _hash_add(nb, nodes, hashd, cnt, fpar[7])
        _hash_add(s, nodes, hashd, cnt, fpar[7])
        _hash_add(nt, nodes, hashd, cnt, fpar[7])
        return True
    return False


@numba.njit(cache=True)
def _overlapping(
    a0: np.ndarray,
    a1: np.ndarray,
    ra: np.ndarray,
    b0: np.ndarray,
    b1: np.ndarray,
    rb: np.ndarray,
    clearance: float,
    hit: np.ndarray,
) -> None:
    """Flag every segment a closer than ra + rb + clearance to some segment b (box test, then exact)."""
    lo_b = np.minimum(b0, b1)
    hi_b = np.maximum(b0, b1)
    for i in range(a0.shape[0]):
        lo0, lo1, lo2 = min(a0[i, 0], a1[i, 0]), min(a0[i, 1], a1[i, 1]), min(a0[i, 2], a1[i, 2])
        hi0, hi1, hi2 = max(a0[i, 0], a1[i, 0]), max(a0[i, 1], a1[i, 1]), max(a0[i, 2], a1[i, 2])
        for j in range(b0.shape[0]):
            need = ra[i] + rb[j] + clearance
            if lo0 - need > hi_b[j, 0] or lo_b[j, 0] - need > hi0:
                continue
            if lo1 - need > hi_b[j, 1] or lo_b[j, 1] - need > hi1:
                continue
            if lo2 - need > hi_b[j, 2] or lo_b[j, 2] - need > hi2:
                continue
            if _dist_seg_seg(a0[i], a1[i], b0[j], b1[j]) < need:
                hit[i] = True
                break


# ---------------------------------------------------------------------- final check and repair
@numba.njit(cache=True)
def _violations(
    nodes: tuple,
    trees: tuple,
    hashd: tuple,
    cnt: np.ndarray,
    fpar: np.ndarray,
    out: np.ndarray,
) -> int:
    """Pairs of segments of different trees closer than r₁ + r₂ + clearance (up to len(out))."""
    pos, parent, tree_of, nterm = nodes[0], nodes[1], nodes[3], nodes[4]
    target = trees[2]
    head, nxt, eseg, lo, dims, isbig, big, seen, bigr = hashd
    clearance, r_big, cell = fpar[0], fpar[5], fpar[7]
    count = 0
    for a in range(cnt[0]):
        if parent[a] < 0 or nterm[a] == 0:
            continue
        pa, pb = pos[parent[a]], pos[a]
        r_a = _radius(a, nodes, trees)
        reach = r_a + r_big + clearance + 0.25 * cell
        i0, i1 = _cell_range(min(pa[0], pb[0]) - reach, max(pa[0], pb[0]) + reach, lo[0], cell, dims[0])
        j0, j1 = _cell_range(min(pa[1], pb[1]) - reach, max(pa[1], pb[1]) + reach, lo[1], cell, dims[1])
        k0, k1 = _cell_range(min(pa[2], pb[2]) - reach, max(pa[2], pb[2]) + reach, lo[2], cell, dims[2])
        cnt[2] += 1
        stamp = cnt[2]
        for ck in range(k0, k1 + 1):
            for cj in range(j0, j1 + 1):
                for ci in range(i0, i1 + 1):
                    e = head[(ck * dims[1] + cj) * dims[0] + ci]
                    while e >= 0:
                        s = eseg[e]
                        e = nxt[e]
                        if seen[s] == stamp:
                            continue
                        seen[s] = stamp
                        if s <= a or isbig[s] or nterm[s] == 0 or tree_of[s] == tree_of[a]:
                            continue
                        if target[tree_of[s]] == 0 and target[tree_of[a]] == 0:  # two obstacles: not ours
                            continue
                        need = r_a + _radius(s, nodes, trees) + clearance
                        if _dist_seg_seg(pa, pb, pos[parent[s]], pos[s]) < need:
                            if count < out.shape[0]:
                                out[count, 0] = a
                                out[count, 1] = s
                            count += 1
        for m in range(cnt[3]):
            s = big[m]
            if s == a or (isbig[a] and s < a) or tree_of[s] == tree_of[a]:
                continue
            if target[tree_of[s]] == 0 and target[tree_of[a]] == 0:
                continue
            need = r_a + bigr[m] + clearance
            if _dist_seg_seg(pa, pb, pos[parent[s]], pos[s]) < need:
                if count < out.shape[0]:
                    out[count, 0] = a
                    out[count, 1] = s
                count += 1
    return count


@numba.njit(cache=True)
def _prune(n: int, nodes: tuple, trees: tuple) -> None:
    """Remove segment n and everything downstream; its upstream node becomes a pass-through."""
    parent, child, tree_of, nterm = nodes[1], nodes[2], nodes[3], nodes[4]
    n_done = trees[1]
    q = nterm[n]
    if q == 0:
        return
    p = parent[n]
    for m in range(2):
        if child[p, m] == n:
            child[p, m] = -1
    a = p
    while a >= 0:
        nterm[a] -= q
        a = parent[a]
    n_done[tree_of[n]] -= q
    stack = [n]
    while len(stack) > 0:
        v = stack.pop()
        nterm[v] = 0
        for m in range(2):
            if child[v, m] >= 0:
                stack.append(child[v, m])


def _repair(nodes: tuple, trees: tuple, hashd: tuple, cnt: np.ndarray, fpar: np.ndarray) -> None:
    """Prune the rare subtrees whose final calibre brings them too close to another tree.

    Radii are checked with a safety factor while growing, but a subtree can end up with a
    larger share of the flow than when it was placed; the smaller branch of each offending pair
    is removed (never a trunk) until no pair is left.
    """
    parent, tree_of, nterm = nodes[1], nodes[3], nodes[4]
    root_node, target = trees[0], trees[2]

    def obstacle(n: int) -> bool:
        return bool(target[tree_of[n]] == 0)

    roots = set(int(r) for r in root_node)
    out = np.zeros((4096, 2), dtype=np.int64)
    for _ in range(50):
        _refresh_big(nodes, trees, hashd, cnt, fpar[5])
        n = _violations(nodes, trees, hashd, cnt, fpar, out)
        if n == 0:
            return
        for a, s in out[: min(n, out.shape[0])]:
            if nterm[a] == 0 or nterm[s] == 0:
                continue
            victim = int(a if nterm[a] <= nterm[s] else s)
            other = int(s if victim == a else a)
            if obstacle(victim):  # an obstacle is never pruned
                victim, other = other, victim
            elif int(parent[victim]) in roots and not obstacle(other):
                victim, other = other, victim
            if int(parent[victim]) in roots:
                if obstacle(other):
                    raise StructureError(
                        "the trunk of a tree runs into an obstacle tree",
                        "move its root or first target clear of the obstacles",
                    )
                raise StructureError(
                    "two trunks run into each other",
                    "move the roots or first targets of the trees further apart",
                )
            _prune(victim, nodes, trees)
    raise StructureError("vessel trees still overlap after pruning", "raise clearance_mm or use fewer terminals")
