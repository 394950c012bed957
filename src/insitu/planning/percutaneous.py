"""Propose a percutaneous plan: one applicator per target along the best safe straight path (planning/trajectory.py).

The applicator's active part is centred on the target's centroid: an RF electrode's tip lies half its exposed length
beyond the centroid along the path. Placement of several applicators per target (coverage of target + margin) and
the other applicator families (antennas, fibres, probes) come with planning/placement.py; asking for them here is a
one-line error, not a silent guess. Transcatheter therapies take ``placement: auto`` and let the catheter planner
choose the tip when the plan runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from insitu.devices.catalog import TRANSCATHETER_THERAPIES, device_for
from insitu.errors import PlanError
from insitu.patient.patient import Patient
from insitu.patient.structure import Role
from insitu.plan import Plan, plan_from_dict
from insitu.planning.trajectory import Trajectory, plan_trajectories

# therapy → (default catalog device, "RF"-style label, what)
DEFAULT_DEVICES: dict[str, tuple[str, str, str]] = {
    "rfa": ("rf-cooled-17g-30mm", "RF", "RF electrode"),
    "tae": ("microcatheter-2.7fr", "catheter", "catheter"),
    "tai": ("microcatheter-2.7fr", "catheter", "catheter"),
    "tace": ("microcatheter-2.7fr", "catheter", "catheter"),
    "tace_pvce": ("microcatheter-2.7fr", "catheter", "catheter"),
}


# protocols a proposal starts from when none is given: the standard 12-min Cool-tip run (thermal.md §1.2, as the
# demo), and the transcatheter defaults of their protocol models
DEFAULT_PROTOCOLS: dict[str, dict[str, Any]] = {"rfa": {"duration_s": 720.0}}


@dataclass
class ProposedPlan:
    """The plan and, per target, the path chosen for its applicator (empty for transcatheter plans)."""

    plan: Plan
    trajectories: dict[str, Trajectory]
    alternatives: dict[str, list[Trajectory]]


def _tip_offset_mm(therapy: str, parameters: dict[str, Any]) -> float:
    if therapy == "rfa":
        return 0.5 * float(parameters["exposed_tip_mm"])
    raise PlanError(
        f"automatic applicator placement for {therapy} is not available yet",
        "give the step's placement (tip_mm and direction) by hand; rfa and the transcatheter therapies plan here",
    )


def propose_plan(
    patient: Patient,
    patient_ref: str,
    therapy: str,
    *,
    device: str | None = None,
    guidance: str = "ct",
    targets: list[str] | None = None,
    margin_mm: float = 5.0,
    protocol: dict[str, Any] | None = None,
    max_tilt_deg: float | None = None,
    cover_margin: bool = False,
) -> ProposedPlan:
    """A validated plan for ``therapy`` on ``patient`` (``patient_ref``: the folder or 'phantom' the plan names).

    With ``cover_margin`` (RF only) each target gets as many electrodes (overlapping ablations, one step each) as the
    placement search needs to cover target + ``margin_mm`` (planning/placement.py; a surrogate: run the plan to
    confirm)."""
    if therapy not in DEFAULT_DEVICES:
        _tip_offset_mm(therapy, {})  # raises the one-line error naming what is available
    default, label, what = DEFAULT_DEVICES[therapy]
    chosen = device_for(device or default, therapy, label, what)
    names = targets or [s.name for s in patient.targets]
    if not names:
        patient.require_targets()
    for name in names:  # the same rule simulate applies, before any path is searched
        role = patient.structure(name).role
        if role is not Role.TARGET:
            raise PlanError(f"plan target {name!r} has role {role.value}", "name structures with role: target")
    protocol = {**DEFAULT_PROTOCOLS.get(therapy, {}), **(protocol or {})}
    steps: list[dict[str, Any]] = []
    chosen_paths: dict[str, Trajectory] = {}
    alternatives: dict[str, list[Trajectory]] = {}
    if therapy in TRANSCATHETER_THERAPIES:
        steps.append({"therapy": therapy, "device": chosen.name, "placement": {"auto": True}, "protocol": protocol})
    elif cover_margin:
        if therapy != "rfa":
            raise PlanError(
                f"margin-covering placement is not available for {therapy} yet", "use it with --therapy rfa"
            )
        from insitu.planning.placement import plan_placement

        for name in names:
            result = plan_placement(
                patient, name, device=chosen.name, protocol=protocol, margin_mm=margin_mm, guidance=guidance,
                **({} if max_tilt_deg is None else {"max_tilt_deg": max_tilt_deg}),
            )  # fmt: skip
            chosen_paths[name] = result.electrodes[0].trajectory
            alternatives[name] = [e.trajectory for e in result.electrodes[1:]]
            steps.extend(result.steps(protocol))
    else:
        offset = _tip_offset_mm(therapy, chosen.parameters)
        for name in names:
            paths = plan_trajectories(
                patient, name, guidance=guidance, device=chosen.name, tip_offset_mm=offset, max_tilt_deg=max_tilt_deg
            )
            best = paths[0]
            chosen_paths[name], alternatives[name] = best, paths[1:]
            steps.append(
                {
                    "therapy": therapy,
                    "device": chosen.name,
                    "label": f"{therapy.upper()} of {name}, {guidance.upper()}-guided, {best.length_mm:.0f} mm path",
                    "placement": {k: [round(v, 2) for v in values] for k, values in best.placement_fields().items()},
                    "protocol": protocol,
                }
            )
    plan = plan_from_dict(
        {
            "name": f"{therapy}-plan",
            "patient": patient_ref,
            "targets": names,
            "margin_mm": margin_mm,
            "guidance": guidance,
            "steps": steps,
        }
    )
    return ProposedPlan(plan=plan, trajectories=chosen_paths, alternatives=alternatives)
