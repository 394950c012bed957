"""The demo's treatment: one RF ablation of the phantom's tumour with an explicit, checked placement.

The electrode (3 cm cooled tip) enters along the first of a few standard percutaneous approaches whose
track from the skin to the tumour crosses no bone; its active part is centred on the tumour.
"""

from __future__ import annotations

import numpy as np

from insitu.errors import PlanError
from insitu.patient.patient import Patient
from insitu.plan import Placement, Plan, Step
from insitu.progress import ensure_progress
from insitu.simulation import StepContext
from insitu.state import TissueState
from insitu.tissue.library import load_library

DEMO_DEVICE = "rf-cooled-17g-30mm"
DEMO_DURATION_S = 720.0  # the standard 12-min Cool-tip run (thermal.md §1.2)
# insertion directions (LPS, entry → tip): right lateral (intercostal), anterior subcostal, right anterior oblique
APPROACHES = {
    "right lateral": (1.0, 0.0, 0.0),
    "anterior": (0.0, 1.0, 0.0),
    "right anterior oblique": (0.7071, 0.7071, 0.0),
    "right lateral, caudo-cranial": (0.9, 0.0, 0.4359),
}


def demo_plan(patient: Patient) -> tuple[Plan, str]:
    """The RFA plan for the phantom's first tumour and the name of the approach it uses."""
    from insitu.therapies.rf_devices import rf_device
    from insitu.therapies.rfa import check_path

    tumour = patient.targets[0]
    centre = np.asarray(tumour.centroid_mm, dtype=float)
    half_tip = float(rf_device(DEMO_DEVICE).parameters["exposed_tip_mm"]) / 2.0
    library = load_library()
    state = TissueState.from_patient(patient, library)
    for name, direction in APPROACHES.items():
        d = np.asarray(direction) / np.linalg.norm(direction)
        tip = centre + half_tip * d
        step = Step(
            therapy="rfa",
            device=DEMO_DEVICE,
            label=f"RFA, {name} approach",
            placement=Placement(tip_mm=tuple(float(v) for v in tip), direction=tuple(float(v) for v in d)),
            protocol={"duration_s": DEMO_DURATION_S},
        )
        plan = Plan(name="demo", patient="phantom", targets=[tumour.name], steps=[step])
        try:
            check_path(state, StepContext(patient, plan, library, ensure_progress(None)), tip, d, "demo")
        except PlanError:
            continue
        return plan, name
    raise PlanError("no standard approach reaches the phantom's tumour without crossing bone", "move the tumour")
