"""CCO radius balancing: radii that give every terminal the same flow at the same terminal pressure.

The rescaling step of constrained constructive optimization (Schreiner & Buxbaum 1993, Karch et al. 1999;
vascular.md §2.1): with the topology and segment lengths fixed, walk the tree bottom-up computing each
subtree's reduced resistance R* (its resistance with the top segment's radius set to 1). At a bifurcation
the daughters' pressure drops must agree, Q₁R*₁/r₁⁴ = Q₂R*₂/r₂⁴, so r₁/r₂ = (Q₁R*₁/(Q₂R*₂))^(1/4); Murray's
law r₀^γ = r₁^γ + r₂^γ then fixes both ratios to the parent. The root radius follows from the whole tree's
resistance, ΔP/Q = R*_root/r_root⁴, and the radii top-down from the ratios. With a Newtonian viscosity one
pass is exact; with the Fåhræus–Lindqvist law (viscosity depends on the radius) the pass is repeated until
the radii stop changing. SI inside (m, Pa, m³/s, Pa·s); mm, mmHg and mL/min only at the edge.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from insitu.errors import PhysicsError, StructureError
from insitu.vascular.flow import (
    ARTERIAL_INLET_PRESSURE_MMHG,
    ARTERIAL_TERMINAL_PRESSURE_MMHG,
    DISCHARGE_HAEMATOCRIT,
    ML_MIN_M3_S,
    MMHG_PA,
    PLASMA_VISCOSITY_PA_S,
    apparent_viscosity_pa_s,
)
from insitu.vascular.tree import VesselTree

_RTOL = 1e-12  # relative radius change that ends the Fåhræus–Lindqvist iteration (flows ∝ r⁴: ~4e-12)
_MAX_ITERATIONS = 100


def balance_radii(
    tree: VesselTree,
    *,
    inlet_flow_ml_min: float,
    inlet_pressure_mmhg: float = ARTERIAL_INLET_PRESSURE_MMHG,
    terminal_pressure_mmhg: float = ARTERIAL_TERMINAL_PRESSURE_MMHG,
    viscosity_pa_s: float | None = None,
    haematocrit: float = DISCHARGE_HAEMATOCRIT,
    plasma_viscosity_pa_s: float = PLASMA_VISCOSITY_PA_S,
    murray_exponent: float = 3.0,
) -> VesselTree:
    """``tree`` with radii (mm) and flows (mL/min) such that every terminal carries the same flow.

    Poiseuille flow from ``inlet_pressure_mmhg`` at the root to ``terminal_pressure_mmhg`` at every
    terminal then carries ``inlet_flow_ml_min`` in total, split equally, and Murray's law with
    ``murray_exponent`` holds at every branching node. Viscosity is Newtonian ``viscosity_pa_s`` or,
    when None, Fåhræus–Lindqvist at ``haematocrit`` (as :func:`insitu.vascular.flow.solve_flow`).
    Points and topology are kept; ``radius_mm[0]`` is the inlet's radius (Murray over the root's children).
    """
    tree.validate()
    if tree.n_nodes < 2:
        raise StructureError(f"vessel tree {tree.name!r} has no segment", "give a tree with at least one segment")
    q_in = _positive(inlet_flow_ml_min, "inlet_flow_ml_min", "give the total inflow, e.g. 245 mL/min") * ML_MIN_M3_S
    p_in = float(inlet_pressure_mmhg)
    p_term = float(terminal_pressure_mmhg)
    if not (math.isfinite(p_in) and math.isfinite(p_term) and p_in > p_term):
        raise PhysicsError(
            f"inlet pressure {p_in} mmHg must exceed the terminal pressure {p_term} mmHg",
            "give finite pressures with inlet > terminal (e.g. 100 and 60 mmHg)",
        )
    dp_pa = (p_in - p_term) * MMHG_PA
    gamma = _positive(murray_exponent, "murray_exponent", "give an exponent > 1 (Murray's law: 3)")
    if gamma <= 1.0:
        raise PhysicsError(f"murray_exponent {gamma} must exceed 1", "give an exponent > 1 (Murray's law: 3)")
    newtonian = viscosity_pa_s is not None
    if newtonian:
        mu_const = _positive(viscosity_pa_s, "viscosity_pa_s", "give e.g. 3.6e-3 Pa·s, or None for Fåhræus–Lindqvist")
    length_m = tree.segment_lengths_mm * 1e-3
    seg = np.flatnonzero(tree.parent >= 0)
    if np.any(length_m[seg] <= 0.0):
        bad = int(seg[np.flatnonzero(length_m[seg] <= 0.0)[0]])
        raise StructureError(
            f"vessel tree {tree.name!r} has a zero-length segment (node {bad})",
            "merge coincident nodes before balancing the radii",
        )

    order = tree.order
    kids, offsets = _children_csr(tree.parent)
    nterm = _terminal_counts(order, kids, offsets)
    radius_m = tree.radius_mm * 1e-3
    beta = np.ones(tree.n_nodes)
    rstar = np.zeros(tree.n_nodes)
    for _ in range(_MAX_ITERATIONS):
        if newtonian:
            mu = np.full(tree.n_nodes, mu_const)
        else:
            mu = apparent_viscosity_pa_s(radius_m, haematocrit, plasma_viscosity_pa_s)
        _reduced_resistances(order, kids, offsets, length_m, mu, nterm.astype(np.float64), gamma, beta, rstar)
        r_root = (rstar[0] * q_in / dp_pa) ** 0.25
        new_radius = _radii_from_ratios(order, tree.parent, beta, r_root)
        change = float(np.max(np.abs(new_radius - radius_m) / new_radius))
        radius_m = new_radius
        if newtonian or change <= _RTOL:
            break
    else:
        raise PhysicsError(
            f"radius balancing of vessel tree {tree.name!r} did not converge with Fåhræus–Lindqvist viscosity",
            "give a Newtonian viscosity_pa_s, or check the tree for extreme segment lengths",
        )
    flow_ml_min = nterm.astype(np.float64) * (q_in / ML_MIN_M3_S / float(nterm[0]))
    return VesselTree(
        points_mm=tree.points_mm,
        parent=tree.parent,
        radius_mm=radius_m * 1e3,
        flow=flow_ml_min,
        name=tree.name,
        kind=tree.kind,
        flow_unit="ml_min",
    )


def _positive(value: float | None, name: str, fix: str) -> float:
    number = float("nan") if value is None else float(value)
    if not (math.isfinite(number) and number > 0.0):
        raise PhysicsError(f"{name} {value} is not a positive finite number", fix)
    return number


def _children_csr(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Children of every node in CSR form (``kids[offsets[n]:offsets[n+1]]``)."""
    n = parent.shape[0]
    child_nodes = np.flatnonzero(parent >= 0)
    by_parent = np.argsort(parent[child_nodes], kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent[child_nodes], minlength=n), out=offsets[1:])
    return child_nodes[by_parent].astype(np.int64), offsets


@numba.njit(cache=True)
def _terminal_counts(order: np.ndarray, kids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Number of terminals downstream of every node (a terminal counts itself)."""
    n = order.shape[0]
    out = np.zeros(n, dtype=np.int64)
    for idx in range(n - 1, -1, -1):
        node = order[idx]
        if offsets[node + 1] == offsets[node]:
            out[node] = 1
        else:
            for c in range(offsets[node], offsets[node + 1]):
                out[node] += out[kids[c]]
    return out


@numba.njit(cache=True)
def _reduced_resistances(
    order: np.ndarray,
    kids: np.ndarray,
    offsets: np.ndarray,
    length_m: np.ndarray,
    mu: np.ndarray,
    flow: np.ndarray,
    gamma: float,
    beta: np.ndarray,
    rstar: np.ndarray,
) -> None:
    """Bottom-up: radius ratios ``beta`` (child / parent) and reduced resistances R* (radius 1 m).

    R*_n = 8μL/π + 1/Σ_c(β_c⁴/R*_c); the daughters' β ∝ (Q_c·R*_c)^(1/4), normalised by Murray's law.
    """
    for idx in range(order.shape[0] - 1, -1, -1):
        node = order[idx]
        lo, hi = offsets[node], offsets[node + 1]
        down = 0.0
        if hi > lo:
            norm = 0.0
            for c in range(lo, hi):
                child = kids[c]
                beta[child] = (flow[child] * rstar[child]) ** 0.25
                norm += beta[child] ** gamma
            norm = norm ** (1.0 / gamma)
            conductance = 0.0
            for c in range(lo, hi):
                child = kids[c]
                beta[child] /= norm
                conductance += beta[child] ** 4 / rstar[child]
            down = 1.0 / conductance
        rstar[node] = 8.0 * mu[node] * length_m[node] / math.pi + down


@numba.njit(cache=True)
def _radii_from_ratios(order: np.ndarray, parent: np.ndarray, beta: np.ndarray, r_root: float) -> np.ndarray:
    """Top-down radii: r_child = β_child·r_parent from the inlet radius ``r_root``."""
    out = np.empty(order.shape[0])
    out[order[0]] = r_root
    for idx in range(1, order.shape[0]):
        node = order[idx]
        out[node] = beta[node] * out[parent[node]]
    return out
