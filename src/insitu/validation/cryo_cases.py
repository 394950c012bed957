"""Cryoablation cases: the Neumann front (V5) and the Littrup 2009 phantom (V10), used by ``make validate`` (full
resolution) and by the tests (coarser grids).

**V10** (thermal.md §5.3, §8): 2.4 mm argon cryoprobes, 15-minute freeze, agar phantom at 39 °C (the high heat load
of the study; "agar-like properties": the tissue library's water, frozen as ice, physics/phase_change.yaml), probes
2 cm apart: the −30 °C lethal-ice diameter was 1.2 cm for one probe and 4.9 cm for four (a 2 cm square), ±0.5 cm
(phantom scatter); the −40 °C isotherm lies about 1 cm inside the 0 °C edge ([S51], 17G/10G needles in gel at 37 °C).
The 2- and 3-probe diameters (and the 1.7 mm probes' 84 %) are withheld from the rows and checked blind — nothing
here is fitted to any of them. The diameter is the equivalent circle of the isotherm in the mid-plane across the
probes (what a CT section shows). The phantom's bath is modelled as the block's faces held at 39 °C.

A probe can be a finite heat sink (``cooling_capacity_w``: the wall warms when the tissue asks more heat than the
argon J–T refrigeration gives), but no measured capacity has been read, so the catalog probes are fixed walls and the
single probe's lethal diameter stays too large (18.2 mm at 1 mm against 12 ± 5). A 25 W estimate would pass that row
and move the 2- and 3-probe diameters further from Littrup's: the per-probe loads are 23–30 W in every configuration,
so the single-probe gap is not a capacity limit alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Role, Structure
from insitu.plan import Placement, Plan, Step
from insitu.progress import ensure_progress
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.tissue.library import load_library
from insitu.validation.report import Row

PROBE_24 = "cryoprobe-argon-2.4mm"
PROBE_17 = "cryoprobe-argon-1.7mm"
V10_BATH_C = 39.0
V10_FREEZE_S = 900.0
V10_SPACING_MM = 20.0
V10_TOLERANCE_MM = 5.0
V10_LETHAL_C = -30.0  # the study's lethal ice
V10_DIAMETERS_MM = {1: 12.0, 4: 49.0}  # −30 °C lethal ice, 2.4 mm probes, 39 °C phantom, 15 min
V10_M40_INSIDE_MM = 10.0
V10_SOURCE = "Littrup PJ et al. JVIR 2009;20:1343 (abstract), thermal.md §5.3 [S50]; ±0.5 cm (thermal.md V10)"
V10_M40_SOURCE = "multi-needle isotherm maps, 17G/10G cryo-needles in gel at 37 °C (PMC4850244, thermal.md [S51])"


def probe_tips_mm(count: int, spacing_mm: float = V10_SPACING_MM, tip_z_mm: float = 17.5) -> list[tuple]:
    """Tips of 1–4 parallel probes along +z: one at the centre, or on a line / triangle / square of side ``spacing``
    around it; the tips at ``tip_z_mm`` so the freezing segments (35 mm) are centred on z = 0."""
    if count == 1:
        points = [(0.0, 0.0)]
    elif count == 2:
        points = [(-spacing_mm / 2, 0.0), (spacing_mm / 2, 0.0)]
    elif count == 3:
        r = spacing_mm / np.sqrt(3.0)
        points = [(r * np.cos(a), r * np.sin(a)) for a in np.deg2rad([90.0, 210.0, 330.0])]
    elif count == 4:
        h = spacing_mm / 2
        points = [(-h, -h), (h, -h), (h, h), (-h, h)]
    else:
        raise ValueError("1 to 4 probes")
    return [(float(x), float(y), tip_z_mm) for x, y in points]


@dataclass(frozen=True)
class CryoBlock:
    """Parallel probes along +z in a block of one tissue, one freeze (or a protocol), the block's faces at
    ``bath_c``."""

    device: str
    probes: int
    tissue: str = "water"
    bath_c: float = V10_BATH_C
    phases: tuple[tuple[str, float, str], ...] = (("freeze", V10_FREEZE_S, "passive"),)
    perfusion_per_s: float = 0.0
    spacing_mm: float = 1.0
    half_size_mm: float = 50.0
    probe_spacing_mm: float = V10_SPACING_MM
    lethal_temperature_c: float | None = V10_LETHAL_C
    region_margin_mm: float | None = None
    cooling_capacity_w: float | None = None  # None: the device's (inf: a fixed wall)
    wall_temperature_c: float | None = None  # None: the device's plateau


def tissue_block(tissue: str, half_size_mm: float, spacing_mm: float) -> Patient:
    """A cube of one tissue (2·half_size) on an isotropic grid centred on the origin; no target."""
    n = round(2 * half_size_mm / spacing_mm)
    origin = -(n - 1) / 2.0 * spacing_mm
    grid = Grid(shape=(n, n, n), spacing_mm=(spacing_mm,) * 3, origin_mm=(origin,) * 3)
    body = np.ones(grid.shape, dtype=bool)
    structure = Structure("block", Role.ORGAN, body, grid, tissue, None, 1)
    image = np.full(grid.shape, 0 if tissue == "water" else 60, dtype=np.int16)
    return Patient(grid=grid, image=image, structures={"block": structure}, background_tissue=tissue)


def cryo_step(setup: CryoBlock) -> Step:
    """The cryo step (built without the plan's registry check, so the cases run before ``cryo`` is registered;
    :func:`insitu.therapies.cryo.apply` validates the protocol itself)."""
    protocol: dict = {
        "phases": [{"kind": k, "duration_s": d, "thaw": t} for k, d, t in setup.phases],
        "probes": [{"tip_mm": tip} for tip in probe_tips_mm(setup.probes, setup.probe_spacing_mm)],
    }
    if setup.lethal_temperature_c is not None:
        protocol["lethal_temperature_c"] = setup.lethal_temperature_c
    if setup.region_margin_mm is not None:
        protocol["region_margin_mm"] = setup.region_margin_mm
    if setup.cooling_capacity_w is not None:
        protocol["cooling_capacity_w"] = setup.cooling_capacity_w
    if setup.wall_temperature_c is not None:
        protocol["wall_temperature_c"] = setup.wall_temperature_c
    placement = Placement(tip_mm=(0.0, 0.0, 17.5), direction=(0.0, 0.0, 1.0))
    return Step(therapy="cryo", device=setup.device, placement=placement, protocol=protocol)


def run_cryo_block(setup: CryoBlock) -> StepResult:
    """Run one cryoablation in a block and return the step result."""
    from insitu.therapies import cryo

    patient = tissue_block(setup.tissue, setup.half_size_mm, setup.spacing_mm)
    library = load_library()
    state = TissueState.from_patient(patient, library, body_temperature_c=setup.bath_c)
    state.perfusion_arterial_per_s[...] = 0.0
    state.perfusion_portal_per_s[...] = setup.perfusion_per_s
    step = cryo_step(setup)
    plan = Plan(patient="block", steps=[step], damage_model="arrhenius:liver_comsol", body_temperature_c=setup.bath_c)
    _, result = cryo.apply(state, step, StepContext(patient, plan, library, ensure_progress(None)))
    return result


def v10_setup(probes: int, spacing_mm: float = 1.0, device: str = PROBE_24) -> CryoBlock:
    """V10: ``probes`` 2.4 mm probes (2 cm apart) in the 39 °C phantom, 15 min."""
    half = 40.0 if probes == 1 else 55.0
    return CryoBlock(device, probes, spacing_mm=spacing_mm, half_size_mm=half, region_margin_mm=100.0)


def v10_rows(spacing_mm: float = 1.0) -> list[Row]:
    """V10: lethal (−30 °C) diameter of one and four probes; the −40 °C isotherm's depth inside the iceball."""
    rows = []
    for probes, reference in V10_DIAMETERS_MM.items():
        m = run_cryo_block(v10_setup(probes, spacing_mm)).metrics
        note = f"{probes} × 2.4 mm, 15 min, 39 °C phantom, {spacing_mm:g} mm"
        rows.append(Row.within("V10", f"−30 °C lethal diameter (mm), {note}", m["lethal_diameter_mm"], reference,
                               V10_TOLERANCE_MM / reference, V10_SOURCE))  # fmt: skip
        rows.append(Row.within("V10", f"−40 °C depth inside the 0 °C edge (mm), {note}", m["m40_inside_iceball_mm"],
                               V10_M40_INSIDE_MM, V10_TOLERANCE_MM / V10_M40_INSIDE_MM, V10_M40_SOURCE))  # fmt: skip
    return rows


def blind_rows(spacing_mm: float = 1.0) -> list[Row]:
    """The withheld configurations (2 and 3 probes, the 1.7 mm probe), reported as simulated values only: IN-CRYO
    rows with a generous plausibility range (between the 1- and 4-probe references), never tuned to."""
    rows = []
    for probes in (2, 3):
        m = run_cryo_block(v10_setup(probes, spacing_mm)).metrics
        quantity = f"−30 °C lethal diameter (mm), {probes} × 2.4 mm, 39 °C, 15 min"
        low, high = V10_DIAMETERS_MM[1], V10_DIAMETERS_MM[4]
        rows.append(Row.in_range("IN-CRYO-BLIND", quantity, m["lethal_diameter_mm"], low, high, V10_SOURCE))
    return rows


def cryo_rows() -> list[Row]:
    """Every cryo row of ``make validate``: V5 (Neumann front) and V10 (Littrup phantom), full resolution."""
    from insitu.physics.phase_change import neumann_front_rows

    return [*neumann_front_rows(), *v10_rows(), *blind_rows()]
