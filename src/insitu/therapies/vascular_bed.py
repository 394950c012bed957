"""The patient's vascular beds as the transcatheter steps see them: tree, baseline flow, territories.

A bed is one supplying tree (hepatic artery or portal vein) with its steady Poiseuille flow and the
perfusion territory of every terminal inside the liver (tumours included). A transcatheter step
changes terminal flows (particles occlude branches; flow redistributes); the ratio of each terminal's
flow after to before scales the arterial or portal Pennes perfusion of its territory in the TissueState.
The library keeps the baseline magnitudes (tumour vs liver perfusion and arterial fraction, each with
its source); the tree supplies where and by how much they change. A later thermal step reads the
lowered perfusion, which is how TACE followed by ablation gives a larger zone with no special case.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from insitu.errors import PlanError, StructureError
from insitu.patient.patient import Patient
from insitu.patient.structure import Role
from insitu.state import TissueState
from insitu.vascular.flow import FlowSolution, solve_flow
from insitu.vascular.territories import Territories, assign_territories
from insitu.vascular.tree import VesselKind, VesselTree

ARTERIAL = "arterial"
PORTAL = "portal"
_KIND_OF_SYSTEM = {ARTERIAL: VesselKind.HEPATIC_ARTERY, PORTAL: VesselKind.PORTAL_VEIN}
# portal driving pressures: portal venous pressure 5–10 mmHg (vascular.md §1.2, ◐) to a sinusoidal/hepatic-vein
# pressure of a few mmHg (✖); only the ratio of flows after/before matters for the state, not the absolute level
PORTAL_INLET_PRESSURE_MMHG = 8.0
PORTAL_OUTLET_PRESSURE_MMHG = 3.0


@dataclass(frozen=True, eq=False)
class VascularBed:
    """One supplying tree of the liver with its baseline flow and terminal territories."""

    system: str
    tree: VesselTree
    baseline: FlowSolution
    territories: Territories
    domain: np.ndarray

    def voxel_factor(self, terminal_factor: np.ndarray) -> np.ndarray:
        """A per-terminal factor (order of ``tree.terminals``) painted on the grid (1 outside the domain)."""
        factor = np.asarray(terminal_factor, dtype=np.float64).reshape(-1)
        if factor.shape[0] != self.territories.terminal_nodes.size:
            raise StructureError(
                f"{factor.shape[0]} terminal factors for {self.territories.terminal_nodes.size} terminals",
                "give one factor per terminal of the tree",
            )
        out = np.ones(self.domain.shape, dtype=np.float32)
        labels = self.territories.labels
        inside = labels >= 0
        out[inside] = factor[labels[inside]].astype(np.float32)
        return out


def supply_domain(patient: Patient) -> np.ndarray:
    """Voxels the hepatic trees supply: the liver and every target inside it."""
    try:
        liver = patient.structure("liver").mask.astype(bool)
    except StructureError:
        raise StructureError(
            "the patient has no 'liver' structure", "add the liver segmentation (transcatheter steps supply it)"
        ) from None
    domain = liver.copy()
    for target in patient.with_role(Role.TARGET):
        mask = target.mask.astype(bool)
        if np.any(mask & liver) or _touches(mask, liver):
            domain |= mask
    return domain


def _touches(mask: np.ndarray, other: np.ndarray) -> bool:
    from scipy import ndimage

    return bool(np.any(ndimage.binary_dilation(mask) & other))


def find_tree(patient: Patient, system: str) -> VesselTree:
    """The patient's hepatic-artery (``arterial``) or portal-vein (``portal``) tree."""
    kind = _KIND_OF_SYSTEM.get(system)
    if kind is None:
        raise PlanError(f"unknown vascular system {system!r}", "use 'arterial' or 'portal'")
    trees = [tree for tree in patient.trees.values() if VesselKind.parse(tree.kind) == kind]
    if trees:
        return max(trees, key=lambda tree: tree.terminals.size)
    # no graph: extract one from the vessel's segmentation (a patient folder brings masks, not trees)
    name = kind.value
    if name in patient.structures and not patient.structure(name).is_empty:
        from insitu.vascular.skeleton import tree_from_mask

        return tree_from_mask(patient.structure(name).mask.astype(bool), patient.grid, kind=kind, name=name)
    raise StructureError(
        f"the patient has neither a {name.replace('_', ' ')} tree nor a '{name}' segmentation",
        f"add a '{name}' vessel mask (its tree is extracted from it) or use the phantom",
    )


def baseline_flow(tree: VesselTree, system: str) -> FlowSolution:
    """Steady flow before any step: arterial 100 → 60 mmHg (Karch 1999), portal 8 → 3 mmHg (module constants)."""
    if system == PORTAL:
        return solve_flow(
            tree, inlet_pressure_mmhg=PORTAL_INLET_PRESSURE_MMHG, outlet_pressure_mmhg=PORTAL_OUTLET_PRESSURE_MMHG
        )
    return solve_flow(tree)


_CACHE: weakref.WeakKeyDictionary[Patient, dict[str, VascularBed]] = weakref.WeakKeyDictionary()


def vascular_bed(patient: Patient, system: str) -> VascularBed:
    """The patient's bed for ``system``, computed once per patient object (territories take ~1 s); the cache holds
    the patient weakly, so a new patient never meets another's bed."""
    beds = _CACHE.setdefault(patient, {})
    bed = beds.get(system)
    if bed is not None and bed.domain.shape == patient.grid.shape:
        return bed
    tree = find_tree(patient, system)
    domain = supply_domain(patient)
    bed = VascularBed(
        system=system,
        tree=tree,
        baseline=baseline_flow(tree, system),
        territories=assign_territories(tree, domain, patient.grid),
        domain=domain,
    )
    beds[system] = bed
    return bed


def nearest_segment(tree: VesselTree, point_mm: np.ndarray) -> tuple[int, float]:
    """The segment (its distal node) whose centreline passes nearest ``point_mm``, and that distance (mm)."""
    seg = np.flatnonzero(tree.parent >= 0)
    a = tree.points_mm[tree.parent[seg]]
    b = tree.points_mm[seg]
    d = b - a
    length2 = np.maximum(np.einsum("ij,ij->i", d, d), 1e-30)
    t = np.clip(np.einsum("ij,ij->i", np.asarray(point_mm, dtype=np.float64) - a, d) / length2, 0.0, 1.0)
    dist = np.linalg.norm(a + t[:, None] * d - point_mm, axis=1)
    best = int(np.argmin(dist))
    return int(seg[best]), float(dist[best])


def catheter_node(tree: VesselTree, tip_mm: np.ndarray, catheter_outer_diameter_mm: float) -> int:
    """The tree node a catheter tip at ``tip_mm`` sits in: the nearest segment, checked for size and position.

    The tip must lie inside that vessel's lumen (within its radius plus one millimetre for the segmentation's
    error) and the vessel must be at least as wide as the catheter's outer diameter.
    """
    node, distance = nearest_segment(tree, np.asarray(tip_mm, dtype=np.float64))
    radius = float(tree.radius_mm[node])
    if distance > radius + 1.0:
        raise PlanError(
            f"the catheter tip {tuple(np.round(tip_mm, 1))} mm is {distance:.1f} mm from the nearest "
            f"{tree.name.replace('_', ' ')} branch (radius {radius:.2f} mm)",
            "put tip_mm on a vessel centreline (or use placement auto)",
        )
    if 2.0 * radius < catheter_outer_diameter_mm:
        raise PlanError(
            f"the vessel at the catheter tip is {2 * radius:.2f} mm wide, narrower than the "
            f"{catheter_outer_diameter_mm:.2f} mm catheter",
            "choose a microcatheter or a more proximal tip position",
        )
    return node


def subtree_terminals(tree: VesselTree, node: int) -> np.ndarray:
    """Indices (into ``tree.terminals``) of the terminals downstream of ``node``."""
    below = np.zeros(tree.n_nodes, dtype=bool)
    below[node] = True
    for n in tree.order:
        p = tree.parent[n]
        if p >= 0 and below[p]:
            below[n] = True
    return np.flatnonzero(below[tree.terminals])


def with_flow_change(state: TissueState, bed: VascularBed, terminal_factor: np.ndarray) -> TissueState:
    """A new state whose arterial or portal perfusion is scaled by each terminal's flow factor (after/before).

    ``embolized_fraction`` becomes the share of the voxel's total blood inflow that embolization has stopped
    since the untreated state (it never decreases: recanalisation is not modelled).
    """
    voxel = bed.voxel_factor(np.clip(terminal_factor, 0.0, None))
    new = state.copy()
    total_before = state.perfusion_per_s
    if bed.system == ARTERIAL:
        new.perfusion_arterial_per_s = (state.perfusion_arterial_per_s * voxel).astype(np.float32)
    else:
        new.perfusion_portal_per_s = (state.perfusion_portal_per_s * voxel).astype(np.float32)
    lost = np.divide(
        total_before - new.perfusion_per_s,
        total_before,
        out=np.zeros(state.grid.shape, dtype=np.float32),
        where=total_before > 0,
    )
    remaining = (1.0 - state.embolized_fraction) * (1.0 - np.clip(lost, 0.0, 1.0))
    new.embolized_fraction = np.clip(1.0 - remaining, 0.0, 1.0).astype(np.float32)
    return new
