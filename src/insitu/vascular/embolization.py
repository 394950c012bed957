"""Particle and Lipiodol embolization through a vessel tree: lodging, occlusion, flow redistribution, stasis, reflux.

The model (vascular.md §2.3, §3, §3.1; numbers in ``embolics.yaml``):

* Transport. Embolic released at the catheter tip (node ``c``; the tip sits in segment ``c`` just above node ``c``)
  is mixed into the blood at every node and leaves it along every outgoing flow in proportion to that flow
  (Bomberna 2022: particle distribution ≈ flow distribution below the first bifurcations). Deterministic by
  default (expected amounts, fractional particles); ``rng`` switches to seeded Monte Carlo (multinomial splits).
* Lodging. A particle of diameter d stops at the entrance of the first segment on its path whose lumen is
  narrower than d; a particle that fits every segment on its path lodges in its terminal's unresolved bed.
  Lipiodol (transport "fluid") deforms through every resolved vessel and always reaches the terminal beds.
* Occlusion. A lodged sphere plugs the segment it lodged in once ``particles_per_occlusion`` of them are there
  (Laurent 2004: median one sphere per occluded vessel). The bed below a terminal of lumen D is a Murray tree
  holding (D/d)³ vessels of lumen d, so it is plugged once Σ(d/D)³ over its particles reaches
  ``particles_per_occlusion``; Lipiodol plugs it once the oil fills the bed's sinusoidal volume (bed tissue
  volume × ``bed_fill_fraction``). An occluded segment and everything below it is dropped from the network
  (dead-end branches carry no blood flow exactly, so the sparse solve stays well-posed), and the flow is
  re-solved with :func:`solve_flow`.
* Cast. A plug does not stop the embolic that keeps arriving: it stacks up behind the plug (histology: spheres
  stacked in the occluded vessels, Laurent 2004 mean 3.1 per vessel) and fills the stagnant lumen back to the
  last patent branch point, so the embolic forms a cast of the embolized vessels. Once a site is plugged, what
  reaches it fills, before anything else, the lumen of the segments that turn stagnant with it: the terminal
  segment above a plugged bed, then, once all their children are blocked, the ancestors, up to the last node
  with a patent branch (never a segment holding the catheter). A segment's cast holds ``cast_fill_fraction`` ×
  its lumen volume of embolic, from the size bins that fit its lumen (d ≤ lumen; spheres: random close packing
  0.64, Berryman 1983; Lipiodol: 1, the oil displaces the blood of the arterioles as it does in the sinusoids,
  so one rule holds for the resolved vessels and the bed). Quasi-static: the site keeps its flow, and so the
  flow split of everything else is unchanged, until its cast is complete; then it is occluded. So, without
  reflux, the volume to complete stasis is the plugs plus the fill fraction × the lumen volume of the segments
  below the tip that the embolic can enter (a segment plugged at its entrance lies beyond its plug: no cast).
  The unresolved bed's own arterioles (between the terminal calibre and the bed plug) get no cast.
* Injection and reflux. The catheter lies in every segment from the root to ``c``; there it leaves a concentric
  annulus whose Poiseuille resistance is used through an equivalent radius. The injection (rate q) is a flow
  source at the tip, superposed on the blood flow of the same linear network: it raises the tip pressure, pushes
  the share G_down/(G_down + G_up) of q into the bed below the tip and the rest back up the catheter segment,
  where it opposes the antegrade flow Q_c. So the bed accepts its antegrade flow at the driving pressure plus
  what the injection overpressure adds; reflux starts when q·G_up/(G_down + G_up) > Q_c, and the retrograde
  excess carries its share of the embolic to the parent node, where the flow takes it into the other branches
  (non-target deposition) or, when it exceeds their flow too, further up; what reaches a pressure-held root
  leaves the tree (``escaped``; a flow-prescribed root takes nothing back). As the bed embolizes G_down and
  Q_c fall, so reflux grows toward the end. Dead-end branches keep their resistance for the injection.
* Increments. Event-driven: each increment injects exactly what fills the next site or cast segment (or, if larger,
  ``min_increment_fraction`` of the dose, default 0; sites and casts may then overfill by up to that much; Monte
  Carlo batches are half the expected amount), then the occlusions are applied and the flow re-solved, until the dose
  is used up or the antegrade flow in the catheter segment falls to the endpoint fraction of its value before
  the injection (stasis; endpoints of Nouri 2019, residual flows in ``embolics.yaml``).

Not modelled: pulsatility, particle inertia and streamline (non-mixing) effects, compressible or aggregating
particles, partial occlusion of a bed before it is full, the flow through a growing cast (porous column), the
looser packing next to the wall of a lumen only a few spheres wide, Lipiodol passage into the portal venules, the
viscosity of contrast medium (the injectate has the blood's viscosity in the network). SI units inside.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numba
import numpy as np
import yaml
from scipy import stats

from insitu.errors import PhysicsError, PlanError, StructureError
from insitu.vascular.flow import (
    ARTERIAL_TERMINAL_PRESSURE_MMHG,
    ML_MIN_M3_S,
    FlowSolution,
    apparent_viscosity_pa_s,
    poiseuille_resistance_pa_s_m3,
    solve_flow,
)
from insitu.vascular.tree import VesselTree

TRANSPORTS = ("particle", "fluid")
DISTRIBUTIONS = ("truncated_normal", "uniform")
_FULL = 1.0 - 1e-9  # a site whose fill reaches this is occluded (round-off of the event time)
_UM3_ML = 1e-12  # 1 µm³ in mL


@cache
def load_embolics() -> dict[str, Any]:
    """The embolic table ``embolics.yaml`` (agents, model rules, endpoints; values with sources) as a dictionary."""
    text = resources.files("insitu.vascular").joinpath("embolics.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _model_value(name: str) -> float:
    return float(load_embolics()["model"][name]["value"])


PARTICLES_PER_OCCLUSION = _model_value("particles_per_occlusion")  # Laurent 2004 median (confirmed)
BED_BRANCHING_EXPONENT = _model_value("bed_branching_exponent")  # Murray cube law (recalled)
SD_FRACTION_OF_WIDTH = _model_value("truncated_normal_sd_fraction_of_width")  # design
ARTERIAL_PERFUSION_ML_MIN_ML = _model_value("arterial_perfusion_ml_min_ml")  # PMID 10981998 (derived)
SETTLED_PACKING_FRACTION = _model_value("settled_packing_fraction")  # random close packing (Berryman 1983)
FLUID_LUMEN_FILL_FRACTION = _model_value("fluid_lumen_fill_fraction")  # oil fills a stagnant lumen (design)


def stasis_endpoints() -> dict[str, float]:
    """Endpoint name → residual antegrade flow fraction at the catheter (``embolics.yaml`` ``endpoints``)."""
    return {name: float(entry["value"]) for name, entry in load_embolics()["endpoints"].items()}


def particle_volume_from_settled_ml(settled_volume_ml: float) -> float:
    """Sphere volume (mL) in a settled bead volume such as a vial's (random close packing, 0.64)."""
    v = float(settled_volume_ml)
    if not (math.isfinite(v) and v >= 0.0):
        raise PhysicsError(f"settled bead volume {settled_volume_ml} mL is negative or not finite", "give mL ≥ 0")
    return v * SETTLED_PACKING_FRACTION


# ---------------------------------------------------------------------------------------------- agents
@dataclass(frozen=True)
class EmbolicAgent:
    """An embolic: a size class (µm) with a size distribution, transported as particles or as a fluid (Lipiodol)."""

    name: str
    diameter_min_um: float
    diameter_max_um: float
    transport: str = "particle"
    distribution: str = "truncated_normal"
    bed_fill_fraction: float | None = None
    label: str = ""

    def __post_init__(self) -> None:
        lo, hi = float(self.diameter_min_um), float(self.diameter_max_um)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
            raise PlanError(
                f"embolic {self.name!r} has size class {self.diameter_min_um}-{self.diameter_max_um} µm",
                "give finite diameters with 0 < minimum ≤ maximum (µm)",
            )
        if self.transport not in TRANSPORTS:
            raise PlanError(f"unknown embolic transport {self.transport!r}", f"use one of {', '.join(TRANSPORTS)}")
        if self.distribution not in DISTRIBUTIONS:
            raise PlanError(
                f"unknown size distribution {self.distribution!r}", f"use one of {', '.join(DISTRIBUTIONS)}"
            )
        if self.transport == "fluid":
            f = self.bed_fill_fraction
            if f is None or not (math.isfinite(f) and 0.0 < f <= 1.0):
                raise PlanError(
                    f"fluid embolic {self.name!r} needs a bed fill fraction in (0, 1], got {f}",
                    "give bed_fill_fraction (fillable blood-volume fraction of the terminal beds)",
                )

    def size_bins(self, n_bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Equal-probability size bins: diameters (µm) at the bins' probability midpoints, and weights (sum 1)."""
        n = int(n_bins)
        if n < 1:
            raise PlanError(f"{n_bins} size bins", "use at least one size bin")
        lo, hi = float(self.diameter_min_um), float(self.diameter_max_um)
        if lo == hi:
            return np.array([lo]), np.array([1.0])
        u = (np.arange(n) + 0.5) / n
        if self.distribution == "uniform":
            d = lo + u * (hi - lo)
        else:
            mean, sd = 0.5 * (lo + hi), SD_FRACTION_OF_WIDTH * (hi - lo)
            d = stats.truncnorm.ppf(u, (lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd)
        return np.asarray(d, dtype=np.float64), np.full(n, 1.0 / n)

    @property
    def cast_fill_fraction(self) -> float:
        """Embolic volume per lumen volume in a stagnant vessel's cast: random close packing for spheres, 1 for oil."""
        return FLUID_LUMEN_FILL_FRACTION if self.transport == "fluid" else SETTLED_PACKING_FRACTION

    def mean_particle_volume_ml(self, n_bins: int = 8) -> float:
        """Mean volume of one particle (or nominal droplet) over the binned size distribution (mL)."""
        d, w = self.size_bins(n_bins)
        return float(np.sum(w * np.pi / 6.0 * d**3) * _UM3_ML)


def embolic_agent_names() -> list[str]:
    """Names of the agents in ``embolics.yaml``."""
    return list(load_embolics()["agents"])


def embolic_agent(name: str, *, drug_loaded: bool = False) -> EmbolicAgent:
    """The agent ``name`` of ``embolics.yaml``; ``drug_loaded`` shrinks a drug-eluting bead by its loading shrink."""
    agents = load_embolics()["agents"]
    key = str(name).strip().lower()
    if key not in agents:
        close = difflib.get_close_matches(key, list(agents), n=3, cutoff=0.5)
        fix = f"did you mean {', '.join(close)}" if close else f"use one of {', '.join(agents)}"
        raise PlanError(f"unknown embolic agent {name!r}", fix)
    entry = agents[key]
    scale = 1.0
    if drug_loaded:
        if "loading_shrink_fraction" not in entry:
            raise PlanError(
                f"embolic {key!r} has no drug-loading shrink on record",
                "load only drug-eluting beads (dc_bead_*), or pass drug_loaded=False",
            )
        scale = 1.0 - float(entry["loading_shrink_fraction"]["value"])
    fill = entry.get("bed_fill_fraction")
    return EmbolicAgent(
        name=key + ("+drug" if drug_loaded else ""),
        diameter_min_um=float(entry["diameter_min_um"]["value"]) * scale,
        diameter_max_um=float(entry["diameter_max_um"]["value"]) * scale,
        transport=str(entry["transport"]),
        distribution=str(entry["distribution"]["value"]),
        bed_fill_fraction=None if fill is None else float(fill["value"]),
        label=str(entry.get("label", "")),
    )


# ---------------------------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class EmbolizationResult:
    """What one embolization did. Arrays are per node (segment n runs parent[n] → n) unless named per terminal;
    per-terminal arrays follow ``terminal_nodes`` (= ``tree.terminals``). Counts are expected values in the
    deterministic mode (fractional) and integers in Monte Carlo mode; volumes are embolic volumes (mL). Lodged
    amounts include the cast stacked in a segment's stagnant lumen (``cast_volume_ml``, also per node)."""

    tree: VesselTree
    agent: EmbolicAgent
    catheter_node: int
    endpoint_fraction: float | None
    occluded: np.ndarray  # bool: plugged site (entrance or full bed, cast complete); it and all below carry no flow
    lodged_count: np.ndarray  # at the segment's entrance, in its lumen's cast and, at terminals, in the bed
    lodged_volume_ml: np.ndarray
    in_target: np.ndarray  # bool: the catheter's subtree (the tip node and its descendants)
    terminal_nodes: np.ndarray
    terminal_flow_before_ml_min: np.ndarray  # no catheter, no embolic
    terminal_flow_after_ml_min: np.ndarray  # catheter withdrawn, occlusions in place
    flow_factor: np.ndarray  # after / before (1 where there was no flow before)
    nontarget_volume_ml: np.ndarray  # per terminal: lodged outside the catheter's subtree, in that territory
    deposit_volume_ml: np.ndarray  # per terminal: everything lodged (plugs, casts, beds), handed down by flow before
    injected_count: float
    injected_volume_ml: float
    escaped_count: float  # left the tree upstream through a pressure-held inlet
    escaped_volume_ml: float
    refluxed_count: float  # left the tip retrograde along the catheter (all of it ends outside the target)
    stasis_reached: bool
    volume_at_stasis_ml: float  # NaN unless stasis was reached
    n_resolves: int  # flow solves after the first, one per change of the occlusion state
    max_relative_imbalance: float  # max node |ΣQin − ΣQout| / Q_root of the final flow
    final_flow_m3_s: np.ndarray  # per node after the procedure ([0]: inlet flow)
    history_volume_ml: np.ndarray  # embolic volume injected at each flow solve
    history_tip_flow_fraction: np.ndarray  # antegrade catheter-segment flow / its value before the injection
    cast_volume_ml: np.ndarray  # per node: embolic packed in the segment's stagnant lumen (part of lodged_volume_ml)
    cast_fill_fraction: float  # embolic volume per lumen volume in a cast (0: no cast)

    @property
    def refluxed_fraction(self) -> float:
        """Fraction of the injected embolic that refluxed out of the catheter's vessel."""
        return self.refluxed_count / self.injected_count if self.injected_count > 0 else 0.0

    @property
    def plug_volume_ml(self) -> float:
        """Embolic lodged at segment entrances and in terminal beds (everything lodged but the casts)."""
        return float(np.sum(self.lodged_volume_ml) - np.sum(self.cast_volume_ml))

    @property
    def target_volume_ml(self) -> float:
        """Embolic volume lodged inside the catheter's subtree."""
        return float(np.sum(self.lodged_volume_ml[self.in_target]))

    def terminal_share(self) -> np.ndarray:
        """Share of the injected embolic lodged at each terminal (its segment entrance and its bed)."""
        if self.injected_count <= 0:
            return np.zeros(self.terminal_nodes.size)
        return self.lodged_count[self.terminal_nodes] / self.injected_count


# ---------------------------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _open_mask(
    parent: np.ndarray, order: np.ndarray, is_terminal: np.ndarray, closed: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """Nodes still in the flow network: no closed segment above them, and an open terminal below them."""
    n = parent.shape[0]
    alive = np.zeros(n, dtype=np.bool_)
    alive[0] = True
    for i in range(1, n):
        m = order[i]
        alive[m] = alive[parent[m]] and not closed[m]
    has_outlet = np.zeros(n, dtype=np.bool_)
    for i in range(n - 1, -1, -1):
        m = order[i]
        if is_terminal[m] and alive[m]:
            has_outlet[m] = True
        if has_outlet[m] and m != 0:
            has_outlet[parent[m]] = True
    return alive & has_outlet


@numba.njit(cache=True, error_model="numpy")
def _spread_down(
    start: int,
    amount: float,
    kids: np.ndarray,
    offsets: np.ndarray,
    branch_g: np.ndarray,
    flow: np.ndarray,
    drain: np.ndarray,
    stack_node: np.ndarray,
    stack_amount: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Send ``amount`` of flow from node ``start`` down its subtree, splitting by branch conductance."""
    stack_node[0] = start
    stack_amount[0] = amount
    top = 1
    while top > 0:
        top -= 1
        m = stack_node[top]
        w = stack_amount[top]
        lo, hi = offsets[m], offsets[m + 1]
        if hi == lo:
            drain[m] += w
            continue
        total = 0.0
        for j in range(lo, hi):
            total += branch_g[kids[j]]
        if total <= 0.0:
            continue
        for j in range(lo, hi):
            k = kids[j]
            share = w * branch_g[k] / total
            if share > 0.0:
                flow[k] += share
                stack_node[top] = k
                stack_amount[top] = share
                top += 1


@numba.njit(cache=True, error_model="numpy")
def _injection_response(
    parent: np.ndarray,
    kids: np.ndarray,
    offsets: np.ndarray,
    order: np.ndarray,
    r_seg: np.ndarray,
    r_bed: np.ndarray,
    tip: int,
    root_held: bool,
) -> tuple[np.ndarray, np.ndarray, float, bool]:  # pragma: no cover - numba
    """Flows caused by a unit source at ``tip`` with every boundary at zero (superposition on the blood flow).

    Returns segment flows (positive parent → child), terminal-bed drains, the flow absorbed by a pressure-held
    root, and False when the source has no way out. ``r_seg`` is inf for segments out of the network.
    """
    n = parent.shape[0]
    r_down = np.zeros(n)
    for i in range(n - 1, -1, -1):
        m = order[i]
        lo, hi = offsets[m], offsets[m + 1]
        if hi == lo:
            r_down[m] = r_bed[m]
        else:
            s = 0.0
            for j in range(lo, hi):
                k = kids[j]
                s += 1.0 / (r_seg[k] + r_down[k])
            r_down[m] = 1.0 / s
    branch_g = np.zeros(n)
    for m in range(1, n):
        branch_g[m] = 1.0 / (r_seg[m] + r_down[m])
    path = np.empty(n, dtype=np.int64)
    n_path = 0
    m = tip
    while m != 0:
        path[n_path] = m
        n_path += 1
        m = parent[m]
    y_up = np.zeros(n)  # conductance to ground through the segment above each path node
    y_up[0] = np.inf if root_held else 0.0
    for i in range(n_path - 1, -1, -1):
        m = path[i]
        p = parent[m]
        s = y_up[p]
        for j in range(offsets[p], offsets[p + 1]):
            if kids[j] != m:
                s += branch_g[kids[j]]
        y_up[m] = 1.0 / (r_seg[m] + 1.0 / s)
    flow = np.zeros(n)
    drain = np.zeros(n)
    absorbed = 0.0
    g_down = 1.0 / r_down[tip]
    g_up = y_up[tip]
    if np.isinf(g_up):
        up = 1.0
    elif np.isinf(g_down):
        up = 0.0
    elif g_up + g_down <= 0.0:
        return flow, drain, 0.0, False
    else:
        up = g_up / (g_up + g_down)
    stack_node = np.empty(n, dtype=np.int64)
    stack_amount = np.empty(n)
    if 1.0 - up > 0.0:
        _spread_down(tip, 1.0 - up, kids, offsets, branch_g, flow, drain, stack_node, stack_amount)
    if tip == 0:
        return flow, drain, up, True
    w = up
    m = tip
    while w > 0.0 and m != 0:
        flow[m] -= w
        p = parent[m]
        if p == 0 and root_held:
            absorbed += w
            break
        total = y_up[p]
        for j in range(offsets[p], offsets[p + 1]):
            if kids[j] != m:
                total += branch_g[kids[j]]
        if total <= 0.0:
            break
        for j in range(offsets[p], offsets[p + 1]):
            k = kids[j]
            if k != m:
                share = w * branch_g[k] / total
                if share > 0.0:
                    flow[k] += share
                    _spread_down(k, share, kids, offsets, branch_g, flow, drain, stack_node, stack_amount)
        w = w * y_up[p] / total
        m = p
    return flow, drain, absorbed, True


@numba.njit(cache=True)
def _route_expected(
    parent: np.ndarray,
    kids: np.ndarray,
    offsets: np.ndarray,
    flow: np.ndarray,
    drain: np.ndarray,
    escape: float,
    tip: int,
    amounts: np.ndarray,
    diameter_um: np.ndarray,
    lumen_um: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Expected lodging of ``amounts`` (per size bin) released at ``tip`` in a fixed flow field.

    Returns (lodged at segment entrances [n, bins], lodged in terminal beds [n, bins], escaped through the root
    [bins], refluxed out of the tip [bins]).
    """
    n = parent.shape[0]
    nb = amounts.shape[0]
    arrived = np.zeros((n, nb))
    seg = np.zeros((n, nb))
    bed = np.zeros((n, nb))
    esc = np.zeros(nb)
    refl = np.zeros(nb)
    for b in range(nb):
        arrived[tip, b] = amounts[b]
    stack = np.empty(n + 1, dtype=np.int64)
    stack[0] = tip
    top = 1
    while top > 0:
        top -= 1
        m = stack[top]
        total = drain[m]
        lo, hi = offsets[m], offsets[m + 1]
        for j in range(lo, hi):
            if flow[kids[j]] > 0.0:
                total += flow[kids[j]]
        back = m != 0 and flow[m] < 0.0
        if back:
            total -= flow[m]
        if m == 0:
            total += escape
        if total <= 0.0:  # nowhere to go (cannot happen with a conserved flow): stays at the node
            for b in range(nb):
                seg[m, b] += arrived[m, b]
            continue
        for j in range(lo, hi):
            k = kids[j]
            if flow[k] > 0.0:
                s = flow[k] / total
                for b in range(nb):
                    x = arrived[m, b] * s
                    if diameter_um[b] > lumen_um[k]:
                        seg[k, b] += x
                    else:
                        arrived[k, b] += x
                stack[top] = k
                top += 1
        if back:
            s = -flow[m] / total
            p = parent[m]
            for b in range(nb):
                x = arrived[m, b] * s
                if m == tip:
                    refl[b] += x
                if diameter_um[b] > lumen_um[m]:
                    seg[m, b] += x
                else:
                    arrived[p, b] += x
            stack[top] = p
            top += 1
        if drain[m] > 0.0:
            s = drain[m] / total
            for b in range(nb):
                bed[m, b] += arrived[m, b] * s
        if m == 0 and escape > 0.0:
            s = escape / total
            for b in range(nb):
                esc[b] += arrived[m, b] * s
                if tip == 0:
                    refl[b] += arrived[m, b] * s
    return seg, bed, esc, refl


def _route_sampled(
    topo: _Topology,
    field: _Field,
    counts: np.ndarray,
    diameter_um: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Monte Carlo version of :func:`_route_expected`: integer particles, multinomial splits at every node."""
    n, nb = topo.parent.size, counts.size
    seg = np.zeros((n, nb))
    bed = np.zeros((n, nb))
    esc = np.zeros(nb)
    refl = np.zeros(nb)
    arrived = {field.tip: counts.astype(np.int64)}
    stack = [field.tip]
    while stack:
        m = stack.pop()
        here = arrived.pop(m)
        kids = topo.kids[topo.offsets[m] : topo.offsets[m + 1]]
        kids = kids[field.flow[kids] > 0.0]
        exits = [field.flow[k] for k in kids]
        labels: list[tuple[str, int]] = [("child", int(k)) for k in kids]
        if m != 0 and field.flow[m] < 0.0:
            exits.append(-field.flow[m])
            labels.append(("back", int(topo.parent[m])))
        if field.drain[m] > 0.0:
            exits.append(field.drain[m])
            labels.append(("bed", m))
        if m == 0 and field.escape > 0.0:
            exits.append(field.escape)
            labels.append(("escape", 0))
        if not exits:
            seg[m] += here
            continue
        p = np.asarray(exits) / np.sum(exits)
        split = np.array([rng.multinomial(int(c), p) for c in here]).T  # [exit, bin]
        for (kind, node), x in zip(labels, split, strict=True):
            if not x.any():
                continue
            if kind == "bed":
                bed[m] += x
            elif kind == "escape":
                esc += x
                if field.tip == 0:
                    refl += x
            else:
                seg_node = node if kind == "child" else m
                if kind == "back" and m == field.tip:
                    refl += x
                stuck = diameter_um > topo.lumen_um[seg_node]
                seg[seg_node] += np.where(stuck, x, 0)
                go = np.where(stuck, 0, x)
                if go.any():
                    arrived[node] = arrived.get(node, 0) + go
                    stack.append(node)
    return seg, bed, esc, refl


# ---------------------------------------------------------------------------------------------- network state
@dataclass(frozen=True)
class _Topology:
    parent: np.ndarray
    kids: np.ndarray
    offsets: np.ndarray
    order: np.ndarray
    is_terminal: np.ndarray
    terminals: np.ndarray
    lumen_um: np.ndarray


@dataclass(frozen=True)
class _Boundary:
    inlet_pressure_mmhg: float | None
    inlet_flow_ml_min: float | None
    outlet_pressure_mmhg: np.ndarray  # per terminal
    terminal_resistance_pa_s_m3: np.ndarray | None  # per terminal
    viscosity_pa_s: float | None

    @property
    def root_held(self) -> bool:
        return self.inlet_flow_ml_min is None


@dataclass(frozen=True)
class _Native:
    """Blood flow (no injection) of the open network, on the original node indexing."""

    flow: np.ndarray  # per node; [0] = inlet flow
    drain: np.ndarray  # terminal outflow per node
    solution: FlowSolution | None


@dataclass(frozen=True)
class _Field:
    """Blood flow plus the injection: what carries the embolic during one increment."""

    tip: int
    flow: np.ndarray
    drain: np.ndarray
    escape: float


def _topology(tree: VesselTree) -> _Topology:
    parent = tree.parent.astype(np.int64)
    child_nodes = np.flatnonzero(parent >= 0)
    order = np.argsort(parent[child_nodes], kind="stable")
    counts = np.bincount(parent[child_nodes], minlength=tree.n_nodes)
    offsets = np.zeros(tree.n_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    terminals = tree.terminals
    is_terminal = np.zeros(tree.n_nodes, dtype=np.bool_)
    is_terminal[terminals] = True
    return _Topology(
        parent=parent,
        kids=child_nodes[order].astype(np.int64),
        offsets=offsets,
        order=tree.order.astype(np.int64),
        is_terminal=is_terminal,
        terminals=terminals,
        lumen_um=2000.0 * tree.radius_mm,
    )


def _solve_native(
    tree: VesselTree, topo: _Topology, radius_mm: np.ndarray, closed: np.ndarray, bc: _Boundary
) -> _Native:
    """Re-solve the blood flow with the closed segments (and what hangs below them) dropped."""
    n = tree.n_nodes
    keep = _open_mask(topo.parent, topo.order, topo.is_terminal, closed)
    flow, drain = np.zeros(n), np.zeros(n)
    if not keep[0] or np.count_nonzero(keep) < 2:
        return _Native(flow, drain, None)
    kept = np.flatnonzero(keep)
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[kept] = np.arange(kept.size)
    sub_parent = np.where(kept == 0, -1, new_index[topo.parent[kept]])
    sub = VesselTree(
        points_mm=tree.points_mm[kept],
        parent=sub_parent,
        radius_mm=radius_mm[kept],
        flow=np.zeros(kept.size),
        name=tree.name,
        kind=tree.kind,
    )
    tpos = np.searchsorted(topo.terminals, kept[topo.is_terminal[kept]])
    r_term = None if bc.terminal_resistance_pa_s_m3 is None else bc.terminal_resistance_pa_s_m3[tpos]
    sol = solve_flow(
        sub,
        inlet_pressure_mmhg=bc.inlet_pressure_mmhg,
        inlet_flow_ml_min=bc.inlet_flow_ml_min,
        outlet_pressure_mmhg=bc.outlet_pressure_mmhg[tpos],
        terminal_resistance_pa_s_m3=r_term,
        viscosity_pa_s=bc.viscosity_pa_s,
    )
    flow[kept] = sol.flow_m3_s
    drain[kept[sol.terminal_nodes]] = sol.terminal_outflow_m3_s
    return _Native(flow, drain, sol)


def _segment_resistance(tree: VesselTree, radius_mm: np.ndarray, viscosity_pa_s: float | None) -> np.ndarray:
    """Poiseuille resistance of every segment as :func:`solve_flow` computes it ([0] = inf: no segment).

    Dead-end branches keep theirs: they carry no blood flow but still conduct an injection (e.g. reflux along a
    catheter whose bed is full)."""
    radius_m = radius_mm * 1e-3
    mu = apparent_viscosity_pa_s(radius_m) if viscosity_pa_s is None else np.full(radius_m.size, viscosity_pa_s)
    out = np.full(tree.n_nodes, np.inf)
    seg = np.flatnonzero(tree.parent >= 0)
    out[seg] = poiseuille_resistance_pa_s_m3(tree.segment_lengths_mm[seg] * 1e-3, radius_m[seg], mu[seg])
    return out


class _Casts:
    """Casts in stagnant lumens: for each plugged node still in cast stage, the segment its arrivals now fill.

    A segment's capacity is the cast fill fraction × its lumen volume (0 for the catheter's segments). Arrivals at a
    plugged node fill the front segment's lumen (size bins that fit it) until it is full; the front then climbs to
    the parent segment when every other child of the parent carries no flow, and otherwise the node is occluded.
    """

    def __init__(
        self, tree: VesselTree, topo: _Topology, tip: int, fill_fraction: float, route_diameter_um: np.ndarray
    ) -> None:
        n = tree.n_nodes
        self.topo = topo
        self.on_catheter = np.zeros(n, dtype=bool)
        m = tip
        while m != 0:
            self.on_catheter[m] = True
            m = int(topo.parent[m])
        self.on_catheter[0] = True  # node 0 has no segment
        seg = np.flatnonzero(topo.parent >= 0)
        lumen_ml = np.zeros(n)
        lumen_ml[seg] = np.pi * tree.radius_mm[seg] ** 2 * tree.segment_lengths_mm[seg] * 1e-3
        self.capacity_ml = np.where(self.on_catheter, 0.0, fill_fraction * lumen_ml)
        self.fits = route_diameter_um[None, :] <= topo.lumen_um[:, None]  # [segment, bin]: the bin enters it
        self.front = np.full(n, -1, dtype=np.int64)  # per plugged node: the segment being filled, -1 if none
        self.count = np.zeros((n, route_diameter_um.size))  # particles in each segment's cast
        self.volume_ml = np.zeros(n)

    def active(self) -> np.ndarray:
        """Plugged nodes whose cast is still filling."""
        return np.flatnonzero(self.front >= 0)

    def _full(self, segment: int) -> bool:
        return bool(self.volume_ml[segment] >= _FULL * self.capacity_ml[segment])

    def _stagnant_with(self, segment: int, via: int, open_nodes: np.ndarray) -> bool:
        """Whether ``segment`` turns stagnant when its child ``via`` (-1: none, a terminal's bed) stops."""
        if self.on_catheter[segment]:
            return False
        kids = self.topo.kids[self.topo.offsets[segment] : self.topo.offsets[segment + 1]]
        return not np.any(open_nodes[kids[kids != via]])

    def start(self, node: int, via_bed: bool, open_nodes: np.ndarray) -> bool:
        """Node ``node`` has just been plugged (in its bed, or at its entrance); True when it occludes at once."""
        segment, via = (node, -1) if via_bed else (int(self.topo.parent[node]), node)
        if not self._stagnant_with(segment, via, open_nodes):
            return True
        self.front[node] = segment
        return self.climb(node, open_nodes)

    def climb(self, node: int, open_nodes: np.ndarray) -> bool:
        """Move the node's front past full segments; True (and no front) when nothing stagnant is left to fill."""
        segment = int(self.front[node])
        while self._full(segment):
            up = int(self.topo.parent[segment])
            if not self._stagnant_with(up, segment, open_nodes):
                self.front[node] = -1
                return True
            segment = up
        self.front[node] = segment
        return False

    def volume_rate_ml(self, nodes: np.ndarray, arrivals: np.ndarray, particle_ml: np.ndarray) -> np.ndarray:
        """Cast volume added per injected particle at each node's front (``arrivals``: [node, bin] per particle)."""
        fronts = self.front[nodes]
        return (arrivals[nodes] * self.fits[fronts]) @ particle_ml

    def take(self, nodes: np.ndarray, seg_i: np.ndarray, bed_i: np.ndarray, particle_ml: np.ndarray) -> None:
        """Move what reached the plugged ``nodes`` this increment into their fronts' casts (the bins that fit)."""
        fits = self.fits[self.front[nodes]]
        taken = (seg_i[nodes] + bed_i[nodes]) * fits
        seg_i[nodes] *= ~fits
        bed_i[nodes] *= ~fits
        np.add.at(self.count, self.front[nodes], taken)
        np.add.at(self.volume_ml, self.front[nodes], taken @ particle_ml)

    def time_to_fill(self, nodes: np.ndarray, rate_ml: np.ndarray) -> np.ndarray:
        """Injected particles until each node's front segment is full (inf where nothing arrives)."""
        fronts = self.front[nodes]
        left = np.maximum(self.capacity_ml[fronts] - self.volume_ml[fronts], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rate_ml > 0.0, left / rate_ml, np.inf)


def _injection_field(
    topo: _Topology,
    native: _Native,
    r_seg: np.ndarray,
    r_bed: np.ndarray,
    tip: int,
    rate_m3_s: float,
    root_held: bool,
) -> _Field | None:
    """Blood flow + injection source at the tip (superposition); None if the injectate has no way out.
    ``r_seg`` holds the segment resistances with the catheter in place, inf for occluded segments."""
    f, d, absorbed, ok = _injection_response(
        topo.parent, topo.kids, topo.offsets, topo.order, r_seg, r_bed, tip, root_held
    )
    if not ok:
        return None
    flow = native.flow + rate_m3_s * f
    flow[0] = 0.0
    drain = native.drain + rate_m3_s * d
    inflow = native.flow[0] - rate_m3_s * absorbed  # from the feeding artery into the root (absorbed is 0 unless held)
    scale = max(float(np.max(np.abs(flow))), float(np.max(drain)), rate_m3_s, abs(float(native.flow[0])))
    flow[np.abs(flow) < 1e-13 * scale] = 0.0
    drain[drain < 1e-13 * scale] = 0.0
    escape = max(0.0, -inflow) if abs(inflow) >= 1e-13 * scale else 0.0
    return _Field(tip=tip, flow=flow, drain=drain, escape=escape)


# ---------------------------------------------------------------------------------------------- input checks
def _per_terminal(value: Any, n_terminals: int, what: str, positive: bool) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_terminals, float(arr))
    arr = arr.reshape(-1)
    if arr.size != n_terminals:
        raise PhysicsError(
            f"{what} has {arr.size} values for {n_terminals} terminals",
            "give one value, or one per terminal in the order of tree.terminals",
        )
    if not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0.0)):
        raise PhysicsError(
            f"{what} has {'non-positive or ' if positive else ''}non-finite values", "give finite numbers"
        )
    return arr


def _catheter_radii(tree: VesselTree, tip: int, outer_radius_mm: float) -> np.ndarray:
    """Vessel radii with the catheter in place: the annulus of every segment from the root to the tip, as the
    radius of a plain tube with the same Poiseuille resistance, r⁴ = b⁴ − a⁴ − (b² − a²)²/ln(b/a)."""
    a = float(outer_radius_mm)
    radius = tree.radius_mm.astype(np.float64).copy()
    if a >= radius[tip]:
        raise PlanError(
            f"the catheter (outer radius {a:g} mm) does not fit the vessel at its tip, node {tip} (lumen radius "
            f"{radius[tip]:g} mm)",
            "choose a smaller catheter or a more proximal tip",
        )
    m = tip
    while m != 0:
        b = float(tree.radius_mm[m])
        if a >= b:
            raise PlanError(
                f"the catheter (outer radius {a:g} mm) does not fit segment {m} (lumen radius {b:g} mm) on its way "
                f"to node {tip}",
                "choose a smaller catheter or a more proximal tip",
            )
        r4 = b**4 - a**4 - (b * b - a * a) ** 2 / math.log(b / a)
        radius[m] = max(r4, 0.0) ** 0.25
        m = int(tree.parent[m])
    return radius


def _resolve_endpoint(endpoint: str | float | None) -> float | None:
    if endpoint is None:
        return None
    if isinstance(endpoint, str):
        table = stasis_endpoints()
        key = endpoint.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in table:
            close = difflib.get_close_matches(key, list(table), n=2, cutoff=0.5)
            fix = f"did you mean {', '.join(close)}" if close else f"use one of {', '.join(table)}"
            raise PlanError(f"unknown embolization endpoint {endpoint!r}", fix + ", a fraction in [0, 1), or None")
        return table[key]
    value = float(endpoint)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise PlanError(f"endpoint fraction {endpoint} is outside [0, 1)", "give the residual antegrade flow fraction")
    return value


def _subtree_mask(topo: _Topology, node: int) -> np.ndarray:
    mask = np.zeros(topo.parent.size, dtype=bool)
    mask[node] = True
    for m in topo.order:
        if m != node and m != 0 and mask[topo.parent[m]]:
            mask[m] = True
    return mask


def _attribute_to_terminals(topo: _Topology, amount: np.ndarray, flow_before: np.ndarray) -> np.ndarray:
    """Hand what lies in each segment down to the terminals it feeds, in proportion to the flow before."""
    acc = amount.astype(np.float64).copy()
    for m in topo.order:
        if acc[m] == 0.0 or topo.is_terminal[m]:
            continue
        kids = topo.kids[topo.offsets[m] : topo.offsets[m + 1]]
        q = np.clip(flow_before[kids], 0.0, None)
        share = q / q.sum() if q.sum() > 0.0 else np.full(kids.size, 1.0 / kids.size)
        acc[kids] += acc[m] * share
        acc[m] = 0.0
    return acc[topo.terminals]


def _checked_scalars(
    tree: VesselTree,
    catheter_node: Any,
    outer_radius_mm: Any,
    volume_ml: Any,
    rate_ml_min: Any,
    particles_per_occlusion: Any,
    min_increment_fraction: Any,
) -> tuple[int, float, float, float, float, float]:
    """The scalar inputs of :func:`embolize`, checked: one-line errors naming the value and the fix."""
    n = tree.n_nodes
    if n < 2:
        raise StructureError(f"vessel tree {tree.name!r} has no segment", "give a tree with at least one segment")
    if isinstance(catheter_node, bool) or not isinstance(catheter_node, int | np.integer):
        raise PlanError(f"catheter node {catheter_node!r} is not a node index", "give an integer node index")
    tip = int(catheter_node)
    if not 0 <= tip < n:
        raise PlanError(
            f"catheter node {tip} is not in vessel tree {tree.name!r} (nodes 0..{n - 1})",
            "give the index of the node at the catheter tip",
        )
    outer = float(outer_radius_mm)
    if not (math.isfinite(outer) and outer > 0.0):
        raise PlanError(f"catheter outer radius {outer_radius_mm} mm is not positive", "give e.g. 0.45 mm")
    volume = float(volume_ml)
    if not (math.isfinite(volume) and volume >= 0.0):
        raise PhysicsError(f"embolic volume {volume_ml} mL is negative or not finite", "give a volume ≥ 0 mL")
    rate = float(rate_ml_min)
    if not (math.isfinite(rate) and rate > 0.0):
        raise PhysicsError(f"injection rate {rate_ml_min} mL/min is not positive", "give a rate > 0, e.g. 1 mL/min")
    k_occl = float(particles_per_occlusion)
    if not (math.isfinite(k_occl) and k_occl > 0.0):
        raise PhysicsError(f"particles per occlusion {particles_per_occlusion} is not positive", "give e.g. 1")
    min_inc = float(min_increment_fraction)
    if not (math.isfinite(min_inc) and 0.0 <= min_inc <= 1.0):
        raise PhysicsError(f"min_increment_fraction {min_increment_fraction} is outside [0, 1]", "give e.g. 0.01")
    return tip, outer, volume, rate, k_occl, min_inc


def _bed_fill_per_particle(
    agent: EmbolicAgent,
    topo: _Topology,
    diameter_um: np.ndarray,
    particle_ml: np.ndarray,
    baseline_drain_m3_s: np.ndarray,
    terminal_tissue_volume_ml: Any,
    particles_per_occlusion: float,
) -> np.ndarray:
    """Fill of each terminal bed [node, size bin] from one lodged particle (1 = plugged).

    Particles: (d/D)^γ / particles_per_occlusion (a Murray bed of (D/d)^γ vessels of lumen d below a terminal of
    lumen D). Lipiodol: droplet volume / (bed tissue volume × bed fill fraction); the tissue volume defaults to
    the baseline terminal flow over the arterial perfusion."""
    terms = topo.terminals
    out = np.zeros((topo.parent.size, diameter_um.size))
    if agent.transport == "particle":
        d_ratio = diameter_um[None, :] / topo.lumen_um[terms, None]
        out[terms] = d_ratio**BED_BRANCHING_EXPONENT / particles_per_occlusion
        return out
    if terminal_tissue_volume_ml is None:
        tissue = baseline_drain_m3_s[terms] / ML_MIN_M3_S / ARTERIAL_PERFUSION_ML_MIN_ML
        if np.any(tissue <= 0.0):
            raise PhysicsError(
                "a terminal has no baseline flow, so its bed volume cannot be estimated",
                "give terminal_tissue_volume_ml (e.g. Territories.volume_ml)",
            )
    else:
        tissue = _per_terminal(terminal_tissue_volume_ml, terms.size, "terminal_tissue_volume_ml", True)
    capacity_ml = tissue * float(agent.bed_fill_fraction)
    out[terms] = particle_ml[None, :] / capacity_ml[:, None]
    return out


# ---------------------------------------------------------------------------------------------- the procedure
def embolize(
    tree: VesselTree,
    catheter_node: int,
    catheter_outer_radius_mm: float,
    agent: str | EmbolicAgent,
    volume_ml: float,
    injection_rate_ml_min: float,
    *,
    endpoint: str | float | None = "complete_stasis",
    drug_loaded: bool = False,
    inlet_pressure_mmhg: float | None = None,
    inlet_flow_ml_min: float | None = None,
    outlet_pressure_mmhg: float | np.ndarray = ARTERIAL_TERMINAL_PRESSURE_MMHG,
    terminal_resistance_pa_s_m3: float | np.ndarray | None = None,
    viscosity_pa_s: float | None = None,
    terminal_tissue_volume_ml: float | np.ndarray | None = None,
    particles_per_occlusion: float = PARTICLES_PER_OCCLUSION,
    n_size_bins: int = 8,
    min_increment_fraction: float = 0.0,
    rng: int | np.random.Generator | None = None,
    cast_fill_fraction: float | None = None,
) -> EmbolizationResult:
    """Inject ``volume_ml`` of embolic (sphere or oil volume) at ``injection_rate_ml_min`` from a catheter whose tip
    is at node ``catheter_node``, until the volume is used up or the ``endpoint`` (name in ``embolics.yaml``
    ``endpoints``, a residual flow fraction, or None for no endpoint) is reached.

    Flow boundary conditions are those of :func:`solve_flow` (root pressure by default, 100 mmHg). Lipiodol fills
    ``terminal_tissue_volume_ml`` × its bed fill fraction per terminal (default: baseline terminal flow divided by
    the arterial perfusion 0.21 mL/min/mL). Behind every plug the embolic fills the stagnant lumen back to the
    last patent branch point, ``cast_fill_fraction`` × lumen volume (default: the agent's, 0.64 for spheres, 1 for
    Lipiodol; 0 counts only the plugs). ``rng`` (seed or Generator) switches to Monte Carlo.
    """
    tree.validate()
    n = tree.n_nodes
    tip, outer, volume, rate, k_occl, min_inc = _checked_scalars(
        tree, catheter_node, catheter_outer_radius_mm, volume_ml, injection_rate_ml_min,
        particles_per_occlusion, min_increment_fraction,
    )  # fmt: skip
    if inlet_pressure_mmhg is not None and inlet_flow_ml_min is not None:
        raise PhysicsError("both an inlet pressure and an inlet flow were given", "prescribe one of them")
    endpoint_fraction = _resolve_endpoint(endpoint)
    agent_obj = agent if isinstance(agent, EmbolicAgent) else embolic_agent(agent, drug_loaded=drug_loaded)
    fluid = agent_obj.transport == "fluid"
    fill_fraction = agent_obj.cast_fill_fraction if cast_fill_fraction is None else float(cast_fill_fraction)
    if not (math.isfinite(fill_fraction) and 0.0 <= fill_fraction <= 1.0):
        raise PhysicsError(
            f"cast fill fraction {cast_fill_fraction} is outside [0, 1]",
            "give the embolic volume per lumen volume of a cast, e.g. 0.64 (random close packing), or None",
        )

    topo = _topology(tree)
    terms = topo.terminals
    if not fluid and agent_obj.diameter_max_um > topo.lumen_um[tip]:
        raise PlanError(
            f"{agent_obj.name} particles up to {agent_obj.diameter_max_um:.0f} µm are larger than the "
            f"{topo.lumen_um[tip]:.0f} µm lumen at the catheter tip (node {tip}); they cannot leave the catheter",
            "choose a smaller size class or a more proximal catheter position",
        )
    bc = _Boundary(
        inlet_pressure_mmhg=inlet_pressure_mmhg,
        inlet_flow_ml_min=inlet_flow_ml_min,
        outlet_pressure_mmhg=_per_terminal(outlet_pressure_mmhg, terms.size, "outlet_pressure_mmhg", False),
        terminal_resistance_pa_s_m3=None
        if terminal_resistance_pa_s_m3 is None
        else _per_terminal(terminal_resistance_pa_s_m3, terms.size, "terminal_resistance_pa_s_m3", True),
        viscosity_pa_s=viscosity_pa_s,
    )
    r_bed = np.zeros(n)
    if bc.terminal_resistance_pa_s_m3 is not None:
        r_bed[terms] = bc.terminal_resistance_pa_s_m3
    catheter_radius = _catheter_radii(tree, tip, outer)
    no_closure = np.zeros(n, dtype=np.bool_)
    before = _solve_native(tree, topo, tree.radius_mm.astype(np.float64), no_closure, bc)  # validates the flow inputs
    catheter_resistance = _segment_resistance(tree, catheter_radius, viscosity_pa_s)

    # size bins and what one particle of each bin adds to a site's fill
    diameter_um, weight = agent_obj.size_bins(n_size_bins)
    particle_ml = np.pi / 6.0 * diameter_um**3 * _UM3_ML
    route_diameter = np.zeros_like(diameter_um) if fluid else diameter_um
    bed_fill = _bed_fill_per_particle(
        agent_obj, topo, diameter_um, particle_ml, before.drain, terminal_tissue_volume_ml, k_occl
    )
    mean_ml = float(np.sum(weight * particle_ml))

    generator = None if rng is None else np.random.default_rng(rng)
    total = volume / mean_ml
    if generator is not None:
        total = float(round(total))
    remaining = total
    min_step = min_inc * total
    rate_m3_s = rate * ML_MIN_M3_S

    closed = np.zeros(n, dtype=np.bool_)
    open_nodes = _open_mask(topo.parent, topo.order, topo.is_terminal, closed)
    casts = _Casts(tree, topo, tip, fill_fraction, route_diameter)
    fill_seg, fill_bed = np.zeros(n), np.zeros(n)
    seg_l, bed_l = np.zeros((n, diameter_um.size)), np.zeros((n, diameter_um.size))
    escaped, refluxed = np.zeros(diameter_um.size), np.zeros(diameter_um.size)
    injected = 0.0
    history_v: list[float] = []
    history_q: list[float] = []
    stasis, volume_at_stasis = False, math.nan
    n_solves = 0
    tip_flow_0 = None
    field = None
    dirty = True
    for _ in range(30 * n + int(2.0 / max(min_inc, 1e-6)) + 10):
        if dirty:
            native = _solve_native(tree, topo, catheter_radius, closed, bc)
            n_solves += 1
            tip_flow = float(native.flow[tip])
            if tip_flow_0 is None:
                if not tip_flow > 0.0:
                    raise PhysicsError(
                        f"no antegrade flow reaches the catheter tip (node {tip}) before the injection",
                        "check the pressures and that the tip's vessel drains to an outlet",
                    )
                tip_flow_0 = tip_flow
            history_v.append(injected * mean_ml)
            history_q.append(tip_flow / tip_flow_0)
            if endpoint_fraction is not None and tip_flow <= endpoint_fraction * tip_flow_0:
                stasis, volume_at_stasis = True, injected * mean_ml
                break
            r_seg = np.where(closed, np.inf, catheter_resistance)
            field = _injection_field(topo, native, r_seg, r_bed, tip, rate_m3_s, bc.root_held)
            if field is None:
                stasis, volume_at_stasis = True, injected * mean_ml
                break
            seg_u, bed_u, esc_u, refl_u = _route_expected(
                topo.parent, topo.kids, topo.offsets, field.flow, field.drain, field.escape, tip, weight,
                route_diameter, topo.lumen_um,
            )  # fmt: skip
            rate_seg = seg_u.sum(axis=1) / k_occl
            rate_bed = np.sum(bed_u * bed_fill, axis=1)
            arrivals = seg_u + bed_u
            dirty = False
        if remaining <= 1e-12 * max(total, 1.0):
            break
        plugging = casts.active()
        open_site = ~closed
        open_site[plugging] = False
        with np.errstate(divide="ignore", invalid="ignore"):
            t_seg = np.where(open_site & (rate_seg > 0.0), (1.0 - fill_seg) / rate_seg, np.inf)
            t_bed = np.where(open_site & (rate_bed > 0.0), (1.0 - fill_bed) / rate_bed, np.inf)
        t_cast = casts.time_to_fill(plugging, casts.volume_rate_ml(plugging, arrivals, particle_ml))
        tau = max(float(min(t_seg.min(), t_bed.min(), t_cast.min(initial=np.inf))), 0.0)
        if generator is None:
            step = min(remaining, max(tau, min_step))
            seg_i, bed_i, esc_i, refl_i = step * seg_u, step * bed_u, step * esc_u, step * refl_u
        else:
            # half the expected particles to the next event: a random batch rarely overfills a site by much
            half = math.ceil(0.5 * tau - 1e-9) if math.isfinite(tau) else remaining
            step = float(min(remaining, max(half, math.ceil(min_step), 1)))
            counts = generator.multinomial(int(step), weight)
            seg_i, bed_i, esc_i, refl_i = _route_sampled(topo, field, counts, route_diameter, generator)
        casts.take(plugging, seg_i, bed_i, particle_ml)
        seg_l += seg_i
        bed_l += bed_i
        escaped += esc_i
        refluxed += refl_i
        fill_seg += seg_i.sum(axis=1) / k_occl
        fill_bed += np.sum(bed_i * bed_fill, axis=1)
        injected += step
        remaining -= step
        # plugged sites start their casts; full casts climb; a node whose cast is complete is occluded
        newly = open_site & ((fill_seg >= _FULL) | (fill_bed >= _FULL))
        newly[0] = False
        full_front = plugging[
            casts.volume_ml[casts.front[plugging]] >= _FULL * casts.capacity_ml[casts.front[plugging]]
        ]
        for node in np.concatenate([full_front, np.flatnonzero(newly)]):
            if newly[node]:
                occlude = casts.start(int(node), bool(fill_seg[node] < _FULL), open_nodes)
            else:
                occlude = casts.climb(int(node), open_nodes)
            if occlude:
                closed[node] = True
                open_nodes = _open_mask(topo.parent, topo.order, topo.is_terminal, closed)
                dirty = True
    else:  # pragma: no cover - guarded by the event count
        raise PhysicsError(
            "the embolization did not finish within its increment budget", "raise min_increment_fraction"
        )

    after = _solve_native(tree, topo, tree.radius_mm.astype(np.float64), closed, bc)
    q_before = before.drain[terms] / ML_MIN_M3_S
    q_after = after.drain[terms] / ML_MIN_M3_S
    factor = np.divide(q_after, q_before, out=np.ones_like(q_before), where=q_before > 0.0)
    lodged = seg_l + bed_l + casts.count
    lodged_volume = lodged @ particle_ml
    in_target = _subtree_mask(topo, tip)
    nontarget = _attribute_to_terminals(topo, np.where(in_target, 0.0, lodged_volume), before.flow)
    return EmbolizationResult(
        tree=tree,
        agent=agent_obj,
        catheter_node=tip,
        endpoint_fraction=endpoint_fraction,
        occluded=closed.copy(),
        lodged_count=lodged.sum(axis=1),
        lodged_volume_ml=lodged_volume,
        in_target=in_target,
        terminal_nodes=terms,
        terminal_flow_before_ml_min=q_before,
        terminal_flow_after_ml_min=q_after,
        flow_factor=factor,
        nontarget_volume_ml=nontarget,
        deposit_volume_ml=_attribute_to_terminals(topo, lodged_volume, before.flow),
        injected_count=float(injected),
        injected_volume_ml=float(injected * mean_ml),
        escaped_count=float(escaped.sum()),
        escaped_volume_ml=float(escaped @ particle_ml),
        refluxed_count=float(refluxed.sum()),
        stasis_reached=stasis,
        volume_at_stasis_ml=volume_at_stasis,
        n_resolves=max(n_solves - 1, 0),
        max_relative_imbalance=0.0 if after.solution is None else after.solution.max_relative_imbalance(),
        final_flow_m3_s=after.flow,
        history_volume_ml=np.asarray(history_v),
        history_tip_flow_fraction=np.asarray(history_q),
        cast_volume_ml=casts.count @ particle_ml,
        cast_fill_fraction=fill_fraction,
    )
