"""Run a plan: its steps act in order on one TissueState; the result is an Outcome.

Each therapy module (found through the therapy registry) exposes ``protocol_model`` (pydantic) and
``apply(state, step, context) -> (state, StepResult)``. Nothing here knows any therapy's physics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from insitu.errors import PlanError, StructureError
from insitu.patient.patient import Patient
from insitu.plan import Plan, Step
from insitu.progress import Progress, ensure_progress, scaled
from insitu.state import TissueState
from insitu.tissue.library import TissueLibrary, load_library


@dataclass
class StepContext:
    """What a therapy may read besides the state: the patient, the plan, the tissue library, progress."""

    patient: Patient
    plan: Plan
    library: TissueLibrary
    progress: Progress


@dataclass
class StepResult:
    """What one step did: scalar metrics, time curves, and named result volumes on the patient grid."""

    index: int
    therapy: str
    label: str
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings a user must read (e.g. stasis before the full dose)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "index": self.index,
            "therapy": self.therapy,
            "label": self.label,
            "metrics": self.metrics,
        }
        if self.curves:
            summary["curves"] = self.curves
        if self.notes:
            summary["notes"] = self.notes
        return summary


@dataclass
class Outcome:
    """The final state after every step, each step's result, and the plan that produced them."""

    plan: Plan
    patient: Patient
    final_state: TissueState
    steps: list[StepResult]

    def summary(self) -> dict[str, Any]:
        return {
            "plan": self.plan.model_dump(mode="json"),
            "grid": self.patient.grid.to_dict(),
            "simulated_time_s": round(self.final_state.time_s, 3),
            "steps": [s.summary() for s in self.steps],
        }


def resolve_patient(plan: Plan) -> Patient:
    """The plan's patient: a patient folder, or the default built-in phantom for ``patient: phantom``."""
    if plan.patient == "phantom":
        from insitu.patient.phantom import make_phantom

        return make_phantom()
    from insitu.io.patient_folder import load_patient

    return load_patient(Path(plan.patient))


def check_targets(plan: Plan, patient: Patient) -> None:
    """Every target the plan names exists, is a target and is not empty."""
    for name in plan.targets:
        structure = patient.structure(name)
        if structure.role.value != "target":
            raise PlanError(
                f"plan target {name!r} has role {structure.role.value}", "name structures with role: target"
            )
        if structure.is_empty:
            raise StructureError(f"target {name!r} is empty (0 voxels)", "check its mask or label value")
    if not plan.targets:
        patient.require_targets()


def simulate(
    plan: Plan, patient: Patient | None = None, progress: Progress | None = None, library: TissueLibrary | None = None
) -> Outcome:
    """Run ``plan`` on ``patient`` (default: the plan's patient) and return the Outcome."""
    from insitu.registry import therapies

    report = ensure_progress(progress)
    patient = patient if patient is not None else resolve_patient(plan)
    library = library or load_library()
    check_targets(plan, patient)
    patient.validate_tissues(library)
    # check every step's placement before running any (bad input loses nothing)
    for index, step in enumerate(plan.steps):
        _check_placement(step, patient, index, therapies().get(step.therapy))
    state = TissueState.from_patient(patient, library, plan.body_temperature_c)
    results: list[StepResult] = []
    n = len(plan.steps)
    for index, step in enumerate(plan.steps):
        therapy = therapies().get(step.therapy)
        context = StepContext(patient, plan, library, scaled(report, index / n, (index + 1) / n, "simulate"))
        state, result = therapy.apply(state, step, context)
        result.index = index
        result.label = step.label or f"{index + 1}: {step.therapy}"
        results.append(result)
    report("simulate", 1.0, "done")
    return Outcome(plan=plan, patient=patient, final_state=state, steps=results)


def _check_placement(step: Step, patient: Patient, index: int, therapy: Any = None) -> None:
    if step.placement.auto and getattr(therapy, "plans_placement", False):
        return  # the therapy places itself (e.g. the catheter planner picks the tip)
    if step.placement.auto:
        raise PlanError(
            f"steps.{index}: placement is 'auto'", "automatic placement arrives with the planner; give tip_mm"
        )
    point = step.placement.point_mm
    if not bool(patient.grid.contains_world(point)):
        lo, hi = patient.grid.bounds_mm()
        raise PlanError(
            f"steps.{index}: point {tuple(point)} mm lies outside the image "
            f"({tuple(np.round(lo, 1))} to {tuple(np.round(hi, 1))} mm)",
            "give LPS millimetres inside the image",
        )
    k, j, i = patient.grid.world_to_kji(point)
    body = patient.image[k, j, i] > -400 if patient.modality.upper() == "CT" else True
    if not body:
        raise PlanError(f"steps.{index}: point {tuple(point)} mm lies outside the body (air)", "place it in tissue")
