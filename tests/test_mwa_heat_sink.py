"""MWA is less sensitive to heat sinks than RFA (thermal.md §4.1 [S17]: "shorter and hotter"): the same liver block,
with and without a 5 mm vein beside the applicator and at low and high perfusion, for a cooled RF electrode and a
cooled MW antenna. Coarse (2 mm voxels) and short runs; the numbers measured are in the test's docstring."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.patient.structure import Role, Structure
from insitu.plan import Plan
from insitu.progress import ensure_progress
from insitu.simulation import StepContext
from insitu.state import TissueState
from insitu.tissue.library import load_library
from insitu.validation.mwa_cases import EMPRINT, MWABlock, mwa_step
from insitu.validation.rfa_cases import BlockSetup, block_step, liver_block, perfusion_per_s

SPACING_MM = 2.0
HALF_SIZE_MM = 40.0
LOW, HIGH = perfusion_per_s(10.0), perfusion_per_s(100.0)  # mL/min/100 g: an embolised and a hyperaemic liver
VEIN_DIAMETER_MM = 5.0  # a heat sink on Lu 2002's evidence (> 3 mm, thermal.md §4.1)
WALL_MM = 6.0  # the vein's wall from the applicator's axis: well inside both zones without it


def _run(therapy: str, perfusion: float, vein: bool) -> dict[str, float]:
    from insitu.therapies import mwa, rfa

    patient = liver_block(HALF_SIZE_MM, SPACING_MM)
    if vein:
        x, y, _ = np.moveaxis(patient.grid.world_coordinates_mm(np.float64), -1, 0)
        mask = np.hypot(x - (WALL_MM + VEIN_DIAMETER_MM / 2.0), y - 1.0) <= VEIN_DIAMETER_MM / 2.0
        patient.structures["liver"].mask &= ~mask
        patient.add(Structure("vein", Role.VESSEL, mask, patient.grid, "blood"))
    library = load_library()
    state = TissueState.from_patient(patient, library)
    state.perfusion_arterial_per_s[...] = 0.0
    state.perfusion_portal_per_s[...] = perfusion
    if therapy == "rfa":  # cooled 2 cm tip, impedance control, 8 min (a typical RF run)
        step, module = block_step(BlockSetup("rf-cooled-17g-20mm", 480.0, 37.0, perfusion, SPACING_MM)), rfa
    else:  # cooled 2.45 GHz antenna, 100 W × 2 min: shorter and hotter, a zone of about the RF zone's volume
        step, module = mwa_step(MWABlock(EMPRINT, 100.0, 120.0, 37.0, perfusion, SPACING_MM)), mwa
    context = StepContext(patient, Plan(patient="block", steps=[step]), library, ensure_progress(None))
    return module.apply(state, step, context)[1].metrics


@pytest.fixture(scope="module")
def volumes() -> dict[tuple[str, str], float]:
    out = {}
    for therapy in ("rfa", "mwa"):
        out[therapy, "low"] = _run(therapy, LOW, vein=False)["zone_volume_ml"]
        out[therapy, "high"] = _run(therapy, HIGH, vein=False)["zone_volume_ml"]
        out[therapy, "vein"] = _run(therapy, LOW, vein=True)["zone_volume_ml"]
    return out


def test_mwa_loses_less_of_its_zone_to_perfusion_and_to_a_large_vein_than_rfa(volumes):
    """Zone volume lost (fraction of the low-perfusion, vein-free zone) to 10× the perfusion and to a 5 mm vein 6 mm
    from the axis.

    Measured (2 mm voxels): RF 8 min 22.0 mL → 9.8 mL at high perfusion (loses 56 %), 16.7 mL beside the vein (24 %);
    MW 100 W × 2 min 19.6 mL → 12.2 mL (38 %), 17.2 mL beside the vein (12 %). MW loses about 0.7× RF's share to
    perfusion and 0.5× to the vein: less sensitive, as Schramm 2007 [S17] models and Lehmann/PMC5778864 observe
    (thermal.md §4.1), but not immune.
    """
    loss = {}
    for therapy in ("rfa", "mwa"):
        base = volumes[therapy, "low"]
        loss[therapy, "perfusion"] = 1.0 - volumes[therapy, "high"] / base
        loss[therapy, "vein"] = 1.0 - volumes[therapy, "vein"] / base
    assert volumes["rfa", "low"] > 3.0 and volumes["mwa", "low"] > 3.0  # both make real zones
    for cause in ("perfusion", "vein"):
        assert loss["rfa", cause] > 0.0  # the heat sink is there for RF
        assert 0.0 < loss["mwa", cause] < 0.8 * loss["rfa", cause], (cause, loss)
