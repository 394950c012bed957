"""``tace_pvce``: TACE of the tumour's artery plus portal vein embolization of the liver part to be resected.

The arterial half is :mod:`insitu.therapies.tace`. The portal half embolizes the portal branch that drains the
chosen Couinaud segments (``portal_segments``, e.g. ``right`` = V–VIII) or the branch at ``portal_tip_mm``: its
territories lose their portal perfusion, so the tumour loses both supplies where it lies in that part. The step
reports the future liver remnant (the functional liver outside the portal-embolized territory), its share of the
standardized liver volume when height and weight are given, the minimum for the liver's condition, and its
expected growth over the weeks after embolization.
"""

from __future__ import annotations

import numpy as np

from insitu.errors import StructureError
from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.tace import CARRIER_OF_TECHNIQUE
from insitu.therapies.transcatheter import (
    EmbolicProtocol,
    TACEPVCEProtocol,
    arterial_step,
    catheter_diameter,
    check_catheter,
    embolize_at,
    target_mask,
)
from insitu.therapies.vascular_bed import PORTAL, catheter_node, vascular_bed, with_flow_change
from insitu.vascular.liver_remnant import future_liver_remnant, portal_branch_for_segments

protocol_model = TACEPVCEProtocol
plans_placement = True  # placement auto: the catheter planner chooses the tip
PORTAL_EMBOLIZED_DROP = 0.5  # a voxel belongs to the embolized part once its portal inflow fell by half
GROWTH_SAMPLES = 13


def check_step(step: Step) -> None:
    """Plan-time check: a catalog catheter and a tip (or auto)."""
    check_catheter(step)


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """TACE, then portal embolization; the state loses arterial and portal perfusion; FLR in the result."""
    carrier = CARRIER_OF_TECHNIQUE[step.protocol["technique"]]
    after_tace, result, _ = arterial_step(state, step, context, embolic=True, drug=True, carrier_name=carrier)
    protocol = TACEPVCEProtocol.model_validate(step.protocol)
    patient = context.patient
    context.progress(step.therapy, 0.6, "portal vein embolization")
    bed = vascular_bed(patient, PORTAL)
    if protocol.portal_tip_mm is not None:
        node = catheter_node(bed.tree, np.asarray(protocol.portal_tip_mm), catheter_diameter(step))
        dice = float("nan")
    else:
        if "couinaud" not in patient.label_maps:
            raise StructureError(
                "portal_segments needs a Couinaud segment map, and this patient has none",
                "give portal_tip_mm instead, or add a 'couinaud' label map",
            )
        branch = portal_branch_for_segments(
            bed.tree, bed.territories, patient.label_maps["couinaud"][0], protocol.portal_segments
        )
        node, dice = branch.node, branch.dice
    portal_protocol = EmbolicProtocol(
        agent=protocol.portal_agent,
        embolic_volume_ml=protocol.portal_embolic_volume_ml,
        injection_rate_ml_min=protocol.injection_rate_ml_min,
        endpoint="complete_stasis",
    )
    emb = embolize_at(bed, node, catheter_diameter(step), portal_protocol, loaded=False)
    new = with_flow_change(after_tace, bed, emb.flow_factor)
    portal_before = state.perfusion_portal_per_s.astype(np.float64)
    drop = np.divide(
        portal_before - new.perfusion_portal_per_s,
        portal_before,
        out=np.zeros(state.grid.shape),
        where=portal_before > 0,
    )
    embolized = (drop >= PORTAL_EMBOLIZED_DROP) & bed.domain
    targets = target_mask(patient, context.plan.targets)
    liver = bed.domain
    remnant = future_liver_remnant(
        liver,
        targets & liver,
        embolized,
        patient.grid,
        height_cm=protocol.height_cm,
        weight_kg=protocol.weight_kg,
        condition=protocol.liver_condition,
    )
    weeks = np.linspace(0.0, protocol.growth_weeks, GROWTH_SAMPLES)
    growth = remnant.growth(weeks)
    tumour = targets & liver
    both = float(np.mean(drop[tumour] >= PORTAL_EMBOLIZED_DROP)) if tumour.any() else 0.0
    result.metrics.update(
        {
            "portal_branch_node": float(node),
            "portal_embolized_ml": round(remnant.embolized_ml, 1),
            "portal_stasis_reached": float(emb.stasis_reached),
            "tumour_portal_embolized_fraction": round(both, 4),
            "tumour_portal_inflow_drop": round(float(np.mean(drop[tumour])) if tumour.any() else 0.0, 4),
            "flr_ml": round(remnant.flr_ml, 1),
            "flr_fraction": round(remnant.flr_fraction, 4),
            "flr_threshold_fraction": remnant.threshold_fraction,
            "flr_adequate": float(remnant.adequate),
            f"flr_ml_week_{protocol.growth_weeks:g}": round(float(growth.flr_ml[-1]), 1),
        }
    )
    if np.isfinite(dice):  # a branch chosen by segments: how well its territory matches them
        result.metrics["portal_branch_dice"] = round(dice, 4)
    if remnant.sflr is not None:
        result.metrics["sflr"] = round(remnant.sflr, 4)
        result.metrics["telv_ml"] = round(float(remnant.telv_ml), 1)
    result.curves["flr_weeks"] = [round(float(w), 3) for w in weeks]
    result.curves["flr_ml"] = [round(float(v), 2) for v in growth.flr_ml]
    result.fields["portal_inflow_drop"] = drop.astype(np.float32)
    if not remnant.adequate:
        result.notes.append(
            f"future liver remnant {100 * (remnant.sflr if remnant.sflr is not None else remnant.flr_fraction):.1f} % "
            f"is below the {100 * remnant.threshold_fraction:.0f} % minimum for a {remnant.condition} liver"
        )
    context.progress(step.therapy, 1.0, "done")
    return new, result
