"""Transcatheter steps (TAE, TAI, TACE, TACE+PVCE) on the patient's hepatic trees and the TissueState.

One pipeline serves the four therapies. The catheter tip sits in a branch of the hepatic artery (an explicit
``tip_mm`` snapped to the nearest segment, or ``placement: auto`` for the catheter planner); embolic particles or
Lipiodol are injected there and lodge where the vessels become narrower than them, flow redistributes and may
reflux (:mod:`insitu.vascular.embolization`); the ratio of each terminal's flow after to before scales the
arterial perfusion of its territory (:mod:`insitu.therapies.vascular_bed`). A drug (TAI, TACE) is given with its
carrier — solution, Lipiodol emulsion or drug-eluting beads — and the two-compartment-plus-first-pass model
(:mod:`insitu.vascular.pharmacokinetics`) gives the plasma curve; the drug retained in the liver (in the carrier
and extracted on first pass) is laid into the territories that received it. TACE+PVCE also embolizes a portal
branch (chosen by Couinaud segments or a portal tip) and reports the future liver remnant
(:mod:`insitu.vascular.liver_remnant`). Nothing here is special-cased for a later ablation: the lowered perfusion
is simply what the next thermal step reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from insitu.devices.catalog import device_for
from insitu.errors import PlanError
from insitu.patient.patient import Patient
from insitu.patient.structure import Role
from insitu.plan import Step
from insitu.planning.catheter import catheter_outer_diameter_mm, plan_catheter_tips, selectivity_level
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.vascular_bed import (
    ARTERIAL,
    PORTAL,
    PORTAL_INLET_PRESSURE_MMHG,
    PORTAL_OUTLET_PRESSURE_MMHG,
    VascularBed,
    catheter_node,
    subtree_terminals,
    vascular_bed,
    with_flow_change,
)
from insitu.vascular.embolization import (
    EmbolizationResult,
    embolic_agent,
    embolize,
    particle_volume_from_settled_ml,
)
from insitu.vascular.pharmacokinetics import PlasmaProfile, carrier_release, resolve_drug_name, simulate_plasma

# A voxel counts as devascularised when its arterial inflow fell by at least this share: the "complete stasis"
# side of the angiographic endpoints (Nouri 2019, vascular.md §3); a reporting threshold, not a model input.
DEVASCULARISED_DROP = 0.9
# Non-target embolization is reported as liver volume outside the targets whose inflow fell by at least half.
NONTARGET_DROP = 0.5
MAX_AUTO_TIPS = 3  # superselective injections the planner may use for one tumour (one per feeder)
PK_SAMPLES = 241  # plasma curve samples over the observation window
DEFAULT_OBSERVE_H = 24.0
MIN_S = 60.0
H_S = 3600.0


class _Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbolicProtocol(_Protocol):
    """The embolic part of TAE / TACE: agent, volume, rate and angiographic endpoint."""

    agent: str = Field(description="embolic agent of vascular/embolics.yaml, e.g. tgms_300_500, dc_bead_100_300")
    embolic_volume_ml: float = Field(
        gt=0.0, le=60.0, description="settled particle volume (vial), or oil volume for Lipiodol"
    )
    injection_rate_ml_min: float = Field(default=1.0, gt=0.0, le=20.0, description="suspension / emulsion rate")
    endpoint: Literal["complete_stasis", "near_stasis", "sub_stasis", "none", "default"] = "default"


# default angiographic endpoints (vascular.md §3: Nouri 2019, Martin 2011, Periyasamy 2021): complete stasis for
# conventional TACE, near-stasis for drug-eluting beads, sub-stasis for bland embolization
DEFAULT_ENDPOINT = {"tae": "sub_stasis", "conventional": "complete_stasis", "deb": "near_stasis"}


class TAEProtocol(EmbolicProtocol):
    """Bland transarterial embolization."""

    agent: str = "tgms_300_500"
    embolic_volume_ml: float = Field(default=2.0, gt=0.0, le=60.0)

    @model_validator(mode="after")
    def _default_endpoint(self) -> TAEProtocol:
        if self.endpoint == "default":
            object.__setattr__(self, "endpoint", DEFAULT_ENDPOINT["tae"])
        return self


class DrugProtocol(_Protocol):
    """A drug, its dose and how long the plasma curve is followed."""

    drug: str = "doxorubicin"
    dose_mg: float = Field(default=50.0, gt=0.0, le=5000.0)
    observe_h: float = Field(default=DEFAULT_OBSERVE_H, gt=0.0, le=24.0 * 14)


class TAIProtocol(DrugProtocol):
    """Transarterial infusion chemotherapy (HAIC): a drug solution infused at the catheter tip."""

    infusion_duration_s: float = Field(default=1800.0, ge=0.0, le=7 * 24 * 3600.0)


class TACEProtocol(EmbolicProtocol, DrugProtocol):
    """Chemoembolization: conventional (drug in a Lipiodol emulsion) or drug-eluting beads."""

    technique: Literal["conventional", "deb"] = "deb"
    agent: str = ""
    embolic_volume_ml: float = Field(default=2.0, gt=0.0, le=60.0)
    follow_agent: str | None = Field(
        default="gelatin_sponge_500_700", description="conventional only: particles after the emulsion"
    )
    follow_volume_ml: float = Field(default=2.0, gt=0.0, le=60.0, description="settled volume of follow_agent")

    @model_validator(mode="after")
    def _agent_fits_technique(self) -> TACEProtocol:
        if self.endpoint == "default":
            object.__setattr__(self, "endpoint", DEFAULT_ENDPOINT[self.technique])
        if not self.agent:
            object.__setattr__(self, "agent", "lipiodol" if self.technique == "conventional" else "dc_bead_100_300")
        if self.technique == "deb" and not self.agent.startswith("dc_bead"):
            raise ValueError(f"technique deb needs a drug-eluting bead agent (dc_bead_*), not {self.agent!r}")
        if self.technique == "conventional" and self.agent != "lipiodol":
            raise ValueError(f"technique conventional carries the drug in lipiodol, not {self.agent!r}")
        return self


class TACEPVCEProtocol(TACEProtocol):
    """TACE of the tumour's artery plus portal vein embolization of a liver part (Couinaud segments or a tip)."""

    portal_segments: list[int] | Literal["right", "right_extended", "left"] | None = "right"
    portal_tip_mm: tuple[float, float, float] | None = None
    portal_agent: str = "tgms_700_900"
    portal_embolic_volume_ml: float = Field(default=10.0, gt=0.0, le=100.0)
    height_cm: float | None = Field(default=None, gt=0.0)
    weight_kg: float | None = Field(default=None, gt=0.0)
    liver_condition: Literal["normal", "chemotherapy", "cirrhosis"] = "normal"
    growth_weeks: float = Field(default=6.0, gt=0.0, le=52.0)

    @model_validator(mode="after")
    def _one_portal_target(self) -> TACEPVCEProtocol:
        if self.portal_tip_mm is not None:
            object.__setattr__(self, "portal_segments", None)
        if self.portal_segments is None and self.portal_tip_mm is None:
            raise ValueError("give portal_segments (e.g. right) or portal_tip_mm")
        return self


# ---------------------------------------------------------------------------------------------- the pipeline
@dataclass
class ArterialDelivery:
    """What one arterial catheter step did, before it is written into the state and the result."""

    bed: VascularBed
    tip_nodes: list[int]
    catheter_mm: float
    flow_factor: np.ndarray
    infused_terminals: np.ndarray
    embolizations: list[EmbolizationResult] = field(default_factory=list)
    plasma: PlasmaProfile | None = None
    delivered_dose_mg: float = 0.0
    retained_by_terminal_mg: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


def target_mask(patient: Patient, names: list[str]) -> np.ndarray:
    """The union of the plan's targets (all targets when the plan names none)."""
    structures = [patient.structure(n) for n in names] if names else patient.with_role(Role.TARGET)
    mask = np.zeros(patient.grid.shape, dtype=bool)
    for structure in structures:
        mask |= structure.mask.astype(bool)
    return mask


def catheter_diameter(step: Step) -> float:
    """The step's catalog catheter and its outer diameter (mm)."""
    device = device_for(step.device, step.therapy, "catheter", "catheter")
    return catheter_outer_diameter_mm(device.name)


def _tips(step: Step, bed: VascularBed, targets: np.ndarray, outer_mm: float) -> tuple[list[int], list[str]]:
    """The catheter tip node(s): the planner's (up to ``MAX_AUTO_TIPS`` superselective positions) or the user's."""
    if step.placement.auto:
        liver = bed.domain & ~targets
        plan = plan_catheter_tips(
            bed.tree, bed.territories, targets & bed.domain, liver, outer_mm, max_tips=MAX_AUTO_TIPS, min_coverage=0.95
        )
        return [int(n) for n in plan.tip_nodes], list(plan.warnings)
    return [catheter_node(bed.tree, np.asarray(step.placement.point_mm, dtype=np.float64), outer_mm)], []


def embolize_at(
    bed: VascularBed, node: int, outer_mm: float, protocol: EmbolicProtocol, loaded: bool
) -> EmbolizationResult:
    """Inject ``protocol``'s embolic from a catheter (outer diameter ``outer_mm``) whose tip is at ``node`` of the
    bed's tree, with the bed's pressures (arterial or portal); settled particle volume becomes sphere volume."""
    agent = embolic_agent(protocol.agent, drug_loaded=loaded)
    volume = protocol.embolic_volume_ml
    if agent.transport != "fluid":
        volume = particle_volume_from_settled_ml(volume)
    pressures = (
        {"inlet_pressure_mmhg": PORTAL_INLET_PRESSURE_MMHG, "outlet_pressure_mmhg": PORTAL_OUTLET_PRESSURE_MMHG}
        if bed.system == PORTAL
        else {}
    )
    return embolize(
        bed.tree,
        node,
        0.5 * outer_mm,
        agent,
        volume,
        protocol.injection_rate_ml_min,
        endpoint=None if protocol.endpoint == "none" else protocol.endpoint.replace("default", "complete_stasis"),
        terminal_tissue_volume_ml=np.maximum(bed.territories.volume_ml, 1e-6),
        **pressures,
    )


def _injections(bed: VascularBed, tips: list[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """Each tip's downstream terminals and its share of the dose (by baseline flow: one injection per feeder)."""
    infused = [subtree_terminals(bed.tree, node) for node in tips]
    flows = np.array([bed.baseline.terminal_outflow_m3_s[t].sum() for t in infused])
    weights = flows / flows.sum() if flows.sum() > 0 else np.full(len(tips), 1.0 / len(tips))
    return infused, weights


def _planned_particle_volume(protocol: EmbolicProtocol) -> float:
    if embolic_agent(protocol.agent).transport == "fluid":
        return protocol.embolic_volume_ml
    return particle_volume_from_settled_ml(protocol.embolic_volume_ml)


def _embolize_tips(
    bed: VascularBed, tips: list[int], weights: np.ndarray, outer_mm: float, protocol: EmbolicProtocol, loaded: bool
) -> tuple[list[EmbolizationResult], np.ndarray, np.ndarray, float]:
    """Embolize from each tip with its share of the volume; flow factors multiply (the tips' subtrees are disjoint,
    so each injection's redistribution is small elsewhere).
    Returns the results, the factor, the lodged share per terminal and the delivered fraction."""
    n_terminals = bed.territories.terminal_nodes.size
    factor = np.ones(n_terminals)
    share = np.zeros(n_terminals)
    results = []
    injected = 0.0
    for node, weight in zip(tips, weights, strict=True):
        part = protocol.model_copy(update={"embolic_volume_ml": protocol.embolic_volume_ml * float(weight)})
        emb = embolize_at(bed, node, outer_mm, part, loaded=loaded)
        results.append(emb)
        factor *= np.asarray(emb.flow_factor, dtype=np.float64)
        share += emb.deposit_volume_ml
        injected += emb.injected_volume_ml
    share = share / injected if injected > 0 else share
    planned = _planned_particle_volume(protocol)
    return results, factor, share, min(1.0, injected / planned) if planned > 0 else 1.0


def procedure_duration_s(protocol: dict, embolic: bool) -> float:
    """How long the injection lasts: the planned embolic volume at its rate, or the infusion's duration."""
    if embolic:
        return MIN_S * float(protocol["embolic_volume_ml"]) / float(protocol["injection_rate_ml_min"])
    return float(protocol.get("infusion_duration_s", 0.0))


def arterial_delivery(
    state: TissueState, step: Step, context: StepContext, *, embolic: bool, drug: bool, carrier_name: str = "solution"
) -> ArterialDelivery:
    """Catheter tip(s), embolization (optional) and drug (optional) for an arterial step."""
    patient = context.patient
    bed = vascular_bed(patient, ARTERIAL)
    targets = target_mask(patient, context.plan.targets)
    outer_mm = catheter_diameter(step)
    tips, warnings = _tips(step, bed, targets, outer_mm)
    infused, weights = _injections(bed, tips)
    n_terminals = bed.territories.terminal_nodes.size
    protocol = step.protocol
    result = ArterialDelivery(
        bed, tips, outer_mm, np.ones(n_terminals), np.unique(np.concatenate(infused)), warnings=warnings
    )
    share = np.zeros(n_terminals)
    fraction_delivered = 1.0
    if embolic:
        embolic_protocol = EmbolicProtocol.model_validate({k: protocol[k] for k in EmbolicProtocol.model_fields})
        loaded = drug and carrier_name != "lipiodol_emulsion"
        results, factor, share, fraction_delivered = _embolize_tips(
            bed, tips, weights, outer_mm, embolic_protocol, loaded
        )
        follow = protocol.get("follow_agent") if carrier_name == "lipiodol_emulsion" else None
        if follow:
            # conventional TACE: the emulsion is followed by particles to the endpoint (de Baere 2016, vascular.md §3)
            particles = embolic_protocol.model_copy(
                update={"agent": follow, "embolic_volume_ml": float(protocol["follow_volume_ml"])}
            )
            more, follow_factor, _, _ = _embolize_tips(bed, tips, weights, outer_mm, particles, loaded=False)
            results += more
            factor *= follow_factor
        result.embolizations = results
        result.flow_factor = factor
        if any(emb.stasis_reached for emb in results) and fraction_delivered < 0.999:
            result.warnings.append(
                f"stasis after {100 * fraction_delivered:.0f} % of the embolic volume; the rest (and its drug) "
                "was not given"
            )
        refluxed = sum(e.refluxed_count for e in results) / max(sum(e.injected_count for e in results), 1e-30)
        if refluxed > 0.01:
            result.warnings.append(f"{100 * refluxed:.1f} % of the embolic refluxed past the catheter")
    else:
        for terminals, weight in zip(infused, weights, strict=True):
            flows = bed.baseline.terminal_outflow_m3_s[terminals]
            share[terminals] += weight * (flows / flows.sum() if flows.sum() > 0 else 1.0 / max(terminals.size, 1))
    if drug:
        drug_protocol = DrugProtocol.model_validate({k: protocol[k] for k in ("drug", "dose_mg", "observe_h")})
        name = resolve_drug_name(drug_protocol.drug)
        carrier = carrier_release(carrier_name)
        carrier.check_drug(name)
        dose = drug_protocol.dose_mg * fraction_delivered
        duration = procedure_duration_s(protocol, embolic)
        times = np.linspace(0.0, drug_protocol.observe_h * H_S, PK_SAMPLES)
        plasma = simulate_plasma(
            name, dose, times, route="hepatic_artery", carrier=carrier, injection_duration_s=duration
        )
        retained = float(plasma.in_carrier_mg[-1] + plasma.extracted_by_liver_mg[-1])
        total_share = share.sum()
        result.plasma = plasma
        result.delivered_dose_mg = dose
        result.retained_by_terminal_mg = retained * share / total_share if total_share > 0 else np.zeros(n_terminals)
    return result


def delivery_state(state: TissueState, delivery: ArterialDelivery, duration_s: float) -> TissueState:
    """The new state: arterial perfusion scaled per territory, drug laid into the territories that received it.

    The drug is what the liver holds at the end of the plasma window (``observe_h``: still in the carrier, plus what
    the first pass extracted); the state's clock advances by the procedure only."""
    new = with_flow_change(state, delivery.bed, delivery.flow_factor)
    if delivery.retained_by_terminal_mg is not None:
        volume = delivery.bed.territories.volume_ml
        per_ml = np.divide(
            delivery.retained_by_terminal_mg, volume, out=np.zeros_like(volume, dtype=np.float64), where=volume > 0
        )
        labels = delivery.bed.territories.labels
        inside = labels >= 0
        added = np.zeros(state.grid.shape, dtype=np.float32)
        added[inside] = per_ml[labels[inside]]
        new.drug_mg_per_ml = (state.drug_mg_per_ml + added).astype(np.float32)
    new.time_s = state.time_s + duration_s
    return new


def delivery_metrics(
    before: TissueState, after: TissueState, delivery: ArterialDelivery, patient: Patient, targets: np.ndarray
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, np.ndarray]]:
    """Coverage of the tumour's territory, non-target embolization by Couinaud segment, drug and plasma numbers."""
    grid = patient.grid
    voxel_ml = grid.voxel_volume_ml
    bed = delivery.bed
    tree = bed.tree
    node = delivery.tip_nodes[0]
    arterial_before = before.perfusion_arterial_per_s.astype(np.float64)
    drop = np.divide(
        arterial_before - after.perfusion_arterial_per_s,
        arterial_before,
        out=np.zeros(grid.shape),
        where=arterial_before > 0,
    )
    tumour = targets & bed.domain
    liver = bed.domain & ~targets
    n_tumour = max(int(np.count_nonzero(tumour)), 1)
    infused_mask = bed.territories.territory_mask(delivery.infused_terminals)
    metrics: dict[str, float] = {
        "catheter_tips": float(len(delivery.tip_nodes)),
        "catheter_tip_node": float(node),
        "catheter_tip_vessel_diameter_mm": round(2.0 * float(tree.radius_mm[node]), 3),
        "catheter_outer_diameter_mm": round(delivery.catheter_mm, 3),
        "infused_territory_ml": round(float(np.count_nonzero(infused_mask & bed.domain)) * voxel_ml, 2),
        "tumour_in_infused_territory_fraction": round(float(np.count_nonzero(infused_mask & tumour)) / n_tumour, 4),
    }
    fields: dict[str, np.ndarray] = {}
    curves: dict[str, list[float]] = {}
    if delivery.embolizations:
        embs = delivery.embolizations
        devascularised = drop >= DEVASCULARISED_DROP
        nontarget = (drop >= NONTARGET_DROP) & liver
        weights = arterial_before[tumour]
        metrics.update(
            {
                "tumour_territory_coverage": round(float(np.count_nonzero(devascularised & tumour)) / n_tumour, 4),
                "tumour_arterial_inflow_drop": round(
                    float(np.sum(drop[tumour] * weights) / max(np.sum(weights), 1e-30)), 4
                ),
                "nontarget_embolized_ml": round(float(np.count_nonzero(nontarget)) * voxel_ml, 2),
                "embolic_injected_ml": round(sum(e.injected_volume_ml for e in embs), 4),
                "embolic_refluxed_fraction": round(
                    sum(e.refluxed_count for e in embs) / max(sum(e.injected_count for e in embs), 1e-30), 4
                ),
                "stasis_reached": float(any(e.stasis_reached for e in embs)),
                "occluded_segments": float(np.count_nonzero(np.any([e.occluded for e in embs], axis=0))),
            }
        )
        if "couinaud" in patient.label_maps:
            labels = patient.label_maps["couinaud"][0]
            for segment in range(1, 9):
                volume = float(np.count_nonzero(nontarget & (labels == segment))) * voxel_ml
                if volume > 0:
                    metrics[f"nontarget_embolized_ml_segment_{segment}"] = round(volume, 2)
        fields["arterial_inflow_drop"] = drop.astype(np.float32)
    if delivery.plasma is not None:
        plasma = delivery.plasma
        drug_added = after.drug_mg_per_ml - before.drug_mg_per_ml
        metrics.update(
            {
                "drug_delivered_mg": round(delivery.delivered_dose_mg, 3),
                "drug_tumour_mg": round(float(np.sum(drug_added[tumour])) * voxel_ml, 3),
                "drug_liver_mg": round(float(np.sum(drug_added[liver])) * voxel_ml, 3),
                "drug_tumour_mean_ug_ml": round(1e3 * float(np.mean(drug_added[tumour])) if tumour.any() else 0.0, 3),
                "plasma_cmax_ng_ml": round(plasma.cmax_ng_ml, 3),
                "plasma_tmax_min": round(plasma.tmax_s / MIN_S, 2),
                "plasma_auc_ng_h_ml": round(plasma.auc_0_t_ng_h_ml, 3),
                "plasma_auc_inf_ng_h_ml": round(plasma.auc_inf_ng_h_ml, 3),
            }
        )
        curves["plasma_time_h"] = [round(float(t) / H_S, 4) for t in plasma.time_s]
        curves["plasma_ng_ml"] = [round(float(c), 4) for c in plasma.plasma_ng_ml]
        fields["drug_mg_per_ml"] = drug_added.astype(np.float32)
    metrics["selectivity_level"] = float(
        ["nonselective", "lobar", "segmental", "subsegmental"].index(selectivity_level(tree, node))
    )
    return metrics, curves, fields


def arterial_step(
    state: TissueState,
    step: Step,
    context: StepContext,
    *,
    embolic: bool,
    drug: bool,
    carrier_name: str = "solution",
) -> tuple[TissueState, StepResult, ArterialDelivery]:
    """Run the arterial part of a transcatheter step: new state, step result, and the delivery record."""
    context.progress(step.therapy, 0.05, "catheter and vascular bed")
    delivery = arterial_delivery(state, step, context, embolic=embolic, drug=drug, carrier_name=carrier_name)
    new = delivery_state(state, delivery, procedure_duration_s(step.protocol, embolic))
    targets = target_mask(context.patient, context.plan.targets)
    metrics, curves, fields = delivery_metrics(state, new, delivery, context.patient, targets)
    result = StepResult(index=0, therapy=step.therapy, label="", metrics=metrics, curves=curves, fields=fields)
    for warning in delivery.warnings:
        context.progress(step.therapy, 0.9, f"warning: {warning}")
    result.notes.extend(delivery.warnings)
    context.progress(step.therapy, 1.0, "done")
    return new, result, delivery


def check_catheter(step: Step) -> None:
    """Plan-time check: the device is a catalog catheter, the agents and the drug exist (one-line errors)."""
    catheter_diameter(step)
    for key in ("agent", "follow_agent", "portal_agent"):
        if step.protocol.get(key):
            embolic_agent(step.protocol[key])
    if step.protocol.get("drug"):
        resolve_drug_name(step.protocol["drug"])
    if step.placement.auto:
        return
    if step.placement.tip_mm is None and step.placement.target_mm is None:
        raise PlanError("a transcatheter step needs placement tip_mm or auto", "give the catheter tip position")
