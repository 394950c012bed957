"""Steady Poiseuille flow in a vessel tree: nodal pressures, segment flows, terminal outflows.

Every segment is a rigid straight tube with Hagen–Poiseuille resistance R = 8μL/(πr⁴). The apparent
viscosity μ is the Fåhræus–Lindqvist law of Pries et al. 1992 (in vitro, vascular.md §2.2) at a given
discharge haematocrit, or one Newtonian value. The root (node 0) has a prescribed pressure or flow;
each terminal drains to an outlet pressure, either directly (the terminal node is held at that
pressure) or through a terminal resistance standing for the unresolved microcirculation (e.g. arterial
100 → 60 mmHg, Karch 1999 via vascular.md §2.1). Kirchhoff's law at every node gives a sparse
symmetric M-matrix; ordered leaves first, a tree's matrix factors without fill, so one direct sparse
solve is O(n). SI inside (m, Pa, m³/s, Pa·s); mmHg and mL/min only in names at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import scipy.sparse as sp
import yaml
from scipy.sparse.linalg import spsolve

from insitu.errors import PhysicsError, StructureError
from insitu.vascular.tree import VesselTree


@cache
def load_rheology() -> dict[str, Any]:
    """The rheology table ``rheology.yaml`` (values with sources and status) as a dictionary."""
    text = resources.files("insitu.vascular").joinpath("rheology.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _constant(name: str) -> float:
    return float(load_rheology()["constants"][name]["value"])


MMHG_PA = _constant("mmhg_pa")  # conventional mmHg in Pa (definition)
ML_MIN_M3_S = 1e-6 / 60.0  # 1 mL/min in m³/s (definition)
PLASMA_VISCOSITY_PA_S = _constant("plasma_viscosity_pa_s")  # recalled, rheology.yaml
DISCHARGE_HAEMATOCRIT = _constant("discharge_haematocrit")  # recalled, rheology.yaml
ARTERIAL_INLET_PRESSURE_MMHG = _constant("arterial_inlet_pressure_mmhg")  # Karch 1999 (unconfirmed)
ARTERIAL_TERMINAL_PRESSURE_MMHG = _constant("arterial_terminal_pressure_mmhg")  # Karch 1999 (unconfirmed)


def relative_apparent_viscosity(diameter_um: np.ndarray | float, haematocrit: float) -> np.ndarray:
    """Pries 1992 in-vitro relative apparent viscosity μ_app/μ_plasma (vascular.md §2.2).

    μ₀.₄₅ = 220·e^(−1.3D) + 3.2 − 2.44·e^(−0.06·D^0.645);
    C = (0.8 + e^(−0.075D))·(−1 + 1/(1 + 10⁻¹¹·D¹²)) + 1/(1 + 10⁻¹¹·D¹²);
    μ_rel = 1 + (μ₀.₄₅ − 1)·((1 − H)^C − 1)/((1 − 0.45)^C − 1), with D the lumen diameter in µm and H
    the discharge haematocrit. Source: Pries, Neuhaus & Gaehtgens 1992, Am J Physiol 263:H1770, as
    implemented in public microcirculation code (status unconfirmed against the paper, rheology.yaml).
    It makes small vessels cheaper to perfuse than bulk blood (minimum ≈ 1.27 near D ≈ 7 µm).
    """
    h = float(haematocrit)
    if not 0.0 <= h < 1.0:
        raise PhysicsError(f"discharge haematocrit {h} is outside 0 ≤ H < 1", "give a fraction, e.g. 0.45")
    d = np.asarray(diameter_um, dtype=np.float64)
    if np.any(~np.isfinite(d)) or np.any(d <= 0.0):
        raise PhysicsError("a vessel diameter is zero, negative or not finite", "give positive diameters (µm)")
    mu45 = 220.0 * np.exp(-1.3 * d) + 3.2 - 2.44 * np.exp(-0.06 * d**0.645)
    shape = 1.0 / (1.0 + 1e-11 * d**12)
    c = (0.8 + np.exp(-0.075 * d)) * (-1.0 + shape) + shape
    if h == 0.0:
        return np.ones_like(d)
    return 1.0 + (mu45 - 1.0) * ((1.0 - h) ** c - 1.0) / ((1.0 - 0.45) ** c - 1.0)


def apparent_viscosity_pa_s(
    radius_m: np.ndarray | float,
    haematocrit: float = DISCHARGE_HAEMATOCRIT,
    plasma_viscosity_pa_s: float = PLASMA_VISCOSITY_PA_S,
) -> np.ndarray:
    """Apparent blood viscosity (Pa·s) in a tube of radius ``radius_m``: μ_rel(2r, H)·μ_plasma."""
    return relative_apparent_viscosity(2.0e6 * np.asarray(radius_m, dtype=np.float64), haematocrit) * float(
        plasma_viscosity_pa_s
    )


def poiseuille_resistance_pa_s_m3(
    length_m: np.ndarray | float, radius_m: np.ndarray | float, viscosity_pa_s: np.ndarray | float
) -> np.ndarray:
    """Hagen–Poiseuille resistance 8μL/(πr⁴) in Pa·s/m³ (laminar, fully developed, rigid tube)."""
    return (
        8.0 * np.asarray(viscosity_pa_s) * np.asarray(length_m) / (np.pi * np.asarray(radius_m, dtype=np.float64) ** 4)
    )


@dataclass(frozen=True, eq=False)
class FlowSolution:
    """Steady flow in ``tree``; arrays are per node (segment ``n`` runs ``parent[n] → n``).

    ``flow_m3_s[0]`` is the inlet flow; ``terminal_outflow_m3_s[t]`` leaves terminal
    ``terminal_nodes[t]``. ``resistance_pa_s_m3[0]`` and ``viscosity_pa_s[0]`` belong to no
    segment (0 and the inlet vessel's viscosity).
    """

    tree: VesselTree
    pressure_pa: np.ndarray
    flow_m3_s: np.ndarray
    resistance_pa_s_m3: np.ndarray
    viscosity_pa_s: np.ndarray
    terminal_nodes: np.ndarray
    terminal_outflow_m3_s: np.ndarray

    @property
    def pressure_mmhg(self) -> np.ndarray:
        return self.pressure_pa / MMHG_PA

    @property
    def flow_ml_min(self) -> np.ndarray:
        return self.flow_m3_s / ML_MIN_M3_S

    @property
    def inlet_flow_m3_s(self) -> float:
        return float(self.flow_m3_s[0])

    @property
    def inlet_flow_ml_min(self) -> float:
        return self.inlet_flow_m3_s / ML_MIN_M3_S

    @property
    def terminal_outflow_ml_min(self) -> np.ndarray:
        return self.terminal_outflow_m3_s / ML_MIN_M3_S

    def wall_shear_stress_pa(self) -> np.ndarray:
        """Poiseuille wall shear 4μQ/(πr³) of every segment (``[0]``: the inlet vessel)."""
        r = self.tree.radius_mm * 1e-3
        return 4.0 * self.viscosity_pa_s * np.abs(self.flow_m3_s) / (np.pi * r**3)

    def node_imbalance_m3_s(self) -> np.ndarray:
        """Inflow − outflow at every node (segment in, child segments and terminal drain out)."""
        tree = self.tree
        out = np.zeros(tree.n_nodes)
        seg = np.flatnonzero(tree.parent >= 0)
        np.add.at(out, tree.parent[seg], self.flow_m3_s[seg])
        out[self.terminal_nodes] += self.terminal_outflow_m3_s
        return self.flow_m3_s - out

    def max_relative_imbalance(self) -> float:
        """max |ΣQ_in − ΣQ_out| / |Q_root| over all nodes (mass conservation; vascular.md §8 case 1)."""
        q0 = abs(self.inlet_flow_m3_s)
        if q0 == 0.0:
            return float(np.max(np.abs(self.node_imbalance_m3_s()), initial=0.0))
        return float(np.max(np.abs(self.node_imbalance_m3_s())) / q0)

    def tree_with_flows(self) -> VesselTree:
        """The tree with its flows in mL/min (negative where a segment carries flow toward the root)."""
        return VesselTree(
            points_mm=self.tree.points_mm,
            parent=self.tree.parent,
            radius_mm=self.tree.radius_mm,
            flow=self.flow_ml_min,
            name=self.tree.name,
            kind=self.tree.kind,
            flow_unit="ml_min",
        )


def _per_terminal(value: float | np.ndarray, n_terminals: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_terminals, float(arr))
    arr = arr.reshape(-1)
    if arr.shape[0] != n_terminals:
        raise PhysicsError(
            f"{what} has {arr.shape[0]} values for {n_terminals} terminals",
            "give one value, or one per terminal in the order of tree.terminals",
        )
    if not np.all(np.isfinite(arr)):
        raise PhysicsError(f"{what} has non-finite values", "give finite numbers")
    return arr


def solve_flow(
    tree: VesselTree,
    *,
    inlet_pressure_mmhg: float | None = None,
    inlet_flow_ml_min: float | None = None,
    outlet_pressure_mmhg: float | np.ndarray = ARTERIAL_TERMINAL_PRESSURE_MMHG,
    terminal_resistance_pa_s_m3: float | np.ndarray | None = None,
    viscosity_pa_s: float | None = None,
    haematocrit: float = DISCHARGE_HAEMATOCRIT,
    plasma_viscosity_pa_s: float = PLASMA_VISCOSITY_PA_S,
) -> FlowSolution:
    """Steady Poiseuille flow in ``tree`` (radii and points in mm).

    The root gets ``inlet_pressure_mmhg`` or ``inlet_flow_ml_min`` (at most one; neither means the
    arterial default of rheology.yaml, 100 mmHg). Terminals drain to ``outlet_pressure_mmhg`` (one value
    or one per terminal, order of ``tree.terminals``), directly or through ``terminal_resistance_pa_s_m3``.
    Viscosity is Fåhræus–Lindqvist at ``haematocrit`` unless a Newtonian ``viscosity_pa_s`` is given.
    """
    tree.validate()
    if tree.n_nodes < 2:
        raise StructureError(f"vessel tree {tree.name!r} has no segment", "give a tree with at least one segment")
    if inlet_pressure_mmhg is not None and inlet_flow_ml_min is not None:
        raise PhysicsError("both an inlet pressure and an inlet flow were given", "prescribe one of them")
    if inlet_pressure_mmhg is None and inlet_flow_ml_min is None:
        inlet_pressure_mmhg = ARTERIAL_INLET_PRESSURE_MMHG
    n = tree.n_nodes
    seg = np.flatnonzero(tree.parent >= 0)
    up = tree.parent[seg]
    length_m = tree.segment_lengths_mm * 1e-3
    if np.any(length_m[seg] <= 0.0):
        bad = int(seg[np.flatnonzero(length_m[seg] <= 0.0)[0]])
        raise StructureError(
            f"vessel tree {tree.name!r} has a zero-length segment (node {bad})",
            "merge coincident nodes before solving the flow",
        )
    radius_m = tree.radius_mm * 1e-3
    if viscosity_pa_s is None:
        mu = apparent_viscosity_pa_s(radius_m, haematocrit, plasma_viscosity_pa_s)
    else:
        if not (np.isfinite(viscosity_pa_s) and viscosity_pa_s > 0.0):
            raise PhysicsError(f"viscosity {viscosity_pa_s} Pa·s is not positive", "give e.g. 3.5e-3 Pa·s")
        mu = np.full(n, float(viscosity_pa_s))
    resistance = np.zeros(n)
    resistance[seg] = poiseuille_resistance_pa_s_m3(length_m[seg], radius_m[seg], mu[seg])
    g = 1.0 / resistance[seg]

    terminals = tree.terminals
    p_out = _per_terminal(outlet_pressure_mmhg, terminals.size, "outlet_pressure_mmhg") * MMHG_PA
    # solve for pressure above a reference to keep the unknowns small (round-off in differences)
    p_ref = float(p_out.min())
    fixed = np.zeros(n, dtype=bool)
    p_fixed = np.zeros(n)
    rhs = np.zeros(n)
    diag_extra = np.zeros(n)
    if terminal_resistance_pa_s_m3 is None:
        fixed[terminals] = True
        p_fixed[terminals] = p_out - p_ref
        g_term = None
    else:
        r_term = _per_terminal(terminal_resistance_pa_s_m3, terminals.size, "terminal_resistance_pa_s_m3")
        if np.any(r_term <= 0.0):
            raise PhysicsError("a terminal resistance is zero or negative", "give positive Pa·s/m³ or None")
        g_term = 1.0 / r_term
        diag_extra[terminals] += g_term
        rhs[terminals] += g_term * (p_out - p_ref)
    if inlet_pressure_mmhg is not None:
        fixed[0] = True
        p_fixed[0] = float(inlet_pressure_mmhg) * MMHG_PA - p_ref
    else:
        rhs[0] += float(inlet_flow_ml_min) * ML_MIN_M3_S

    # Kirchhoff: Σ_j g_ij (p_i − p_j) + g_term,i (p_i − p_out,i) = q_i; leaves-first order ⇒ no fill
    order = tree.order[::-1]
    free = order[~fixed[order]]
    pos = np.full(n, -1, dtype=np.int64)
    pos[free] = np.arange(free.size)
    diag = diag_extra.copy()
    np.add.at(diag, up, g)
    np.add.at(diag, seg, g)
    for a, b in ((up, seg), (seg, up)):
        # couplings to held nodes move to the right-hand side
        to_fixed = (pos[a] >= 0) & fixed[b]
        np.add.at(rhs, a[to_fixed], g[to_fixed] * p_fixed[b[to_fixed]])
    both = (pos[up] >= 0) & (pos[seg] >= 0)
    rows = np.concatenate([pos[free], pos[up[both]], pos[seg[both]]])
    cols = np.concatenate([pos[free], pos[seg[both]], pos[up[both]]])
    vals = np.concatenate([diag[free], -g[both], -g[both]])
    pressure = p_fixed.copy()
    if free.size:
        matrix = sp.csc_matrix((vals, (rows, cols)), shape=(free.size, free.size))
        solution = spsolve(matrix, rhs[free], permc_spec="NATURAL")
        pressure[free] = np.atleast_1d(solution)
    if not np.all(np.isfinite(pressure)):
        raise PhysicsError(
            f"the flow solve in vessel tree {tree.name!r} gave non-finite pressures",
            "check that every terminal drains to an outlet (pressure or resistance)",
        )
    flow = np.zeros(n)
    flow[seg] = (pressure[up] - pressure[seg]) * g
    if g_term is None:
        outflow = flow[terminals].copy()
    else:
        outflow = g_term * (pressure[terminals] - (p_out - p_ref))
    if inlet_flow_ml_min is not None:
        flow[0] = float(inlet_flow_ml_min) * ML_MIN_M3_S
    else:
        flow[0] = float(np.sum(flow[seg[up == 0]]))
    return FlowSolution(
        tree=tree,
        pressure_pa=pressure + p_ref,
        flow_m3_s=flow,
        resistance_pa_s_m3=resistance,
        viscosity_pa_s=mu,
        terminal_nodes=terminals,
        terminal_outflow_m3_s=outflow,
    )
