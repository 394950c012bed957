"""Portal vein embolization (PVE) planning: which portal branch to occlude, the future liver remnant, its growth.

PVE occludes the portal branch of the liver that will be resected so the future liver remnant (FLR) grows
before a major hepatectomy. This module picks the portal-tree node whose downstream territory best matches
a set of Couinaud segments (Dice), measures the FLR on masks (tumours excluded), standardizes it by the
body-size liver volume (Vauthey TELV or Urata SLV from BSA) and compares it with the minimum sFLR for the
state of the liver, and models the FLR over the weeks after PVE. Numbers and sources: liver_remnant.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml
from scipy.optimize import brentq

from insitu.errors import PhysicsError, PlanError, StructureError
from insitu.grid import Grid
from insitu.vascular.territories import Territories
from insitu.vascular.tree import VesselTree

COUINAUD_SEGMENTS = tuple(range(1, 9))


@lru_cache(maxsize=1)
def load_liver_remnant() -> dict[str, Any]:
    """The table ``liver_remnant.yaml`` (values with sources and status) as a dictionary."""
    text = resources.files("insitu.vascular").joinpath("liver_remnant.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _value(*path: str) -> float:
    node: Any = load_liver_remnant()
    for key in path:
        node = node[key]
    return float(node["value"])


def _check_range(value: float, name: str, unit: str) -> float:
    lim = load_liver_remnant()["input_ranges"][name]
    v = float(value)
    if not (math.isfinite(v) and lim["min"] <= v <= lim["max"]):
        raise PlanError(
            f"{name} {value} is outside the adult range {lim['min']:g}–{lim['max']:g} {unit}",
            f"give {name} in {unit} (check the unit)",
        )
    return v


# ---------------------------------------------------------------------------------------------- body size
def body_surface_area_m2(height_cm: float, weight_kg: float, formula: str = "mosteller") -> float:
    """Body surface area (m²) from height and weight: Mosteller 1987 (default) or DuBois 1916."""
    h = _check_range(height_cm, "height_cm", "cm")
    w = _check_range(weight_kg, "weight_kg", "kg")
    table = load_liver_remnant()["body_surface_area"]
    if formula == "mosteller":
        return math.sqrt(h * w / float(table["mosteller"]["coefficient_divisor"]["value"]))
    if formula == "dubois":
        d = table["dubois"]
        return (
            float(d["coefficient"]["value"])
            * h ** float(d["height_exponent"]["value"])
            * w ** float(d["weight_exponent"]["value"])
        )
    raise PlanError(f"unknown BSA formula {formula!r}", "use 'mosteller' or 'dubois'")


def standard_liver_volume_ml(bsa_m2: float, formula: str = "vauthey") -> float:
    """Standardized total liver volume (mL) from BSA: Vauthey TELV (default, Western adults) or Urata SLV."""
    bsa = _check_range(bsa_m2, "bsa_m2", "m²")
    table = load_liver_remnant()["standard_liver_volume"]
    if formula not in table:
        raise PlanError(f"unknown liver-volume formula {formula!r}", f"use one of {', '.join(table)}")
    f = table[formula]
    return float(f["intercept_ml"]["value"]) + float(f["slope_ml_per_m2"]["value"]) * bsa


def min_sflr(condition: str) -> float:
    """Minimum standardized FLR (fraction of TELV) for a liver ``condition``: normal, chemotherapy, cirrhosis."""
    table = load_liver_remnant()["min_sflr"]
    key = str(condition).strip().lower()
    if key not in table:
        raise PlanError(f"unknown liver condition {condition!r}", f"use one of {', '.join(table)}")
    return float(table[key]["value"])


def _resolve_bsa(
    bsa_m2: float | None, height_cm: float | None, weight_kg: float | None, bsa_formula: str
) -> float | None:
    if bsa_m2 is not None:
        if height_cm is not None or weight_kg is not None:
            raise PlanError("both bsa_m2 and height/weight were given", "give either bsa_m2 or height_cm and weight_kg")
        return _check_range(bsa_m2, "bsa_m2", "m²")
    if height_cm is None and weight_kg is None:
        return None
    if height_cm is None or weight_kg is None:
        raise PlanError("only one of height_cm and weight_kg was given", "give both, or bsa_m2")
    return body_surface_area_m2(height_cm, weight_kg, bsa_formula)


# ---------------------------------------------------------------------------------------------- branch choice
@dataclass(frozen=True, eq=False)
class PortalBranch:
    """The portal node to occlude and how well its downstream territory matches the target segments.

    ``precision`` is the fraction of the branch territory inside the target (spill into the FLR is
    1 − precision), ``recall`` the fraction of the target it drains; ``terminal_indices`` index
    ``territories.terminal_nodes``.
    """

    node: int
    segments: tuple[int, ...]
    dice: float
    precision: float
    recall: float
    territory_ml: float
    target_ml: float
    terminal_indices: np.ndarray
    territory_mask: np.ndarray


def _segments(segments: Sequence[int] | str) -> tuple[int, ...]:
    if isinstance(segments, str):
        sets = load_liver_remnant()["segment_sets"]
        if segments not in sets:
            raise StructureError(
                f"unknown segment set {segments!r}", f"use one of {', '.join(sets)} or segment numbers"
            )
        return tuple(int(s) for s in sets[segments])
    try:
        out = tuple(sorted({int(s) for s in segments}))
    except (TypeError, ValueError):
        raise StructureError(
            f"segments {segments!r} are not integers", "give Couinaud numbers, e.g. (5, 6, 7, 8)"
        ) from None
    if not out:
        raise StructureError("no Couinaud segment given", "give e.g. (5, 6, 7, 8) for a right PVE")
    bad = [s for s in out if s not in COUINAUD_SEGMENTS]
    if bad:
        raise StructureError(f"unknown Couinaud segment(s) {bad}", "use 1..8 (right PVE 5–8, extended right 4–8)")
    return out


def portal_branch_for_segments(
    tree: VesselTree,
    territories: Territories,
    couinaud_labels: np.ndarray,
    segments: Sequence[int] | str,
) -> PortalBranch:
    """The node of ``tree`` whose downstream territory best matches ``segments`` (highest Dice).

    ``territories`` come from ``assign_territories(tree, liver_mask, grid)``; ``couinaud_labels`` is a
    label volume on the same grid (1..8). Among nodes with equal Dice the most proximal one is chosen
    (the origin of an unbranched run of segments). ``segments`` may be a set name of the yaml (``right``).
    """
    wanted = _segments(segments)
    labels = np.asarray(couinaud_labels)
    territories.grid.require_array(labels, "Couinaud label map")
    terminals = territories.terminal_nodes
    if not np.array_equal(terminals, tree.terminals):
        raise StructureError(
            f"the territories were not built from vessel tree {tree.name!r} (terminal nodes differ)",
            "call assign_territories(tree, liver_mask, grid) with this tree",
        )
    inside = territories.labels >= 0
    in_target = inside & np.isin(labels, wanted)
    present = set(np.unique(labels[inside]).tolist())
    missing = [s for s in wanted if s not in present]
    if missing:
        raise StructureError(
            f"Couinaud segment(s) {missing} have no voxel inside the liver territories",
            "check the label map (values 1..8 on the liver grid) or the segment list",
        )
    n_t = terminals.size
    overlap_t = np.bincount(territories.labels[in_target], minlength=n_t).astype(np.int64)
    size_t = np.asarray(territories.voxel_count, dtype=np.int64)
    overlap = np.zeros(tree.n_nodes, dtype=np.int64)
    size = np.zeros(tree.n_nodes, dtype=np.int64)
    overlap[terminals] = overlap_t
    size[terminals] = size_t
    order = tree.order
    for n in order[::-1][:-1]:  # children before parents, root last
        overlap[tree.parent[n]] += overlap[n]
        size[tree.parent[n]] += size[n]
    target = int(np.count_nonzero(in_target))
    dice = 2.0 * overlap / (size + target)
    best = int(order[int(np.argmax(dice[order]))])  # first maximum in breadth-first order = most proximal
    below = np.zeros(tree.n_nodes, dtype=bool)
    below[best] = True
    for n in order[1:]:
        below[n] |= below[tree.parent[n]]
    chosen = np.flatnonzero(below[terminals])
    voxel_ml = territories.grid.voxel_volume_ml
    return PortalBranch(
        node=best,
        segments=wanted,
        dice=float(dice[best]),
        precision=float(overlap[best] / size[best]) if size[best] else 0.0,
        recall=float(overlap[best] / target),
        territory_ml=float(size[best] * voxel_ml),
        target_ml=float(target * voxel_ml),
        terminal_indices=chosen,
        territory_mask=territories.territory_mask(chosen),
    )


# ---------------------------------------------------------------------------------------------- growth model
@dataclass(frozen=True)
class RegenerationKinetics:
    """First-order FLR regeneration after PVE: sFLR(t) = sFLR₀ + G·(1 − e^(−k·t)), t in weeks.

    ``plateau_gain_points`` G is the degree of hypertrophy approached (percentage points of TELV),
    ``rate_per_week`` k its rate constant.
    """

    plateau_gain_points: float
    rate_per_week: float

    def __post_init__(self) -> None:
        for name in ("plateau_gain_points", "rate_per_week"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0.0):
                raise PhysicsError(f"{name} {v} must be positive and finite", "give e.g. the published kinetics")

    @classmethod
    def from_published(cls, kgr_first_week_percent: float, dh_points: float, at_weeks: float) -> RegenerationKinetics:
        """Solve k and G so the first-week KGR and the DH at ``at_weeks`` are reproduced exactly."""
        kgr1, dh, t = float(kgr_first_week_percent), float(dh_points), float(at_weeks)
        if not (math.isfinite(kgr1) and math.isfinite(dh) and math.isfinite(t) and kgr1 > 0 and dh > 0 and t > 1):
            raise PhysicsError(
                f"cannot calibrate from KGR {kgr1} %/week and DH {dh} points at {t} weeks",
                "give positive values, the DH later than one week",
            )
        ratio = kgr1 / dh  # (1 − e^−k)/(1 − e^−kt): rises from 1/t (linear growth) to 1 (instant)
        if not 1.0 / t < ratio < 1.0:
            raise PhysicsError(
                f"first-week KGR {kgr1} and DH {dh} at {t} weeks imply no saturating growth",
                f"give a first-week gain between DH/{t:g} and DH",
            )
        k = brentq(lambda x: -math.expm1(-x) / -math.expm1(-x * t) - ratio, 1e-9, 60.0, xtol=1e-14, rtol=1e-14)
        return cls(plateau_gain_points=kgr1 / -math.expm1(-k), rate_per_week=k)

    def gain_points(self, weeks: np.ndarray) -> np.ndarray:
        """Degree of hypertrophy DH(t) in percentage points of TELV."""
        return self.plateau_gain_points * -np.expm1(-self.rate_per_week * np.asarray(weeks, dtype=np.float64))


@lru_cache(maxsize=1)
def published_kinetics() -> RegenerationKinetics:
    """Kinetics calibrated on the first-week KGR (PMC6414468) and DH ≈ 10 points at 6 weeks (PMC6700017)."""
    h = load_liver_remnant()["hypertrophy"]
    dh = h["degree_of_hypertrophy_points"]
    return RegenerationKinetics.from_published(
        float(h["kgr_first_week_percent_per_week"]["value"]), float(dh["value"]), float(dh["at_weeks"])
    )


@dataclass(frozen=True, eq=False)
class FlrGrowth:
    """FLR over weeks after PVE: volume, sFLR, DH (points), KGR = DH/weeks (%/week) and relative gain."""

    weeks: np.ndarray
    flr_ml: np.ndarray
    sflr: np.ndarray
    dh_percent_points: np.ndarray
    kgr_percent_per_week: np.ndarray
    hypertrophy_fraction: np.ndarray
    kgr_cutoff_met: np.ndarray


def flr_growth(
    flr_ml: float,
    weeks: np.ndarray | Sequence[float] | float,
    *,
    telv_ml: float,
    kinetics: RegenerationKinetics | None = None,
) -> FlrGrowth:
    """FLR volume at ``weeks`` after PVE from a saturating (first-order) regeneration model.

    The remnant grows toward a plateau, dV/dt = k·(V∞ − V), V∞ = V₀ + G·TELV/100: the regenerative drive
    fades as the remnant approaches the size the body needs, so KGR is highest in the first week and
    falls later (as PMC6414468 observed) instead of the constant rate a linear model assumes. G and k are
    solved from two confirmed numbers of two cohorts (first-week KGR 5.4 %/week; DH ≈ 10 points at six
    weeks); the gain is in points of TELV, so a smaller remnant grows more in relative terms. ``telv_ml``
    standardizes (TELV from BSA, or the measured functional liver volume). KGR at t = 0 is the initial
    slope G·k; ``kgr_cutoff_met`` compares KGR with Shindoh's 2 %/week.
    """
    v0, telv = float(flr_ml), float(telv_ml)
    if not (math.isfinite(telv) and telv > 0.0):
        raise PhysicsError(f"telv_ml {telv_ml} must be positive", "give the standardized total liver volume in mL")
    if not (math.isfinite(v0) and 0.0 < v0 <= telv):
        raise PhysicsError(f"FLR {flr_ml} mL must be positive and at most TELV {telv:.0f} mL", "give the FLR in mL")
    t = np.atleast_1d(np.asarray(weeks, dtype=np.float64))
    if t.ndim != 1 or not np.all(np.isfinite(t)) or np.any(t < 0.0):
        raise PhysicsError("weeks after PVE must be finite and ≥ 0", "give e.g. np.arange(0, 9)")
    kin = kinetics or published_kinetics()
    dh = kin.gain_points(t)
    # KGR = DH/t = G·(1 − e^−kt)/t, written with the exact relative form so tiny t stay accurate (limit G·k)
    kt = kin.rate_per_week * t
    small = kt < 1e-6
    relative = np.where(small, 1.0 - 0.5 * kt, np.divide(-np.expm1(-kt), kt, out=np.ones_like(kt), where=~small))
    kgr = kin.plateau_gain_points * kin.rate_per_week * relative
    flr = v0 + dh / 100.0 * telv
    cutoff = _value("hypertrophy", "kgr_cutoff_percent_per_week")
    return FlrGrowth(
        weeks=t,
        flr_ml=flr,
        sflr=flr / telv,
        dh_percent_points=dh,
        kgr_percent_per_week=kgr,
        hypertrophy_fraction=(flr - v0) / v0,
        kgr_cutoff_met=kgr >= cutoff,
    )


# ---------------------------------------------------------------------------------------------- FLR volumetry
@dataclass(frozen=True, eq=False)
class FutureLiverRemnant:
    """Volumetry of the liver left after resecting the embolized territory.

    ``flr_fraction`` is FLR / functional liver (CT-based, tumours excluded); ``sflr`` is FLR / TELV
    (``None`` without body size). ``adequate`` compares ``threshold_fraction`` with ``sflr`` when known,
    else with ``flr_fraction``; ``ratio_used`` says which.
    """

    functional_liver_ml: float
    tumour_ml: float
    embolized_ml: float
    flr_ml: float
    flr_fraction: float
    bsa_m2: float | None
    telv_ml: float | None
    sflr: float | None
    condition: str
    threshold_fraction: float
    ratio_used: str
    adequate: bool
    flr_mask: np.ndarray

    def growth(
        self, weeks: np.ndarray | Sequence[float] | float, kinetics: RegenerationKinetics | None = None
    ) -> FlrGrowth:
        """The FLR over ``weeks`` after PVE, standardized by TELV (or the functional liver without BSA)."""
        return flr_growth(self.flr_ml, weeks, telv_ml=self.telv_ml or self.functional_liver_ml, kinetics=kinetics)


def _mask(array: np.ndarray | None, grid: Grid, what: str) -> np.ndarray | None:
    if array is None:
        return None
    grid.require_array(array, what)
    return np.asarray(array, dtype=bool)


def future_liver_remnant(
    liver_mask: np.ndarray,
    tumour_mask: np.ndarray | None,
    embolized_territory_mask: np.ndarray,
    grid: Grid,
    *,
    bsa_m2: float | None = None,
    height_cm: float | None = None,
    weight_kg: float | None = None,
    condition: str = "normal",
    threshold_fraction: float | None = None,
    telv_formula: str = "vauthey",
    bsa_formula: str = "mosteller",
) -> FutureLiverRemnant:
    """FLR volume, its share of the functional liver and of TELV, and whether it meets the sFLR minimum.

    Functional liver = liver minus tumour; the FLR is the functional liver outside the embolized territory
    (the part to be resected). Body size comes from ``bsa_m2`` or ``height_cm`` and ``weight_kg``; without
    it sFLR is ``None`` and the threshold applies to the CT-based ratio. ``threshold_fraction`` overrides
    the condition's minimum (e.g. 0.25 for the stricter normal-liver rule).
    """
    liver = _mask(liver_mask, grid, "liver mask")
    tumour = _mask(tumour_mask, grid, "tumour mask")
    embolized = _mask(embolized_territory_mask, grid, "embolized territory mask")
    if not liver.any():
        raise StructureError("the liver mask is empty", "give the segmented liver on the patient grid")
    functional = liver if tumour is None else liver & ~tumour
    if not functional.any():
        raise StructureError("the liver mask lies entirely inside the tumour mask", "check the tumour and liver masks")
    removed = functional & embolized
    if not removed.any():
        raise StructureError(
            "the embolized territory does not overlap the functional liver",
            "give the territory mask of the occluded branch (PortalBranch.territory_mask) on the liver grid",
        )
    threshold = min_sflr(condition)
    if threshold_fraction is not None:
        threshold = float(threshold_fraction)
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise PlanError(f"threshold_fraction {threshold_fraction} is not in (0, 1)", "give e.g. 0.25 for 25 %")
    bsa = _resolve_bsa(bsa_m2, height_cm, weight_kg, bsa_formula)
    v = grid.voxel_volume_ml
    n_func = int(np.count_nonzero(functional))
    n_removed = int(np.count_nonzero(removed))
    flr_mask = functional & ~embolized
    n_flr = n_func - n_removed
    flr_ml = n_flr * v
    telv = None if bsa is None else standard_liver_volume_ml(bsa, telv_formula)
    sflr = None if telv is None else flr_ml / telv
    fraction = n_flr / n_func
    ratio = fraction if sflr is None else sflr
    return FutureLiverRemnant(
        functional_liver_ml=n_func * v,
        tumour_ml=0.0 if tumour is None else int(np.count_nonzero(liver & tumour)) * v,
        embolized_ml=n_removed * v,
        flr_ml=flr_ml,
        flr_fraction=fraction,
        bsa_m2=bsa,
        telv_ml=telv,
        sflr=sflr,
        condition=str(condition),
        threshold_fraction=threshold,
        ratio_used="measured" if sflr is None else "sflr",
        adequate=bool(ratio >= threshold),
        flr_mask=flr_mask,
    )
