"""Perfusion territories of a vessel tree's terminals and the Pennes perfusion maps they give.

Each organ voxel is fed by the terminal nearest its centre (optionally a multiplicatively weighted
distance d/w, e.g. w ∝ Q^(1/3) so a terminal carrying more flow claims a proportionally larger volume).
A terminal's flow spread evenly over its territory gives the Pennes perfusion rate ω = Q/V (1/s,
volume of blood per volume of tissue per second), the quantity TissueState.perfusion_arterial_per_s and
perfusion_portal_per_s hold. Built separately from the hepatic-artery and portal trees, the maps carry
what a transcatheter step changed (an embolized branch's territory loses its flow) into the bioheat
solve of a later ablation. Flow is conserved exactly: Σ ω·V_voxel equals the summed terminal flow; a
terminal that wins no voxel hands its flow to the territory of the organ voxel nearest to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from insitu.errors import PhysicsError, StructureError
from insitu.grid import Grid
from insitu.vascular.flow import FlowSolution
from insitu.vascular.tree import VesselTree

_CHUNK = 1 << 18  # voxels per k-nearest query (bounds memory at k candidates per voxel)


@dataclass(frozen=True, eq=False)
class Territories:
    """Terminal territories on ``grid``.

    ``labels[k, j, i]`` is the index into ``terminal_nodes`` of the terminal feeding that voxel (−1
    outside the organ); ``host[t]`` is the territory that receives terminal ``t``'s flow (``t`` itself
    unless its territory is empty).
    """

    grid: Grid
    labels: np.ndarray
    terminal_nodes: np.ndarray
    voxel_count: np.ndarray
    host: np.ndarray

    @property
    def volume_ml(self) -> np.ndarray:
        """Territory volume of every terminal (mL)."""
        return self.voxel_count * self.grid.voxel_volume_ml

    @property
    def volume_m3(self) -> np.ndarray:
        """Territory volume of every terminal (m³)."""
        return self.volume_ml * 1e-6

    def territory_mask(self, terminals: np.ndarray | list[int]) -> np.ndarray:
        """Voxels fed by any of ``terminals`` (indices into ``terminal_nodes``), e.g. a subtree's."""
        wanted = np.zeros(self.terminal_nodes.size + 1, dtype=bool)
        wanted[np.asarray(terminals, dtype=np.int64)] = True
        return wanted[self.labels]  # label −1 reads the last entry, which stays False


def _voxel_centres_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    k, j, i = np.nonzero(mask)
    return grid.index_to_world(np.stack([i, j, k], axis=-1).astype(np.float64))


def assign_territories(
    tree: VesselTree,
    organ_mask: np.ndarray,
    grid: Grid,
    weights: np.ndarray | None = None,
    *,
    k_candidates: int = 16,
) -> Territories:
    """Give every voxel of ``organ_mask`` to its nearest terminal of ``tree`` (LPS mm distances).

    With ``weights`` (one positive value per terminal, order of ``tree.terminals``) the distance is
    d/w, searched among the ``k_candidates`` Euclidean-nearest terminals (exact when the weighted
    winner is among them).
    """
    grid.require_array(organ_mask, "organ mask")
    mask = np.asarray(organ_mask, dtype=bool)
    if not mask.any():
        raise StructureError("the organ mask for perfusion territories is empty", "give a non-empty organ mask")
    terminals = tree.terminals
    if terminals.size == 0:
        raise StructureError(f"vessel tree {tree.name!r} has no terminals", "give a tree with at least one segment")
    centres = _voxel_centres_mm(mask, grid)
    index = cKDTree(tree.points_mm[terminals])
    if weights is None:
        _, nearest = index.query(centres, k=1)
        nearest = np.asarray(nearest, dtype=np.int64)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != terminals.size or not np.all(np.isfinite(w)) or np.any(w <= 0.0):
            raise PhysicsError(
                f"territory weights need {terminals.size} positive finite values, got {w.shape[0]}",
                "give one positive weight per terminal (order of tree.terminals) or None",
            )
        k = int(min(max(k_candidates, 1), terminals.size))
        nearest = np.empty(centres.shape[0], dtype=np.int64)
        for start in range(0, centres.shape[0], _CHUNK):
            dist, idx = index.query(centres[start : start + _CHUNK], k=k)
            dist, idx = dist.reshape(dist.shape[0], k), idx.reshape(idx.shape[0], k)
            best = np.argmin(dist / w[idx], axis=1)
            nearest[start : start + _CHUNK] = idx[np.arange(idx.shape[0]), best]
    labels = np.full(mask.shape, -1, dtype=np.int32)
    labels[mask] = nearest
    count = np.bincount(nearest, minlength=terminals.size).astype(np.int64)
    host = np.arange(terminals.size, dtype=np.int64)
    empty = np.flatnonzero(count == 0)
    if empty.size:
        _, voxel = cKDTree(centres).query(tree.points_mm[terminals[empty]], k=1)
        host[empty] = nearest[np.asarray(voxel, dtype=np.int64)]
    return Territories(grid=grid, labels=labels, terminal_nodes=terminals, voxel_count=count, host=host)


def perfusion_map_per_s(territories: Territories, terminal_flow_m3_s: np.ndarray) -> np.ndarray:
    """Pennes perfusion ω (1/s, float32) on the territories' grid: each territory's flow over its volume.

    ``terminal_flow_m3_s`` has one non-negative flow per terminal (order of ``terminal_nodes``); zero
    outside the organ. Σ ω·V_voxel equals Σ terminal flows (to float32 rounding of ω).
    """
    q = np.asarray(terminal_flow_m3_s, dtype=np.float64).reshape(-1)
    n = territories.terminal_nodes.size
    if q.shape[0] != n or not np.all(np.isfinite(q)):
        raise PhysicsError(f"need {n} finite terminal flows, got {q.shape[0]}", "give one flow per terminal")
    if np.any(q < 0.0):
        raise PhysicsError(
            f"{int(np.count_nonzero(q < 0.0))} terminals carry flow back into the tree",
            "check the outlet pressures: perfusion needs outflow at every terminal",
        )
    hosted = np.bincount(territories.host, weights=q, minlength=n)
    volume_m3 = territories.volume_m3
    omega = np.divide(hosted, volume_m3, out=np.zeros(n), where=volume_m3 > 0.0)
    out = np.zeros(territories.labels.shape, dtype=np.float32)
    inside = territories.labels >= 0
    out[inside] = omega[territories.labels[inside]]
    return out


def tree_perfusion(
    solution: FlowSolution,
    organ_mask: np.ndarray,
    grid: Grid,
    weights: np.ndarray | None = None,
) -> tuple[Territories, np.ndarray]:
    """Territories of a solved tree and its perfusion map ω (1/s) on ``grid``."""
    territories = assign_territories(solution.tree, organ_mask, grid, weights)
    return territories, perfusion_map_per_s(territories, solution.terminal_outflow_m3_s)


def perfusion_maps_per_s(
    organ_mask: np.ndarray,
    grid: Grid,
    arterial: FlowSolution | None = None,
    portal: FlowSolution | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Arterial and portal ω maps (1/s, float32) for TissueState, from the hepatic-artery and portal trees.

    A missing tree gives a zero map; the two are separate because embolization acts on one system.
    """
    maps = []
    for solution in (arterial, portal):
        if solution is None:
            maps.append(np.zeros(np.shape(organ_mask), dtype=np.float32))
        else:
            maps.append(tree_perfusion(solution, organ_mask, grid)[1])
    return maps[0], maps[1]
