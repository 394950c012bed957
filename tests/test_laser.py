"""Interstitial laser (therapies/laser.py): devices, bad input, the coupled light–heat run on coarse liver blocks,
cooled applicators, the charring guard, several fibres, re-solve cadence, and the 3 cm diffuser validation setting."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from insitu.devices.catalog import load_catalog
from insitu.errors import InsituError, PlanError, RegistryError
from insitu.physics import optics
from insitu.plan import Placement, Plan, Step
from insitu.progress import ensure_progress
from insitu.simulation import StepContext
from insitu.state import TissueState
from insitu.therapies import laser
from insitu.tissue.library import load_library
from insitu.validation.laser_cases import (
    MERTYNA_MARGIN_C,
    LaserBlock,
    margin_temperatures,
    mertyna_setup,
    run_laser_block,
)

COARSE_MM = 2.0


def _block(device="laser-diffuser-30mm", power_w=10.0, duration_s=300.0, **kw) -> LaserBlock:
    return LaserBlock(device, power_w, duration_s, 21.0, 0.0, spacing_mm=COARSE_MM, half_size_mm=30.0, **kw)


def test_catalog_has_the_fibres():
    devices = {d.name: d for d in load_catalog() if d.therapy == "laser"}
    lengths = sorted(
        d.parameters["diffuser_length_mm"]
        for d in devices.values()
        if "diffuser_length_mm" in d.parameters and not d.parameters["cooled"]
    )
    assert lengths == [10, 20, 30, 40]
    assert devices["laser-bare-600um"].parameters["emission"] == "bare"
    cooled = [d for d in devices.values() if d.parameters["cooled"]]
    assert {tuple(d.parameters["wavelengths_nm"]) for d in cooled} == {(1064,), (980,)}
    assert all(d.sources for d in devices.values())


def test_plan_step_validates_through_the_registry():
    step = Step(
        therapy="laser",
        device="laser-diffuser-20mm",
        placement=Placement(tip_mm=(0, 0, 0), direction=(0, 0, 1)),
        protocol={"power_w": 8, "duration_s": 600},
    )
    assert step.protocol["wavelength_nm"] is None and step.protocol["resolve_s"] == laser.DEFAULT_RESOLVE_S
    with pytest.raises(ValueError, match="unknown laser device"):
        Step(
            therapy="laser",
            device="laser-diffuser-25mm",
            placement=Placement(tip_mm=(0, 0, 0), direction=(0, 0, 1)),
            protocol={"power_w": 8, "duration_s": 600},
        )


@pytest.mark.parametrize(
    ("device", "protocol", "error", "words"),
    [
        ("laser-diffuser-99mm", {"power_w": 5, "duration_s": 60}, RegistryError, "unknown laser device"),
        ("rf-cooled-17g-30mm", {"power_w": 5, "duration_s": 60}, PlanError, "not a laser fibre"),
        ("laser-diffuser-30mm", {"power_w": 5, "duration_s": 60, "wavelength_nm": 1320}, PlanError, "1320 nm"),
        ("laser-cooled-980-10mm", {"power_w": 5, "duration_s": 60, "wavelength_nm": 1064}, PlanError, "1064 nm"),
        ("laser-diffuser-30mm", {"power_w": -5, "duration_s": 60}, PlanError, "power_w"),
        ("laser-diffuser-30mm", {"power_w": 5, "duration_s": 0}, PlanError, "duration_s"),
        ("laser-diffuser-30mm", {"power_w": 50, "duration_s": 60}, PlanError, "above the rating"),
        ("laser-diffuser-30mm", {"power_w": 5, "duration_s": 60, "colour": "red"}, PlanError, "colour"),
    ],
)
def test_bad_input_is_a_one_line_error(device, protocol, error, words):
    step = Step.model_construct(
        therapy="laser",
        device=device,
        placement=Placement(tip_mm=(0, 0, 0), direction=(0, 0, 1)),
        protocol=protocol,
        label=None,
    )
    with pytest.raises(error, match=words) as info:
        laser.check_step(step)
    assert isinstance(info.value, InsituError) and "\n" not in str(info.value)


def test_fibre_outside_the_body_is_refused(small_patient):
    library = load_library()
    state = TissueState.from_patient(small_patient, library)
    air_point = tuple(float(v) for v in small_patient.grid.index_to_world([1.0, 1.0, 1.0]))
    step = Step.model_construct(
        therapy="laser",
        device="laser-diffuser-10mm",
        placement=Placement(tip_mm=air_point, direction=(0, 0, 1)),
        protocol={"power_w": 5, "duration_s": 60},
        label=None,
    )
    context = StepContext(
        small_patient,
        Plan.model_construct(patient="p", steps=[], targets=[], damage_model="arrhenius:liver_comsol"),
        library,
        ensure_progress(None),
    )
    with pytest.raises(PlanError, match="outside the body"):
        laser.apply(state, step, context)
    far = Step.model_construct(
        therapy="laser",
        device="laser-diffuser-10mm",
        placement=Placement(tip_mm=(900.0, 0.0, 0.0), direction=(0, 0, 1)),
        protocol={"power_w": 5, "duration_s": 60},
        label=None,
    )
    with pytest.raises(PlanError, match="outside the image"):
        laser.apply(state, far, context)


@pytest.fixture(scope="module")
def diffuser_run():
    return run_laser_block(_block())


def test_diffuser_run(diffuser_run):
    """10 W for 5 min, 3 cm diffuser, ex vivo: all light is absorbed in tissue, the energy adds up, the zone is long
    along the fibre, the growing zone and the tissue at the fibre are recorded."""
    m = diffuser_run.metrics
    assert m["absorbed_power_w"] + m["escaped_power_w"] == pytest.approx(10.0, rel=1e-4)
    assert m["escaped_power_w"] < 0.1 and m["coolant_power_w"] == 0.0
    assert m["deposited_energy_j"] == pytest.approx(m["absorbed_power_w"] * 300.0, rel=0.02)
    assert 25.0 < m["long_axis_mm"] < 45.0 and 8.0 < m["short_axis_mm"] < 22.0
    assert m["long_axis_mm"] > m["short_axis_mm"] + 10.0
    assert m["light_solves"] == 30.0 and m["wavelength_nm"] == 1064.0
    assert 90.0 < m["peak_fibre_temperature_c"] < 150.0 and math.isnan(m["charring_time_s"])
    d = np.asarray(diffuser_run.curves["zone_diameter_mm"])
    assert d[0] == 0.0 and np.all(np.diff(d) >= -0.3) and d[-1] > 6.0


def test_resolve_cadence_does_not_matter(diffuser_run):
    """5 s and 10 s (default) re-solves give the same zone within a tenth of a (2 mm) voxel-wide margin."""
    other = run_laser_block(_block(resolve_s=5.0)).metrics
    for key in ("long_axis_mm", "short_axis_mm"):
        assert other[key] == pytest.approx(diffuser_run.metrics[key], abs=0.5)


def test_coagulation_changes_the_optics(diffuser_run, monkeypatch):
    """With coagulated = native optics the light keeps reaching farther, so the zone is (slightly, at 5 min) larger."""
    table = optics.load_optical_table()
    frozen = {name: {w: (pair[0], pair[0]) for w, pair in per.items()} for name, per in table.entries.items()}
    monkeypatch.setattr(laser, "load_optical_table", lambda: dataclasses.replace(table, entries=frozen))
    static = run_laser_block(_block()).metrics
    assert static["short_axis_mm"] > diffuser_run.metrics["short_axis_mm"] + 0.05


def test_cooled_applicator_and_charring_guard():
    """The cooled 1064 nm applicator at 25 W keeps the tissue at the catheter below charring; an uncooled diffuser at
    20 W passes a 120 °C limit, and the guard then stops the laser, as MR-thermometry safety limits do."""
    cooled = run_laser_block(_block("laser-cooled-1064-30mm", 25.0, 240.0)).metrics
    assert cooled["cooled"] == 1.0 and cooled["coolant_power_w"] > 0.0
    assert cooled["peak_fibre_temperature_c"] < laser.CHARRING_ONSET_C and math.isnan(cooled["charring_time_s"])
    stop = run_laser_block(
        _block(power_w=20.0, duration_s=240.0, extra={"charring_guard": "stop", "charring_temperature_c": 120.0})
    ).metrics
    assert 0.0 < stop["laser_stopped_at_s"] < 240.0 and stop["charring_time_s"] == stop["laser_stopped_at_s"]
    assert stop["laser_energy_j"] == pytest.approx(20.0 * stop["laser_stopped_at_s"])


def test_two_parallel_fibres_widen_the_zone(diffuser_run):
    """A second fibre 12 mm beside the first (multi-fibre LITT, thermal.md §1.4 [S24]) doubles the power and widens
    the zone across the pair."""
    pair = run_laser_block(_block(fibre_offsets_mm=((12.0, 0.0, 0.0),))).metrics
    assert pair["fibres"] == 2.0
    assert pair["absorbed_power_w"] == pytest.approx(20.0, rel=0.01)
    assert pair["zone_volume_ml"] > 2.0 * diffuser_run.metrics["zone_volume_ml"]


def test_bare_fibre_is_a_compact_source():
    """A bare fibre's point source makes a rounder zone than a diffuser's line (long ≈ short axis)."""
    m = run_laser_block(_block("laser-bare-600um", 5.0, 240.0)).metrics
    assert m["absorbed_power_w"] == pytest.approx(5.0, rel=0.01)
    assert 0.0 < m["short_axis_mm"] and m["long_axis_mm"] < 1.6 * m["short_axis_mm"]


def test_margin_temperature_in_published_range_and_robust_to_optics(monkeypatch):
    """IN-LITT-1 on a 2 mm grid: the 20 mm zone's margin temperature lies in Mertyna's 52–72 °C, and moves by less
    than 4 °C when every μs' is scaled ×0.5 or ×2 (μ_eff ×0.7 / ×1.4): the row does not hinge on the working optics."""
    setup = mertyna_setup(COARSE_MM, duration_s=420.0, half_size_mm=36.0)
    base = margin_temperatures(run_laser_block(setup), (20.0,))[20.0][1]
    lo, hi = MERTYNA_MARGIN_C
    assert lo <= base <= hi
    table = optics.load_optical_table()
    for factor in (0.5, 2.0):
        scaled = {
            name: {
                w: tuple(
                    dataclasses.replace(c, reduced_scattering_per_m=c.reduced_scattering_per_m * factor) for c in pair
                )
                for w, pair in per.items()
            }
            for name, per in table.entries.items()
        }
        monkeypatch.setattr(laser, "load_optical_table", lambda s=scaled: dataclasses.replace(table, entries=s))
        other = margin_temperatures(run_laser_block(setup), (20.0,))[20.0][1]
        assert other == pytest.approx(base, abs=4.0)
