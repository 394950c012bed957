"""HIFU sonication plans (therapies/hifu.py) on a small layered body (skin, fat, muscle, liver, a 10 mm tumour) and the
phantom: lesion at the focus, the acoustic window (ribs forbid or warn with rib heating, gas forbids), the automatic
direction search, the focus lattice, the coupling water cooling the skin under the aperture (a Robin face checked
against the closed-form steady profile), and one-line errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.devices.catalog import Device
from insitu.errors import AcousticWindowError, CouplingError, DeviceRangeError, ReachError, RegistryError
from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Role, Structure
from insitu.physics.bioheat import BioheatSolver, ThermalMedium
from insitu.plan import Placement, Plan, Step
from insitu.simulation import StepContext
from insitu.state import TissueState
from insitu.therapies import hifu
from insitu.tissue.library import load_library

LAB = "hifu-lab-bowl-30mm-1mhz"  # R = D = 30 mm, 1 MHz: reach 30 − 4.0 − 3 = 23 mm
FOCUS = (0.0, 0.0, 16.0)
UP = (0.0, 0.0, 1.0)


def body(ribs: bool = False, gas: bool = False, fill: bool = False) -> Patient:
    """Water/air below z = 0, then skin 2 mm, fat 4 mm, muscle 4 mm and liver, a 10 mm tumour at z = 16 mm; 1 mm."""
    grid = Grid(shape=(56, 40, 40), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(-19.5, -19.5, -25.5), direction=np.eye(3))
    xyz = grid.world_coordinates_mm(np.float64)
    z = xyz[..., 2]
    inside = np.ones(grid.shape, bool) if fill else z >= 0
    layers = {"skin": (0, 2, "skin"), "fat": (2, 6, "fat"), "wall": (6, 10, "muscle")}
    structures = {}
    for label, (name, (lo, hi, tissue)) in enumerate(layers.items(), start=1):
        structures[name] = Structure(name, Role.ORGAN, inside & (z >= lo) & (z < hi), grid, tissue, None, label)
    tumour = np.linalg.norm(xyz - np.array(FOCUS), axis=-1) <= 5.0
    structures["liver"] = Structure("liver", Role.ORGAN, inside & (z >= 10) & ~tumour, grid, "liver", None, 4)
    structures["tumor"] = Structure("tumor", Role.TARGET, tumour, grid, "hcc", None, 5)
    if ribs:
        bar = (z >= 4) & (z < 7) & (xyz[..., 1] >= 1) & (xyz[..., 1] < 8)
        structures["ribs"] = Structure("ribs", Role.OBSTACLE, bar, grid, "bone_cortical", None, 6)
    if gas:
        pocket = np.linalg.norm(xyz - np.array([0.0, 3.0, 11.0]), axis=-1) <= 2.0
        structures["bowel_gas"] = Structure("bowel_gas", Role.OBSTACLE, pocket, grid, "air", None, 7)
    image = np.where(inside, 40, -1000).astype(np.int16)
    return Patient(grid=grid, image=image, structures=structures)


def run(patient: Patient, device: str = LAB, placement: Placement | None = None, **protocol):
    library = load_library()
    settings_ = {"acoustic_power_w": 30.0, "sonication_s": 4.0, "cooling_s": 4.0, "foci_mm": [FOCUS]} | protocol
    step = Step.model_construct(  # built unchecked: the tests give apply() the inputs check_step refuses
        therapy="hifu", device=device, placement=placement or Placement(tip_mm=FOCUS, direction=UP),
        protocol=settings_, label=None,
    )  # fmt: skip
    plan = Plan.model_construct(patient="block", steps=[step], targets=[], damage_model="arrhenius:liver_comsol")
    messages: list[str] = []
    context = StepContext(patient, plan, library, lambda stage, f, m="": messages.append(m))
    state = TissueState.from_patient(patient, library)
    new, result = hifu.apply(state, step, context)
    return new, result, messages


@pytest.fixture(scope="module")
def clear():
    return run(body())


def test_lesion_forms_at_the_focus(clear):
    """30 W for 4 s through 10 mm of wall: a lesion around the focus, inside the tumour's neighbourhood, and the
    deposited power adds up (absorbed ≤ radiated, most of it in tissue)."""
    new, result, _ = clear
    m = result.metrics
    assert m["lesion_volume_ml"] > 0.005
    assert m["focus_peak_temperature_c_max"] > 60.0
    zone = result.fields["ablation_zone"]
    grid = new.grid
    centroid = grid.index_to_world(np.argwhere(zone)[:, ::-1].mean(axis=0))
    assert np.linalg.norm(centroid - np.array(FOCUS)) < 4.0
    assert 0.0 < m["absorbed_power_w_mean"] < 30.0
    assert m["target_coverage"] > 0.0
    assert m["window_rib_fraction_max"] == 0.0 and m["window_gas_fraction_max"] == 0.0
    assert m["window_depth_mm_max"] == pytest.approx(16.0, abs=1.0)
    assert m["skin_peak_temperature_c"] < m["focus_peak_temperature_c_max"]
    assert result.curves["focus_peak_temperature_c"][0] == pytest.approx(m["focus_peak_temperature_c_max"])


def test_ribs_forbid_or_warn_with_rib_heating():
    """A bone bar across a third of the beam: forbidden by default (the message says ribs, how much, where); with
    window: warn the plan runs and reports the bone's peak temperature."""
    with pytest.raises(AcousticWindowError, match=r"ribs block \d+% of the aperture"):
        run(body(ribs=True))
    _, result, messages = run(body(ribs=True), window="warn")
    m = result.metrics
    assert m["window_warnings"] == 1.0
    assert any("ribs block" in message for message in messages)
    assert 0.25 < m["window_rib_fraction_max"] < 0.7
    assert m["rib_peak_temperature_c"] > 37.5


def test_gas_in_the_path_is_forbidden():
    with pytest.raises(AcousticWindowError, match="gas is in"):
        run(body(gas=True))


def test_direction_search_finds_a_window_past_the_ribs():
    """No direction given: the search avoids the bar (rib share within the limit) and heats the focus."""
    _, result, _ = run(body(ribs=True), placement=Placement(tip_mm=FOCUS), search_axis=UP, search_cone_deg=40.0)
    m = result.metrics
    assert m["direction_searched"] == 1.0
    assert m["window_rib_fraction_max"] <= 0.25
    assert m["beam_direction_z"] > math.cos(math.radians(40.0)) - 1e-9
    assert m["lesion_volume_ml"] > 0.0


def test_no_window_says_why():
    """Gas over the whole window and a narrow cone: the error lists why the directions failed."""
    with pytest.raises(AcousticWindowError, match=r"no acoustic window .* directions \(.*gas"):
        run(body(gas=True), placement=Placement(tip_mm=FOCUS), search_axis=UP, search_cone_deg=10.0)


def test_bad_input_is_one_line():
    protocol = {"acoustic_power_w": 10.0, "sonication_s": 2.0, "frequency_hz": 2e6}
    step = Step.model_construct(therapy="hifu", device=LAB, placement=Placement(tip_mm=FOCUS), protocol=protocol)
    with pytest.raises(DeviceRangeError, match=r"outside .* range 0.9–1.1 MHz"):
        hifu.check_step(step)
    too_strong = step.model_copy(update={"protocol": {"acoustic_power_w": 500.0, "sonication_s": 2.0}})
    with pytest.raises(DeviceRangeError, match="above"):
        hifu.check_step(too_strong)
    with pytest.raises(ReachError, match=r"below the skin .* reaches 23 mm"):
        run(body(), foci_mm=[(0.0, 0.0, 27.0)], placement=Placement(tip_mm=(0.0, 0.0, 27.0), direction=UP))
    with pytest.raises(CouplingError, match="no water coupling path"):
        run(body(fill=True))
    for error in (DeviceRangeError, ReachError, CouplingError, AcousticWindowError):
        assert "\n" not in str(error("a problem", "the fix"))


@settings(max_examples=15, deadline=None)
@given(tilt=st.floats(0.0, 1.0), spin=st.floats(0.0, 6.28), spacing=st.floats(2.0, 6.0), layer=st.floats(2.0, 10.0))
def test_focus_lattice_covers_the_target_deepest_first(tilt, spin, spacing, layer):
    """Lattice foci lie in the target, are ≥ the spacing apart, and run from the deepest layer up."""
    patient = body()
    target = patient.structure("tumor").mask
    axis = np.array([math.sin(tilt) * math.cos(spin), math.sin(tilt) * math.sin(spin), math.cos(tilt)])
    foci = hifu.focus_lattice(target, patient.grid, np.array(FOCUS), axis, spacing, layer)
    v = patient.grid.world_to_voxel(foci)
    assert target[v[:, 2], v[:, 1], v[:, 0]].all()
    depth = (foci - np.array(FOCUS)) @ axis
    assert np.all(np.diff(depth) <= 1e-6)
    if len(foci) > 1:
        gaps = np.linalg.norm(foci[:, None] - foci[None, :], axis=-1) + np.eye(len(foci)) * 1e9
        assert gaps.min() >= min(spacing, layer) - 1e-6


def test_device_catalog_geometry():
    """Catalog transducers build; the JC-like bowl reaches 127.5 mm, the Sonalleve-like array has 256 elements."""
    jc = hifu.hifu_device("hifu-jc-like-bowl")
    assert hifu.reach_mm(jc) == pytest.approx(150.0 - (150.0 - math.sqrt(150.0**2 - 60.0**2)) - 10.0)
    array = hifu.transducer_of("hifu-sonalleve-like-array")
    assert array.n_channels == 256
    assert hifu.transducer_of("hifu-hitu-annulus-2mhz").inner_diameter_m == pytest.approx(0.02)


# ------------------------------------------------------------------------------------------------ coupling water
def _robin_column(device, dz_m: float, length_m: float = 0.08, duration_s: float = 6000.0):
    """Skin (library properties and perfusion) in a 1-D column, its first cell coupling water: the temperature after
    ``duration_s`` (≈ 12 perfusion time constants ρc/w) from body temperature, and the exact steady profile."""
    library = load_library()
    skin = library.index_of("skin")
    k, rho, c, omega = (float(library.property_table(p)[skin]) for p in (
        "thermal_conductivity_w_m_k", "density_kg_m3", "specific_heat_j_kg_k", "perfusion_per_s"))  # fmt: skip
    n = round(length_m / dz_m) + 1
    volume = lambda value: np.full((n, 1, 1), value, np.float32)  # noqa: E731
    medium = ThermalMedium(volume(k), volume(rho), volume(c), volume(omega), (dz_m, dz_m, dz_m))
    water = np.zeros((n, 1, 1), bool)
    water[0] = True
    solver = BioheatSolver(medium, robin=hifu.coupling_robin(device, water))  # zero flux on every other face
    temperature = np.full((n, 1, 1), 37.0, np.float32)
    solver.advance(temperature, duration_s)
    t_water, h = hifu.coupling_water(device)
    length = math.sqrt(k / (medium.blood_density_kg_m3 * medium.blood_specific_heat_j_kgk * omega))
    x = (np.arange(1, n) - 0.5) * dz_m  # tissue cell centres below the surface
    exact = 37.0 + (t_water - 37.0) * h / (h + k / length) * np.exp(-x / length)
    return temperature[1:, 0, 0], exact, length


def test_skin_under_water_tends_to_the_steady_robin_profile():
    """Perfused skin cooled by the JC-like bowl's coupling water (a Robin face, water temperature and h from the
    catalog) tends to the closed-form steady Pennes profile T_a + (T_w − T_a)·h/(h + k/L)·exp(−x/L), L = √(k/w):
    within 0.01 K at 0.5 mm (of an 11 K drop at the surface), and the error falls as Δ² (second order)."""
    device = hifu.hifu_device("hifu-jc-like-bowl")
    fine, exact_fine, length = _robin_column(device, 0.5e-3)
    coarse, exact_coarse, _ = _robin_column(device, 1e-3)
    assert length == pytest.approx(7.06e-3, rel=0.01)  # the decay length the library's skin gives
    assert 37.0 - exact_fine[0] > 10.0  # a strong surface cooling: the check is not trivially small
    error_fine = np.abs(fine - exact_fine).max()
    error_coarse = np.abs(coarse - exact_coarse).max()
    assert error_fine < 0.01
    assert error_coarse / error_fine > 3.0


def test_coupling_water_cools_the_skin_under_the_aperture_only(clear):
    """The layered body behind the 30 mm bowl: the coupling water touches a disc of the aperture's radius (15 mm) on
    the flat skin; after 8 s the skin surface there has cooled towards the 20 °C water, beyond the disc it stays at
    body temperature (the air film at 37 °C)."""
    new, result, _ = clear
    m = result.metrics
    assert m["coupling_water_temperature_c"] == 20.0 and m["coupling_h_w_m2k"] == 107.0
    assert m["coupled_skin_area_cm2"] == pytest.approx(math.pi * 1.5**2, rel=0.03)  # a voxelised 15 mm disc
    grid, temperature = new.grid, new.temperature_c
    under = temperature[grid.world_to_kji((10.0, 0.0, 0.5))]  # surface skin voxel in the disc, off the beam
    outside = temperature[grid.world_to_kji((18.0, 18.0, 0.5))]  # 25 mm off axis: beyond the disc
    assert under < 35.5
    assert outside == pytest.approx(37.0, abs=0.01)


def test_coupling_water_temperature_is_a_protocol_setting(clear):
    """Water at body temperature takes nothing from the skin: the surface voxel off the beam keeps body temperature
    plus the little the beam's edge deposits there, > 1.5 K warmer than under the 20 °C water."""
    new, result, _ = run(body(), coupling_water_temperature_c=37.0)
    assert result.metrics["coupling_water_temperature_c"] == 37.0
    where = new.grid.world_to_kji((10.0, 0.0, 0.5))
    assert 37.0 <= new.temperature_c[where] < 37.2
    assert new.temperature_c[where] - clear[0].temperature_c[where] > 1.5


def test_a_transducer_without_coupling_water_is_refused():
    bare = Device(name="bare-bowl", therapy="hifu", kind="bowl", summary="no coupling data", parameters={})
    with pytest.raises(RegistryError, match=r"'bare-bowl' has no valid coupling_water_temperature_c") as caught:
        hifu.coupling_water(bare)
    assert "\n" not in str(caught.value)
