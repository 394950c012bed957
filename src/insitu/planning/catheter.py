"""Selective and superselective catheter planning: a tumour's feeders and the tip position(s) that cover it.

A catheter tip in segment ``n`` (``parent[n] → n``) delivers into every terminal downstream of ``n``; their
territories (:mod:`insitu.vascular.territories`) are what the injection reaches. The planner picks at most
``max_tips`` tips the catheter fits in (lumen radius ≥ clearance × catheter outer radius on the whole path from the
inlet, devices/catheters.yaml) that together cover ``min_coverage`` of the tumour the tree supplies with the least
non-target liver, by an exact search over the tree. Tumour that no territory reaches is reported as supply the tree
cannot explain (extrahepatic feeders), never dropped.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from insitu.errors import PlanError, RegistryError, StructureError
from insitu.vascular.territories import Territories
from insitu.vascular.tree import VesselTree

_DATA = Path(__file__).resolve().parents[1] / "devices" / "catheters.yaml"
LEVELS = ("nonselective", "lobar", "segmental", "subsegmental")


@cache
def catheter_data() -> dict[str, Any]:
    """The planner's numbers from devices/catheters.yaml (each a mapping with value, source and status)."""
    return yaml.safe_load(_DATA.read_text(encoding="utf-8"))


def _number(section: str, key: str) -> float:
    return float(catheter_data()[section][key]["value"])


def french_to_mm(french: float) -> float:
    """Outer diameter (mm) of a ``french`` catheter: 1 Fr = 1/3 mm by definition."""
    return float(french) * _number("french", "mm_per_french")


def default_clearance_factor() -> float:
    """Lumen radius / catheter outer radius a tip needs (a design choice; 1.0 = wedged)."""
    return _number("placement_rule", "clearance_factor")


def catheter_outer_diameter_mm(name: str) -> float:
    """Outer diameter (mm) of the catalog catheter or microcatheter ``name`` (devices/catheters.yaml)."""
    from insitu.devices.catalog import load_catalog

    known = {d.name: d for d in load_catalog() if d.kind.endswith("catheter")}
    if name not in known:
        close = difflib.get_close_matches(str(name), sorted(known), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise RegistryError(f"unknown catheter {name!r}", f"{hint}known catheters: {', '.join(sorted(known))}")
    return float(known[name].parameters["outer_diameter_mm"])


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class TumourFeeders:
    """Terminals whose territory holds tumour, what each supplies, and the segments feeding them.

    ``lca_node`` is the lowest common ancestor of all feeding terminals (−1 when none); ``feeder_nodes`` are the
    lowest common ancestors of the feeders within each branch leaving ``lca_node`` (the lca itself when a single
    terminal feeds). Fractions are of all tumour voxels; ``unexplained`` voxels lie in no territory of the tree.
    """

    terminal_indices: np.ndarray
    terminal_nodes: np.ndarray
    tumour_voxels: np.ndarray
    tumour_volume_ml: np.ndarray
    supplied_fraction: np.ndarray
    lca_node: int
    feeder_nodes: np.ndarray
    tumour_voxel_count: int
    unexplained_voxels: int

    @property
    def unexplained_fraction(self) -> float:
        """Share of the tumour in no territory of the tree (supply it cannot explain)."""
        return self.unexplained_voxels / self.tumour_voxel_count


@dataclass(frozen=True, eq=False)
class TipCoverage:
    """What catheter tips at ``tip_nodes`` reach: tumour covered and non-target liver, per tip and in total.

    Tip ``n`` sits mid-segment ``parent[n] → n`` (node 0: at the inlet). ``lumen_fill_fraction`` is
    (catheter radius / vessel radius)² (1 = wedged; NaN without a catheter size). ``covered_fraction`` is of all
    tumour voxels; ``non_target_by_segment_ml`` maps each label of the segment volume (0 = unlabelled) to mL.
    """

    tip_nodes: np.ndarray
    tip_positions_mm: np.ndarray
    vessel_radius_mm: np.ndarray
    lumen_fill_fraction: np.ndarray
    generation: np.ndarray
    selectivity: tuple[str, ...]
    covered_fraction: float
    covered_tumour_ml: float
    non_target_liver_ml: float
    liver_volume_ml: float
    non_target_by_segment_ml: dict[int, float] | None


@dataclass(frozen=True, eq=False)
class CatheterPlan(TipCoverage):
    """The chosen tips with their coverage, the catheter rule used, the tumour's feeders and warnings.

    ``explained_fraction`` is the most any tips could cover (tumour inside the tree's territories);
    ``unexplained_outside_liver_ml`` is the part of the unexplained tumour outside ``liver_mask``.
    """

    catheter_outer_diameter_mm: float
    clearance_factor: float
    min_coverage: float
    explained_fraction: float
    unexplained_ml: float
    unexplained_outside_liver_ml: float
    feeders: TumourFeeders
    warnings: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- checks
def _check_pair(tree: VesselTree, territories: Territories) -> None:
    if not np.array_equal(np.asarray(territories.terminal_nodes), tree.terminals):
        raise StructureError(
            f"the territories do not belong to vessel tree {tree.name!r} (different terminal nodes)",
            "assign territories with assign_territories(tree, organ_mask, grid) for this tree",
        )


def _mask(territories: Territories, mask: np.ndarray, what: str) -> np.ndarray:
    territories.grid.require_array(mask, what)
    return np.asarray(mask, dtype=bool)


def _tumour(territories: Territories, tumour_mask: np.ndarray) -> np.ndarray:
    tumour = _mask(territories, tumour_mask, "tumour mask")
    if not tumour.any():
        raise StructureError("the tumour mask is empty", "give a tumour mask with at least one voxel")
    return tumour


# ---------------------------------------------------------------------------------------------- tree helpers
def _subtree_sum(tree: VesselTree, per_node: np.ndarray) -> np.ndarray:
    """Sum of ``per_node`` over every node's subtree (the node included)."""
    out = np.array(per_node, dtype=np.int64)
    parent = tree.parent
    for n in tree.order[::-1][:-1]:
        out[parent[n]] += out[n]
    return out


def _lca(tree: VesselTree, nodes: list[int]) -> int:
    """Lowest common ancestor of ``nodes`` (−1 for none)."""
    if not nodes:
        return -1
    depth, parent = tree.depth, tree.parent
    current = set(int(n) for n in nodes)
    while len(current) > 1:
        deepest = max(current, key=lambda n: (depth[n], n))
        current.remove(deepest)
        current.add(int(parent[deepest]))
    return current.pop()


def _branch_feeders(tree: VesselTree, lca: int, feeders: list[int]) -> list[int]:
    """Per branch leaving ``lca``: the lowest common ancestor of the feeders in that branch."""
    if lca < 0 or lca in feeders:
        return [lca] if lca >= 0 else []
    groups: dict[int, list[int]] = {}
    for f in feeders:
        n = f
        while int(tree.parent[n]) != lca:
            n = int(tree.parent[n])
        groups.setdefault(n, []).append(f)
    return sorted(_lca(tree, g) for g in groups.values())


def _per_terminal(territories: Territories, mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` in each terminal's territory."""
    labels = territories.labels[mask & (territories.labels >= 0)]
    return np.bincount(labels, minlength=territories.terminal_nodes.size).astype(np.int64)


def selectivity_level(tree: VesselTree, node: int) -> str:
    """``nonselective`` / ``lobar`` / ``segmental`` / ``subsegmental`` for a tip in segment ``node``.

    Nonselective when the tip's territory is the whole tree's (upstream of the first branching); otherwise by the
    vessel diameter there against devices/catheters.yaml ``selectivity`` (lobar ≥ 2 mm, segmental 1–2 mm; recalled).
    """
    counts = _subtree_sum(tree, np.isin(np.arange(tree.n_nodes), tree.terminals))
    if counts[node] == counts[0]:
        return "nonselective"
    diameter = 2.0 * float(tree.radius_mm[node])
    if diameter >= _number("selectivity", "lobar_min_diameter_mm"):
        return "lobar"
    if diameter >= _number("selectivity", "segmental_min_diameter_mm"):
        return "segmental"
    return "subsegmental"


# ---------------------------------------------------------------------------------------------- feeders
def tumour_feeders(tree: VesselTree, territories: Territories, tumour_mask: np.ndarray) -> TumourFeeders:
    """Terminals whose territory overlaps the tumour, the tumour voxels each supplies and the feeding segments."""
    _check_pair(tree, territories)
    tumour = _tumour(territories, tumour_mask)
    per_terminal = _per_terminal(territories, tumour)
    idx = np.flatnonzero(per_terminal > 0)
    nodes = territories.terminal_nodes[idx]
    total = int(np.count_nonzero(tumour))
    lca = _lca(tree, nodes.tolist())
    return TumourFeeders(
        terminal_indices=idx,
        terminal_nodes=nodes,
        tumour_voxels=per_terminal[idx],
        tumour_volume_ml=per_terminal[idx] * territories.grid.voxel_volume_ml,
        supplied_fraction=per_terminal[idx] / total,
        lca_node=lca,
        feeder_nodes=np.asarray(_branch_feeders(tree, lca, nodes.tolist()), dtype=np.int64),
        tumour_voxel_count=total,
        unexplained_voxels=total - int(per_terminal.sum()),
    )


# ---------------------------------------------------------------------------------------------- coverage
def evaluate_tips(
    tree: VesselTree,
    territories: Territories,
    tumour_mask: np.ndarray,
    liver_mask: np.ndarray,
    tip_nodes: np.ndarray | list[int],
    *,
    catheter_outer_diameter_mm: float | None = None,
    segment_labels: np.ndarray | None = None,
) -> TipCoverage:
    """Tumour covered and non-target liver (mL, per segment label if given) for catheter tips at ``tip_nodes``."""
    _check_pair(tree, territories)
    tumour = _tumour(territories, tumour_mask)
    liver = _mask(territories, liver_mask, "liver mask")
    tips = np.asarray(tip_nodes, dtype=np.int64).reshape(-1)
    if tips.size == 0 or tips.min() < 0 or tips.max() >= tree.n_nodes:
        raise PlanError(
            f"catheter tips {tips.tolist()} are not nodes of vessel tree {tree.name!r}",
            f"give one or more node indices in 0..{tree.n_nodes - 1}",
        )
    covered_node = np.zeros(tree.n_nodes, dtype=bool)
    covered_node[tips] = True
    for n in tree.order[1:]:
        covered_node[n] |= covered_node[tree.parent[n]]
    covered = np.flatnonzero(covered_node[territories.terminal_nodes])
    region = territories.territory_mask(covered)
    voxel_ml = territories.grid.voxel_volume_ml
    non_target = region & liver & ~tumour
    by_segment = None
    if segment_labels is not None:
        territories.grid.require_array(segment_labels, "segment label volume")
        values = np.asarray(segment_labels)[non_target].astype(np.int64)
        labels, counts = np.unique(values, return_counts=True)
        by_segment = {int(k): float(c) * voxel_ml for k, c in zip(labels, counts, strict=True)}
    parents = np.where(tree.parent[tips] >= 0, tree.parent[tips], tips)
    radius = tree.radius_mm[tips]
    fill = np.full(tips.size, np.nan)
    if catheter_outer_diameter_mm is not None:
        fill = (0.5 * float(catheter_outer_diameter_mm) / radius) ** 2
    covered_voxels = int(np.count_nonzero(region & tumour))
    return TipCoverage(
        tip_nodes=tips,
        tip_positions_mm=0.5 * (tree.points_mm[tips] + tree.points_mm[parents]),
        vessel_radius_mm=radius.copy(),
        lumen_fill_fraction=fill,
        generation=tree.generation[tips].copy(),
        selectivity=tuple(selectivity_level(tree, int(n)) for n in tips),
        covered_fraction=covered_voxels / int(np.count_nonzero(tumour)),
        covered_tumour_ml=covered_voxels * voxel_ml,
        non_target_liver_ml=int(np.count_nonzero(non_target)) * voxel_ml,
        liver_volume_ml=int(np.count_nonzero(liver)) * voxel_ml,
        non_target_by_segment_ml=by_segment,
    )


# ---------------------------------------------------------------------------------------------- exact search
_Entry = tuple[int, int, tuple[int, ...]]  # (tumour voxels, non-target voxels, tip nodes)


def _prune(entries: list[_Entry], target: int, limit: int, tie: Any) -> list[_Entry]:
    """Pareto front on (tumour capped at ``target`` ↑, non-target ↓); drops entries above ``limit`` non-target."""
    entries = sorted(entries, key=lambda e: (-min(e[0], target), e[1], -e[0], tie(e[2])))
    kept: list[_Entry] = []
    best = math.inf
    for e in entries:
        if e[1] < best and e[1] <= limit:
            kept.append(e)
            best = e[1]
    return kept


def _search(
    tree: VesselTree, top: int, allowed: np.ndarray, tum: np.ndarray, non: np.ndarray, target: int, max_tips: int
) -> tuple[int, ...]:
    """Fewest-non-target antichain of ≤ ``max_tips`` allowed nodes under ``top`` covering ≥ ``target`` tumour voxels.

    Dynamic programme over the subtree: per node and tip count, the Pareto front of (tumour, non-target). Ties go
    to fewer tips, more tumour, the wider narrowest vessel, then the more distal tips.
    """
    depth, radius = tree.depth, tree.radius_mm

    def tie(tips: tuple[int, ...]) -> tuple[float, int, tuple[int, ...]]:
        return (-min(radius[list(tips)]) if tips else 0.0, -int(sum(depth[list(tips)])), tips)

    limit = int(non[top])
    nodes = [int(n) for n in tree.order if allowed[n]]
    inside = np.zeros(tree.n_nodes, dtype=bool)
    inside[top] = True
    for n in tree.order:
        if n != top and tree.parent[n] >= 0 and inside[tree.parent[n]]:
            inside[n] = True
    fronts: dict[int, list[list[_Entry]]] = {}
    for v in reversed([n for n in nodes if inside[n]]):
        merged: list[list[_Entry]] = [[(0, 0, ())]] + [[] for _ in range(max_tips)]
        for c in tree.children(v):
            c = int(c)
            if c not in fronts:
                continue
            child = [[(0, 0, ())]] + fronts.pop(c)
            new: list[list[_Entry]] = [[] for _ in range(max_tips + 1)]
            for k1, a_list in enumerate(merged):
                for k2, b_list in enumerate(child):
                    if k1 + k2 > max_tips:
                        continue
                    new[k1 + k2].extend((a[0] + b[0], a[1] + b[1], a[2] + b[2]) for a in a_list for b in b_list)
            merged = [new[0]] + [_prune(x, target, limit, tie) for x in new[1:]]
        merged[1] = _prune([*merged[1], (int(tum[v]), int(non[v]), (v,))], target, limit, tie)
        fronts[v] = merged[1:]
    best: tuple[Any, ...] | None = None
    for k, front in enumerate(fronts[top], start=1):
        for t, n, tips in front:
            if t >= target:
                key = (n, k, -t, tie(tips))
                if best is None or key < best[0]:
                    best = (key, tips)
    assert best is not None  # the top node alone covers every explained voxel
    return tuple(sorted(best[1]))


# ---------------------------------------------------------------------------------------------- planner
def _check_plan_inputs(
    tree: VesselTree, catheter_outer_diameter_mm: float, min_coverage: float, max_tips: int, clearance: float
) -> None:
    od = float(catheter_outer_diameter_mm)
    if not math.isfinite(od) or od <= 0.0:
        raise PlanError(f"catheter outer diameter {od} mm is not positive", "give the catheter's outer diameter in mm")
    if not (0.0 < float(min_coverage) <= 1.0):
        raise PlanError(
            f"min_coverage {min_coverage} is outside (0, 1]", "give the tumour fraction to cover, e.g. 0.95"
        )
    if int(max_tips) != max_tips or max_tips < 1:
        raise PlanError(f"max_tips {max_tips} is not a positive integer", "allow at least one catheter tip")
    if not math.isfinite(clearance) or clearance < 1.0:
        raise PlanError(
            f"clearance factor {clearance} is below 1 (a catheter cannot sit in a lumen narrower than itself)",
            "give a clearance factor ≥ 1 (1 = wedged)",
        )
    root = float(tree.radius_mm[0])
    need = clearance * od / 2.0
    if root < need:
        raise PlanError(
            f"a {od:.2f} mm catheter does not fit the root vessel of tree {tree.name!r} ({2 * root:.2f} mm diameter; "
            f"it needs a lumen ≥ {2 * need:.2f} mm at clearance {clearance:g})",
            f"choose a smaller catheter: outer diameter ≤ {2 * root / clearance:.2f} mm (e.g. a microcatheter)",
        )


def _unexplained_warning(tree: VesselTree, fraction: float, volume_ml: float, outside_ml: float) -> str:
    feeders = catheter_data()["extrahepatic_feeders"]
    share = float(feeders["ectopic_feeder_fraction_of_lesions"]["value"])
    n = int(feeders["ectopic_feeder_fraction_of_lesions"]["n"])
    return (
        f"{100 * fraction:.1f} % of the tumour ({volume_ml:.3g} mL, {outside_ml:.3g} mL of it outside the liver mask) "
        f"lies in no territory of tree {tree.name!r}: supply the tree cannot explain (check extrahepatic feeders: "
        f"inferior phrenic, gastric arteries …; {100 * share:.1f} % of {n} HCC lesions had them, Chen GW et al., "
        "PMID 23967266)"
    )


def plan_catheter_tips(
    tree: VesselTree,
    territories: Territories,
    tumour_mask: np.ndarray,
    liver_mask: np.ndarray,
    catheter_outer_diameter_mm: float,
    *,
    min_coverage: float = 0.95,
    max_tips: int = 3,
    clearance_factor: float | None = None,
    segment_labels: np.ndarray | None = None,
) -> CatheterPlan:
    """Tip(s) the catheter fits in that cover ``min_coverage`` of the tree-supplied tumour with least non-target liver.

    ``segment_labels`` (e.g. a Couinaud label volume on the same grid) splits the non-target volume by label.
    """
    clearance = default_clearance_factor() if clearance_factor is None else float(clearance_factor)
    _check_pair(tree, territories)
    _check_plan_inputs(tree, catheter_outer_diameter_mm, min_coverage, max_tips, clearance)
    tumour = _tumour(territories, tumour_mask)
    liver = _mask(territories, liver_mask, "liver mask")
    feeders = tumour_feeders(tree, territories, tumour)
    voxel_ml = territories.grid.voxel_volume_ml
    if feeders.terminal_nodes.size == 0:
        if not (tumour & liver).any():
            raise StructureError(
                f"the tumour ({feeders.tumour_voxel_count} voxels) lies entirely outside the liver mask",
                "check that the tumour and liver masks belong to the same patient and grid",
            )
        raise StructureError(
            f"no tumour voxel lies in a territory of tree {tree.name!r}",
            "assign the territories on the liver including the tumour (liver | tumour)",
        )
    tum = _subtree_sum(tree, np.bincount(territories.terminal_nodes, _per_terminal(territories, tumour), tree.n_nodes))
    non = _subtree_sum(
        tree, np.bincount(territories.terminal_nodes, _per_terminal(territories, liver & ~tumour), tree.n_nodes)
    )
    need_radius = clearance * float(catheter_outer_diameter_mm) / 2.0
    reachable = tree.radius_mm >= need_radius
    for n in tree.order[1:]:
        reachable[n] &= reachable[tree.parent[n]]
    top = feeders.lca_node
    while not reachable[top]:
        top = int(tree.parent[top])
    explained = int(tum[top])
    target = max(1, math.ceil(float(min_coverage) * explained - 1e-9 * explained))
    tips = _search(tree, top, reachable & (tum > 0), tum, non, target, int(max_tips))
    cover = evaluate_tips(
        tree,
        territories,
        tumour,
        liver,
        list(tips),
        catheter_outer_diameter_mm=catheter_outer_diameter_mm,
        segment_labels=segment_labels,
    )
    unexplained = feeders.unexplained_voxels
    outside_ml = int(np.count_nonzero(tumour & ~liver & (territories.labels < 0))) * voxel_ml
    warnings = []
    if unexplained:
        warnings.append(_unexplained_warning(tree, feeders.unexplained_fraction, unexplained * voxel_ml, outside_ml))
    if top != feeders.lca_node:
        blocked = [int(n) for n in feeders.feeder_nodes if not reachable[n]]
        warnings.append(
            f"the {float(catheter_outer_diameter_mm):.2f} mm catheter cannot reach the tumour's feeding segment(s) "
            f"{blocked} (radius {', '.join(f'{tree.radius_mm[n]:.2f}' for n in blocked)} mm; it needs ≥ "
            f"{need_radius:.2f} mm): a smaller microcatheter could treat less non-target liver"
        )
    if "nonselective" in cover.selectivity:
        warnings.append("a tip lies upstream of the tree's first branching: the whole tree's territory is treated")
    wedge = _number("placement_rule", "wedge_lumen_fill_fraction")
    for n, fill in zip(cover.tip_nodes, cover.lumen_fill_fraction, strict=True):
        if fill >= wedge:
            warnings.append(f"the catheter fills the lumen at node {int(n)} (wedged): expect pressure rise and reflux")
    return CatheterPlan(
        **{f: getattr(cover, f) for f in TipCoverage.__dataclass_fields__},
        catheter_outer_diameter_mm=float(catheter_outer_diameter_mm),
        clearance_factor=clearance,
        min_coverage=float(min_coverage),
        explained_fraction=1.0 - feeders.unexplained_fraction,
        unexplained_ml=unexplained * voxel_ml,
        unexplained_outside_liver_ml=outside_ml,
        feeders=feeders,
        warnings=tuple(warnings),
    )
