"""RF ablation experiments as simulations: an electrode in a block of liver, ex vivo or perfused, with the
published setup; used by ``make validate`` (full resolution) and by the tests (coarser grids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Code, Role, Structure
from insitu.plan import Placement, Plan, Step
from insitu.progress import ensure_progress
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.tissue.library import load_library

# Perfusion as the perfused-liver experiments report it, mL blood per min per 100 g tissue → Pennes ω (1/s):
# ω = flow / 100 g × ρ_tissue / 60 s (liver density 1079 kg/m³, thermal.md §2.1).
LIVER_DENSITY_G_ML = 1.079


def perfusion_per_s(flow_ml_min_100g: float) -> float:
    """Pennes ω (1/s) of a perfusion given in mL/min/100 g of liver."""
    return flow_ml_min_100g / 100.0 * LIVER_DENSITY_G_ML / 60.0


@dataclass(frozen=True)
class BlockSetup:
    """An electrode along +z through the centre of a liver block, tip at the centre + half the active length."""

    device: str
    duration_s: float
    initial_temperature_c: float
    perfusion_per_s: float
    spacing_mm: float = 1.0
    half_size_mm: float = 45.0
    generator: dict | None = None
    potential_update_s: float | None = None
    tip_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    region_margin_mm: float | None = None


def liver_block(half_size_mm: float, spacing_mm: float) -> Patient:
    """A cube of liver (2·half_size) on an isotropic grid; no target (the whole block is tissue)."""
    n = round(2 * half_size_mm / spacing_mm)
    origin = -(n - 1) / 2.0 * spacing_mm
    grid = Grid(shape=(n, n, n), spacing_mm=(spacing_mm,) * 3, origin_mm=(origin,) * 3)
    liver = np.ones(grid.shape, dtype=bool)
    image = np.full(grid.shape, 60, dtype=np.int16)
    structure = Structure("liver", Role.ORGAN, liver, grid, "liver", Code("SCT", "10200004", "Liver"), 1)
    return Patient(grid=grid, image=image, structures={"liver": structure}, background_tissue="liver")


def block_state(setup: BlockSetup) -> tuple[Patient, TissueState]:
    """The liver block and its state: initial temperature, perfusion (all portal), ambient = body or room."""
    patient = liver_block(setup.half_size_mm, setup.spacing_mm)
    state = TissueState.from_patient(patient, load_library(), body_temperature_c=37.0)
    state.temperature_c[...] = setup.initial_temperature_c
    state.perfusion_arterial_per_s[...] = 0.0
    state.perfusion_portal_per_s[...] = setup.perfusion_per_s
    # perfused (in vivo or a perfusion circuit): blood and surroundings at 37 °C; ex vivo: the room
    state.body_temperature_c = 37.0 if setup.perfusion_per_s > 0 else setup.initial_temperature_c
    return patient, state


def block_step(setup: BlockSetup) -> Step:
    """The RFA step: the electrode along +z, its active part centred on the block's centre."""
    from insitu.therapies.rf_devices import rf_device

    device = rf_device(setup.device)
    active_mm = float(device.parameters.get("exposed_tip_mm", 20.0))
    tip = np.asarray(setup.tip_offset_mm) + np.array([0.0, 0.0, active_mm / 2.0])
    protocol: dict = {"duration_s": setup.duration_s}
    if setup.generator is not None:
        protocol["generator"] = setup.generator
    if setup.potential_update_s is not None:
        protocol["potential_update_s"] = setup.potential_update_s
    if setup.region_margin_mm is not None:
        protocol["region_margin_mm"] = setup.region_margin_mm
    return Step(
        therapy="rfa",
        device=setup.device,
        placement=Placement(tip_mm=tuple(float(v) for v in tip), direction=(0.0, 0.0, 1.0)),
        protocol=protocol,
    )


def run_block(setup: BlockSetup, damage_model: str = "arrhenius:liver_comsol") -> StepResult:
    """Run one RF ablation in a liver block and return the step result (zone axes, curves, energy)."""
    from insitu.therapies import rfa

    patient, state = block_state(setup)
    step = block_step(setup)
    plan = Plan(patient="block", steps=[step], damage_model=damage_model)
    context = StepContext(patient, plan, load_library(), ensure_progress(None))
    _, result = rfa.apply(state, step, context)
    return result


# ------------------------------------------------------------------------------------------- published cases
# The zone measured in these experiments is the white coagulation on gross sections: the endpoint of Jacques'
# liver set (optical coagulation, the rise of scattering that whitens tissue; physics/damage_models.yaml).
WHITE_ZONE_CRITERION = "arrhenius:liver_jacques"
EX_VIVO_ROOM_C = 21.0  # ex vivo liver at room temperature (Trujillo et al. 2016 IJH 32:931 modelled 21 °C)
COOL_TIP_RUN_S = 720.0  # 12-min runs (thermal.md §1.2, [S15][S40])


def liver_perfusion_per_s() -> float:
    """The tissue library's liver perfusion (total hepatic flow), for in vivo cases."""
    return float(load_library().perfusion_per_s("liver"))


def v6_setup(spacing_mm: float = 1.0) -> BlockSetup:
    """V6: Lee 2009 (CVIR 32:1235), in vivo porcine liver, 2 cm cooled tip, 12 min, impedance control."""
    return BlockSetup("rf-cooled-17g-20mm", COOL_TIP_RUN_S, 37.0, liver_perfusion_per_s(), spacing_mm=spacing_mm)


def v7_setup(spacing_mm: float = 1.0, half_size_mm: float = 45.0) -> BlockSetup:
    """V7: Lee 2009, ex vivo bovine liver at room temperature, same electrode and run."""
    return BlockSetup(
        "rf-cooled-17g-20mm", COOL_TIP_RUN_S, EX_VIVO_ROOM_C, 0.0, spacing_mm=spacing_mm, half_size_mm=half_size_mm
    )


def v8_setup(flow_ml_min_100g: float, spacing_mm: float = 1.0) -> BlockSetup:
    """V8: Huang/Dodd 2012 (Acad Radiol 19:8), perfused bovine liver (blood at 37 °C), 3 cm cooled tip, 12 min."""
    return BlockSetup(
        "rf-cooled-17g-30mm", COOL_TIP_RUN_S, 37.0, perfusion_per_s(flow_ml_min_100g), spacing_mm=spacing_mm
    )


# published sizes: (long axis mm, short axis mm, volume mL), tolerance (relative), source
V6_PUBLISHED = ((26.2, 20.0, 5.76), 0.15, "Lee et al. CVIR 2009;32:1235, in vivo porcine (CV 15 %) [S15]")
V7_PUBLISHED = ((30.1, 26.2, 11.08), 0.10, "Lee et al. CVIR 2009;32:1235, ex vivo bovine (CV 10 %) [S15]")
V8_SLOPE_MM_PER_10 = (-4.4, 0.8)  # SAD change per 10 mL/min/100 g, ±2 SE (Huang 2012 [S40], thermal.md V8)
V8_SAD_TOLERANCE_MM = 3.0


def v8_published_sad_mm(flow_ml_min_100g: float) -> float:
    """Huang 2012's fit: SAD (cm) = 3.925 − 0.044·flow, in mm."""
    return 10.0 * (3.925 - 0.044 * flow_ml_min_100g)


# Lee 2009 reports the volume with the diameters; its means fit the ellipsoid π/6·Dl·Ds·Dv with a third (vertical)
# diameter between Ds and Dl (2.68 cm ex vivo, 2.10 cm in vivo), the formula this group's studies report with their
# three diameters (Song et al. 2015, BJR 88:20140497 [S14]: Dl, Dv, Ds and volume). Inferred, the methods text was not
# read; the voxel count is given beside it. A cooled electrode's zone is fuller than its ellipsoid (≈ +7 %).
VOLUME_AS_REPORTED = "volume as the ellipsoid of the three diameters (inferred from the published means)"


def size_rows(case_id: str, metrics: dict[str, float], published, setup_note: str) -> list:
    """Long axis, short axis and volume rows of one published ablation."""
    from insitu.validation.report import Row

    (lad, sad, vol), rel, source = published
    return [
        Row.within(case_id, f"long axis (mm), {setup_note}", metrics["long_axis_mm"], lad, rel, source),
        Row.within(case_id, f"short axis (mm), {setup_note}", metrics["short_axis_mm"], sad, rel, source),
        Row.within(
            case_id,
            f"ellipsoid volume π/6·Dl·Ds·Dv (mL), {setup_note} (voxel count {metrics['zone_volume_ml']:.2f})",
            metrics["ellipsoid_volume_ml"],
            vol,
            rel,
            f"{source}; {VOLUME_AS_REPORTED}",
        ),
    ]


def v8_slope(sads_mm: dict[float, float]) -> float:
    """Least-squares slope of SAD (mm) against flow, per 10 mL/min/100 g."""
    flows = np.array(sorted(sads_mm))
    values = np.array([sads_mm[f] for f in flows])
    return float(np.polyfit(flows, values, 1)[0] * 10.0)
