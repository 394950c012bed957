"""Judge an Outcome: the metrics a plan is ranked by, per step and for the whole treatment (DESIGN.md: Outcome).

For every step that leaves a necrosis zone (``ablation_zone``: thermal, cryo and chemical steps write it), and for
the union of all of them (the treatment as a whole, read with the final state's temperatures):

- zone volume and axes (Feret extents along the zone's three principal axes, longest first);
- per target: coverage, coverage of target + margin, the signed minimal ablative margin (mm) and where it is;
- healthy tissue lost (mL) per organ (targets excluded);
- per organ at risk and vessel: peak (or, for a freeze, lowest) temperature, damaged volume and fraction;
- cumulative temperature– and damage–volume histograms per structure (per step: the step's temperature).

Transcatheter steps add their delivery metrics (territory coverage, non-target embolization, drug, plasma,
future liver remnant); the whole treatment adds what the final state holds (inflow stopped, drug left) and the
systemic exposure summed over steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu.errors import StructureError
from insitu.evaluation.coverage import coverage_fraction, margin_region, require_margin_mm
from insitu.evaluation.histograms import VolumeHistogram, spec_for, volume_histogram
from insitu.evaluation.margin import margin_map_mm, minimal_margin_point_mm
from insitu.grid import Grid
from insitu.patient.structure import Role, Structure

if TYPE_CHECKING:
    from insitu.patient.patient import Patient
    from insitu.simulation import Outcome, StepResult

ZONE_FIELD = "ablation_zone"  # what thermal, cryo and chemical steps call their necrosis zone
HEAT_FIELD = "max_temperature_c"
COLD_FIELD = "min_temperature_c"
AT_RISK_ROLES = (Role.OAR, Role.VESSEL)
EMBOLIZED_AT = 0.5  # a voxel counts as embolized when at least half its inflow stopped (therapies/transcatheter.py)
TRANSCATHETER_KEYS = (
    "tumour_territory_coverage",
    "tumour_in_infused_territory_fraction",
    "tumour_arterial_inflow_drop",
    "infused_territory_ml",
    "nontarget_embolized_ml",
    "embolic_injected_ml",
    "embolic_refluxed_fraction",
    "stasis_reached",
    "drug_delivered_mg",
    "drug_tumour_mg",
    "drug_liver_mg",
    "plasma_cmax_ng_ml",
    "plasma_auc_ng_h_ml",
    "plasma_auc_inf_ng_h_ml",
    "portal_embolized_ml",
    "tumour_portal_embolized_fraction",
    "flr_ml",
    "flr_fraction",
    "sflr",
    "flr_adequate",
)
TRANSCATHETER_PREFIXES = ("nontarget_embolized_ml_segment_", "flr_ml_week_")
REMNANT_KEYS = ("flr_ml", "flr_fraction", "sflr", "flr_adequate")


def _number(value: float | None, digits: int = 4) -> float | None:
    """A JSON-safe float: rounded, None for NaN or ±inf."""
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


@dataclass
class TargetMetrics:
    """One target against one zone."""

    name: str
    volume_ml: float
    coverage: float
    margin_coverage: float
    minimal_margin_mm: float  # signed; −inf without a zone
    margin_at_mm: tuple[float, float, float] | None

    def summary(self) -> dict[str, Any]:
        return {
            "volume_ml": _number(self.volume_ml),
            "coverage": _number(self.coverage),
            "margin_coverage": _number(self.margin_coverage),
            "minimal_margin_mm": _number(self.minimal_margin_mm, 2),
            "margin_at_mm": None if self.margin_at_mm is None else [round(v, 1) for v in self.margin_at_mm],
        }


@dataclass
class StructureRisk:
    """An organ at risk (or vessel) against one zone and the temperatures that produced it."""

    name: str
    role: str
    damaged_ml: float
    damaged_fraction: float
    max_temperature_c: float | None = None
    min_temperature_c: float | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": self.role,
            "damaged_ml": _number(self.damaged_ml),
            "damaged_fraction": _number(self.damaged_fraction),
        }
        if self.max_temperature_c is not None:
            out["max_temperature_c"] = _number(self.max_temperature_c, 2)
        if self.min_temperature_c is not None:
            out["min_temperature_c"] = _number(self.min_temperature_c, 2)
        return out


@dataclass
class ZoneMetrics:
    """A zone's size, what it covers, what it costs."""

    zone_volume_ml: float
    axes_mm: tuple[float, float, float]  # Feret extents along the principal axes, longest first
    targets: dict[str, TargetMetrics]
    healthy_tissue_lost_ml: dict[str, float]
    at_risk: dict[str, StructureRisk]

    @property
    def healthy_tissue_lost_total_ml(self) -> float:
        return float(sum(self.healthy_tissue_lost_ml.values()))

    def summary(self) -> dict[str, Any]:
        return {
            "zone_volume_ml": _number(self.zone_volume_ml),
            "axes_mm": [_number(v, 2) for v in self.axes_mm],
            "targets": {k: v.summary() for k, v in self.targets.items()},
            "healthy_tissue_lost_ml": {k: _number(v) for k, v in self.healthy_tissue_lost_ml.items()},
            "healthy_tissue_lost_total_ml": _number(self.healthy_tissue_lost_total_ml),
            "at_risk": {k: v.summary() for k, v in self.at_risk.items()},
        }


@dataclass
class StepEvaluation:
    """One step: its zone's metrics (None without a zone), transcatheter metrics, temperature histograms."""

    index: int
    therapy: str
    label: str
    zone: ZoneMetrics | None
    transcatheter: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, dict[str, VolumeHistogram]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "therapy": self.therapy, "label": self.label}
        out["zone"] = None if self.zone is None else self.zone.summary()
        if self.transcatheter:
            out["transcatheter"] = {k: _number(v) for k, v in self.transcatheter.items()}
        if self.histograms:
            out["histograms"] = _histogram_summary(self.histograms)
        return out


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured; ``summary()`` is the JSON document, the arrays are for figures."""

    margin_mm: float
    steps: list[StepEvaluation]
    cumulative: ZoneMetrics | None
    transcatheter: dict[str, float]
    histograms: dict[str, dict[str, VolumeHistogram]]
    zone: np.ndarray | None = None  # the union of every step's zone (bool, patient grid)
    margin_maps_mm: dict[str, np.ndarray] = field(default_factory=dict)  # per target, against ``zone``

    def summary(self) -> dict[str, Any]:
        return {
            "margin_mm": self.margin_mm,
            "cumulative": None if self.cumulative is None else self.cumulative.summary(),
            "transcatheter": {k: _number(v) for k, v in self.transcatheter.items()},
            "histograms": _histogram_summary(self.histograms),
            "steps": [s.summary() for s in self.steps],
        }


def _histogram_summary(histograms: dict[str, dict[str, VolumeHistogram]]) -> dict[str, Any]:
    return {name: {q: h.summary() for q, h in by.items()} for name, by in histograms.items()}


# ---------------------------------------------------------------------- zone metrics
def principal_extents_mm(zone: np.ndarray, grid: Grid) -> tuple[float, float, float]:
    """Feret extents (mm) of a zone along its three principal axes, longest first: the long axis and the two short
    axes without knowing the applicator. The spread of the voxel centres plus one voxel's width along the axis
    (‖diag(spacing)·d‖, exact along a grid axis): good to about ±½ voxel."""
    grid.require_array(zone, "zone")
    kji = np.argwhere(zone)
    if len(kji) == 0:
        return (0.0, 0.0, 0.0)
    points = grid.index_to_world(kji[:, ::-1].astype(float))
    centred = points - points.mean(axis=0)
    directions = np.linalg.svd(centred, full_matrices=False)[2] if len(kji) >= 3 else np.eye(3)
    box_axes = (np.asarray(grid.direction) @ np.diag(grid.spacing_mm)).T  # the voxel's edge vectors (LPS mm)
    extents = []
    for d in directions:
        along = centred @ d
        extents.append(float(along.max() - along.min()) + float(np.linalg.norm(box_axes @ d)))
    extents.sort(reverse=True)
    return (extents[0], extents[1], extents[2])


def _bounding_slices(mask: np.ndarray) -> tuple[slice, ...]:
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _extreme_in(values: np.ndarray | None, mask: np.ndarray, highest: bool, neutral: float) -> float | None:
    """Highest (or lowest) value over ``mask``; NaN (never reached by any step) reads as ``neutral``."""
    if values is None or not mask.any():
        return None
    inside = values[mask]
    reached = inside[~np.isnan(inside)]
    candidates = [float(reached.max() if highest else reached.min())] if reached.size else []
    if reached.size < inside.size:
        candidates.append(neutral)
    return max(candidates) if highest else min(candidates)


def zone_metrics(
    zone: np.ndarray,
    patient: Patient,
    targets: list[Structure],
    regions: dict[str, np.ndarray],
    max_temperature_c: np.ndarray | None = None,
    min_temperature_c: np.ndarray | None = None,
    body_temperature_c: float = 37.0,
) -> tuple[ZoneMetrics, dict[str, np.ndarray]]:
    """Metrics of one zone (bool, patient grid) against ``targets`` and their margin ``regions``, with the peak and
    lowest temperatures (NaN: never reached, read as ``body_temperature_c``); also each target's margin map."""
    grid = patient.grid
    grid.require_array(zone, "zone")
    zone = np.asarray(zone, dtype=bool)
    voxel_ml = grid.voxel_volume_ml
    empty = not zone.any()
    axes = principal_extents_mm(zone, grid)
    target_metrics: dict[str, TargetMetrics] = {}
    maps: dict[str, np.ndarray] = {}
    for target in targets:
        margin_map = margin_map_mm(target.mask, zone, grid)
        maps[target.name] = margin_map
        minimal = float(np.nanmin(margin_map))
        target_metrics[target.name] = TargetMetrics(
            name=target.name,
            volume_ml=target.volume_ml,
            coverage=coverage_fraction(zone, target.mask),
            margin_coverage=coverage_fraction(zone, regions[target.name]),
            minimal_margin_mm=minimal,
            margin_at_mm=None if empty else minimal_margin_point_mm(margin_map, grid),
        )
    all_targets = np.zeros(grid.shape, dtype=bool)
    for target in patient.targets:
        all_targets |= target.mask
    box = _bounding_slices(zone) if not empty else tuple(slice(0, 0) for _ in range(3))
    lost: dict[str, float] = {}
    for organ in patient.with_role(Role.ORGAN):
        lost[organ.name] = float(np.count_nonzero(zone[box] & organ.mask[box] & ~all_targets[box])) * voxel_ml
    at_risk: dict[str, StructureRisk] = {}
    for structure in (s for s in patient.structures.values() if s.role in AT_RISK_ROLES):
        damaged = float(np.count_nonzero(zone[box] & structure.mask[box])) * voxel_ml
        at_risk[structure.name] = StructureRisk(
            name=structure.name,
            role=structure.role.value,
            damaged_ml=damaged,
            damaged_fraction=damaged / structure.volume_ml if structure.volume_ml > 0 else 0.0,
            max_temperature_c=_extreme_in(max_temperature_c, structure.mask, True, body_temperature_c),
            min_temperature_c=_extreme_in(min_temperature_c, structure.mask, False, body_temperature_c),
        )
    metrics = ZoneMetrics(
        zone_volume_ml=float(np.count_nonzero(zone)) * voxel_ml,
        axes_mm=axes,
        targets=target_metrics,
        healthy_tissue_lost_ml=lost,
        at_risk=at_risk,
    )
    return metrics, maps


# ---------------------------------------------------------------------- histograms
def structure_histograms(
    fields: dict[str, np.ndarray], patient: Patient, targets: list[Structure], neutral: dict[str, float]
) -> dict[str, dict[str, VolumeHistogram]]:
    """Cumulative histograms of every known field (histograms.SPECS) for the targets (always) and for each organ,
    organ at risk and vessel the field reached beyond its neutral value (NaN is read as ``neutral[name]``)."""
    grid = patient.grid
    candidates = list(targets) + [
        s for s in patient.structures.values() if s.role in (Role.ORGAN, *AT_RISK_ROLES) and not s.is_empty
    ]
    target_names = {t.name for t in targets}
    out: dict[str, dict[str, VolumeHistogram]] = {}
    for quantity, values in fields.items():
        spec = spec_for(quantity)
        if spec is None:
            continue
        if quantity in neutral:
            values = np.where(np.isnan(values), np.float32(neutral[quantity]), values)
        lowest = spec.thresholds[1] if spec.thresholds.size > 1 else spec.thresholds[0]
        reached = values >= lowest if spec.direction == "at_least" else values <= lowest
        if not reached.any() and not target_names:
            continue
        box = _bounding_slices(reached) if reached.any() else None
        for structure in candidates:
            touched = box is not None and bool(np.any(reached[box] & structure.mask[box]))
            if structure.name not in target_names and not touched:
                continue
            histogram = volume_histogram(quantity, values, structure.mask, grid.voxel_volume_ml, spec)
            out.setdefault(structure.name, {})[quantity] = histogram
    return out


# ---------------------------------------------------------------------- transcatheter
def step_transcatheter(result: StepResult, target_volume_ml: float) -> dict[str, float]:
    """A step's delivery metrics (the keys it reports of TRANSCATHETER_KEYS), plus the non-target fraction: of the
    tissue embolized, the share outside the tumour."""
    metrics = result.metrics
    out = {
        k: float(v)
        for k, v in metrics.items()
        if k in TRANSCATHETER_KEYS or any(k.startswith(p) for p in TRANSCATHETER_PREFIXES)
    }
    if "nontarget_embolized_ml" in out and "tumour_territory_coverage" in out:
        tumour_ml = out["tumour_territory_coverage"] * target_volume_ml
        total = out["nontarget_embolized_ml"] + tumour_ml
        out["nontarget_fraction"] = out["nontarget_embolized_ml"] / total if total > 0 else 0.0
    return out


def cumulative_transcatheter(outcome: Outcome, targets_mask: np.ndarray, steps: list[StepEvaluation]) -> dict:
    """What the final state holds after the transcatheter steps (empty without any): inflow stopped in the tumour,
    the non-target share of all embolized tissue, the drug field's content (an injection's agent counts there too),
    and the systemic exposure summed over steps."""
    state = outcome.final_state
    voxel_ml = state.grid.voxel_volume_ml
    embolized = state.embolized_fraction >= EMBOLIZED_AT
    per_step = [s.transcatheter for s in steps if s.transcatheter]
    if not per_step and not embolized.any():
        return {}
    has_drug = bool(np.any(state.drug_mg_per_ml > 0))
    out: dict[str, float] = {}
    if targets_mask.any():
        out["tumour_inflow_stopped_mean"] = float(np.mean(state.embolized_fraction[targets_mask]))
        out["tumour_embolized_fraction"] = float(np.mean(embolized[targets_mask]))
    total_ml = float(np.count_nonzero(embolized)) * voxel_ml
    nontarget_ml = float(np.count_nonzero(embolized & ~targets_mask)) * voxel_ml
    out["embolized_ml"] = total_ml
    out["nontarget_embolized_ml"] = nontarget_ml
    out["nontarget_fraction"] = nontarget_ml / total_ml if total_ml > 0 else 0.0
    if has_drug:
        drug = state.drug_mg_per_ml.astype(np.float64)
        out["drug_tumour_mg"] = float(drug[targets_mask].sum()) * voxel_ml
        out["drug_nontarget_mg"] = float(drug[~targets_mask].sum()) * voxel_ml
    aucs = [m["plasma_auc_ng_h_ml"] for m in per_step if "plasma_auc_ng_h_ml" in m]
    if aucs:  # linear pharmacokinetics: exposures add
        out["systemic_auc_ng_h_ml"] = float(sum(aucs))
        out["systemic_cmax_ng_ml"] = float(max(m.get("plasma_cmax_ng_ml", 0.0) for m in per_step))
    for metrics in reversed(per_step):  # the latest remnant estimate stands
        if "flr_ml" in metrics:
            out.update({k: metrics[k] for k in REMNANT_KEYS if k in metrics})
            break
    return out


# ---------------------------------------------------------------------- evaluate
def _targets(outcome: Outcome) -> list[Structure]:
    patient = outcome.patient
    names = outcome.plan.targets
    targets = [patient.structure(n) for n in names] if names else patient.require_targets()
    for target in targets:
        if target.is_empty:
            raise StructureError(f"target {target.name!r} is empty (0 voxels)", "check its mask or label value")
    return targets


def _step_field(result: StepResult, name: str, grid: Grid) -> np.ndarray | None:
    values = result.fields.get(name)
    if values is None:
        return None
    grid.require_array(values, f"step {result.index} field {name}")
    return values


def evaluate(outcome: Outcome, margin_mm: float | None = None) -> Evaluation:
    """Judge ``outcome`` (module docstring); ``margin_mm`` defaults to the plan's margin."""
    patient = outcome.patient
    grid = patient.grid
    margin = require_margin_mm(outcome.plan.margin_mm if margin_mm is None else margin_mm)
    targets = _targets(outcome)
    regions = {t.name: margin_region(t.mask, grid, margin) for t in targets}
    targets_mask = np.zeros(grid.shape, dtype=bool)
    for target in targets:
        targets_mask |= target.mask
    target_ml = float(np.count_nonzero(targets_mask)) * grid.voxel_volume_ml
    body = outcome.final_state.body_temperature_c

    steps: list[StepEvaluation] = []
    union: np.ndarray | None = None
    for result in outcome.steps:
        zone = _step_field(result, ZONE_FIELD, grid)
        heat, cold = _step_field(result, HEAT_FIELD, grid), _step_field(result, COLD_FIELD, grid)
        metrics = None
        if zone is not None:
            zone = np.asarray(zone, dtype=bool)
            union = zone.copy() if union is None else union | zone
            metrics, _ = zone_metrics(zone, patient, targets, regions, heat, cold, body)
        temperatures = {k: v for k, v in ((HEAT_FIELD, heat), (COLD_FIELD, cold)) if v is not None}
        steps.append(
            StepEvaluation(
                index=result.index,
                therapy=result.therapy,
                label=result.label,
                zone=metrics,
                transcatheter=step_transcatheter(result, target_ml),
                histograms=structure_histograms(temperatures, patient, targets, {HEAT_FIELD: body, COLD_FIELD: body}),
            )
        )

    damage = outcome.final_state.damage
    cumulative, maps = None, {}
    if union is not None:
        heat, cold = damage.get(HEAT_FIELD), damage.get(COLD_FIELD)
        cumulative, maps = zone_metrics(union, patient, targets, regions, heat, cold, body)
    histograms = structure_histograms(dict(damage), patient, targets, {HEAT_FIELD: body, COLD_FIELD: body})
    return Evaluation(
        margin_mm=margin,
        steps=steps,
        cumulative=cumulative,
        transcatheter=cumulative_transcatheter(outcome, targets_mask, steps),
        histograms=histograms,
        zone=union,
        margin_maps_mm=maps,
    )
