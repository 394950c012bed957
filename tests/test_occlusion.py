"""Hepatic inflow occlusion (therapies/occlusion.py) during an RF ablation: perfusion and heat sinks it stops."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.errors import PlanError
from insitu.grid import Grid
from insitu.patient.structure import Role, Structure
from insitu.patient.terminology import code_for
from insitu.plan import Plan
from insitu.progress import ensure_progress
from insitu.simulation import StepContext
from insitu.state import TissueState
from insitu.therapies import rfa
from insitu.therapies.occlusion import stopped_vessels, vessel_concept
from insitu.tissue.library import load_library
from insitu.validation.rfa_cases import BlockSetup, block_step, liver_block

SETUP = BlockSetup("rf-cooled-17g-20mm", 240.0, 37.0, 0.0, spacing_mm=2.0, half_size_mm=24.0)


def _ablate(occlusion: str, perfusion_scale: float = 1.0) -> dict[str, float]:
    """4 min in a liver block with the library's hepatic perfusion (arterial 16 %, portal 84 %)."""
    patient = liver_block(SETUP.half_size_mm, SETUP.spacing_mm)
    library = load_library()
    state = TissueState.from_patient(patient, library)
    state.perfusion_arterial_per_s *= perfusion_scale
    state.perfusion_portal_per_s *= perfusion_scale
    before = state.perfusion_per_s.copy()
    step = block_step(SETUP)
    step = step.model_copy(update={"protocol": {**step.protocol, "inflow_occlusion": occlusion}})
    context = StepContext(patient, Plan(patient="block", steps=[step]), library, ensure_progress(None))
    new, result = rfa.apply(state, step, context)
    assert np.array_equal(state.perfusion_per_s, before)  # the input state is untouched
    # flow returns after the step: outside the zone the new state keeps its perfusion
    outside = ~result.fields["ablation_zone"]
    assert np.allclose(new.perfusion_per_s[outside], before[outside])
    return result.metrics


def test_occlusion_enlarges_the_zone_as_the_stopped_supply_says():
    """Pringle stops all hepatic inflow: the same zone as a liver without perfusion, larger than with flow; the
    hepatic artery carries 16 % of the liver's flow, so its balloon enlarges the zone a little."""
    open_flow = _ablate("none")
    artery = _ablate("hepatic_artery")
    pringle = _ablate("pringle")
    bloodless = _ablate("none", perfusion_scale=0.0)
    assert pringle["zone_volume_ml"] == pytest.approx(bloodless["zone_volume_ml"], rel=1e-9)
    assert open_flow["zone_volume_ml"] < artery["zone_volume_ml"] < pringle["zone_volume_ml"]
    assert pringle["zone_volume_ml"] > 1.3 * open_flow["zone_volume_ml"]


def test_vessels_are_recognised_by_code_then_name_and_stop_by_occlusion():
    grid = Grid(shape=(4, 4, 4), spacing_mm=(1.0, 1.0, 1.0))
    mask = np.zeros(grid.shape, bool)
    pv = Structure("pv", Role.VESSEL, mask, grid, "blood", code_for("portal_vein"))
    ha = Structure("hepatic_artery", Role.VESSEL, mask, grid, "blood")
    hv = Structure("right_hepatic_vein", Role.VESSEL, mask, grid, "blood")
    ivc = Structure("ivc", Role.VESSEL, mask, grid, "blood")
    liver = Structure("portal_region", Role.ORGAN, mask, grid, "liver")
    assert [vessel_concept(s) for s in (pv, ha, hv, ivc, liver)] == [
        "portal_vein", "hepatic_artery", "hepatic_vein", None, None,
    ]  # fmt: skip
    every = (pv, ha, hv, ivc, liver)
    assert stopped_vessels(every, "none") == set()
    assert stopped_vessels(every, "hepatic_artery") == {"hepatic_artery"}
    assert stopped_vessels(every, "portal_vein") == {"pv"}
    assert stopped_vessels(every, "pringle") == {"pv", "hepatic_artery", "right_hepatic_vein"}  # the IVC flows on


def test_unknown_occlusion_is_a_one_line_error():
    from insitu.therapies.thermal import open_thermal_region

    patient = liver_block(8.0, 2.0)
    library = load_library()
    state = TissueState.from_patient(patient, library)
    context = StepContext(patient, Plan(patient="block", steps=[block_step(SETUP)]), library, ensure_progress(None))
    everything = tuple(slice(0, n) for n in state.grid.shape)
    with pytest.raises(PlanError, match="unknown inflow occlusion"):
        open_thermal_region(state, context, state.grid, everything, 10.0, occlusion="tourniquet")
    with pytest.raises(Exception, match="inflow_occlusion"):
        rfa.RFAProtocol.model_validate({"duration_s": 10.0, "inflow_occlusion": "tourniquet"})
