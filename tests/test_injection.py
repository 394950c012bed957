"""Injection as a plan step (therapies/injection.py): the agent budget adds up, necrosis and its perfusion shutdown,
capsule and needle-track reflux, agents and needles compared, gene-vector transduction, the validation rows, and
one-line errors for bad input. 2 mm grids and short exposures keep the file fast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import InsituError, PlanError, RegistryError
from insitu.validation.injection_cases import InjectionBlock, injection_step, run_injection_block, tumour_block

COARSE = {"spacing_mm": 2.0, "half_size_mm": 24.0}
SHORT = (("exposure_s", 120.0),)
BUDGET = ("target_fraction", "outside_fraction", "washout_fraction", "vessel_fraction", "reflux_fraction",
          "boundary_fraction")  # fmt: skip


@pytest.fixture(scope="module")
def ethanol_in_tumour():
    """1 mL ethanol at 1 mL/min into the centre of a 10 mm-radius HCC (capsule by default) in liver."""
    setup = InjectionBlock(volume_ml=1.0, tumour_radius_mm=10.0, protocol=SHORT, **COARSE)
    _, state = tumour_block(setup)
    new, result = run_injection_block(setup)
    return state, new, result


def test_budget_adds_up_and_the_state_carries_the_necrosis(ethanol_in_tumour):
    state, new, result = ethanol_in_tumour
    m = result.metrics
    assert sum(m[k] for k in BUDGET) == pytest.approx(1.0, abs=1e-9)
    assert m["mass_balance_error"] < 1e-9
    assert m["injected_agent"] == pytest.approx(0.995e-6, rel=1e-9)  # m³ of ethanol in 1 mL of 99.5 %
    assert m["infusion_s"] == pytest.approx(60.0) and m["duration_s"] == pytest.approx(180.0)
    assert m["capsule_voxels"] > 0 and m["tract_voxels"] > 0
    # 1 mL fills the pore space of ~3.3 mL of tumour (φ 0.3): most of the agent stays in the 4.2 mL target
    assert m["target_fraction"] > 0.6 and m["leak_fraction"] < 0.4
    assert 2.0 < m["distribution_volume_ml"] < 5.0
    assert m["necrosis_volume_ml"] > 1.0 and 0.0 < m["coverage_tumor"] <= 1.0
    zone = result.fields["ablation_zone"]
    assert zone.shape == state.grid.shape and zone.dtype == bool
    assert np.all(new.perfusion_per_s[zone] == 0.0) and np.all(state.perfusion_per_s[zone] > 0.0)
    assert np.all(new.damage["chemical_omega"][zone] >= 1.0)
    assert new.drug_mg_per_ml.max() > 10.0 and np.all(state.drug_mg_per_ml == 0.0)  # the input state is untouched
    assert new.time_s == pytest.approx(state.time_s + 180.0)
    assert 0.0 <= result.fields["injectate_fraction"].min() and result.fields["injectate_fraction"].max() <= 1.0 + 1e-5
    assert m["peak_pressure_kpa"] > 0.0


def test_capsule_diverts_flow_to_the_needle_track():
    base = {"volume_ml": 1.0, "tumour_radius_mm": 8.0, **COARSE}
    with_capsule = run_injection_block(InjectionBlock(protocol=(*SHORT, ("capsule", True)), **base))[1].metrics
    without = run_injection_block(InjectionBlock(protocol=(*SHORT, ("capsule", False)), **base))[1].metrics
    no_track = run_injection_block(InjectionBlock(protocol=(*SHORT, ("needle_tract", False)), **base))[1].metrics
    assert with_capsule["reflux_fraction"] > without["reflux_fraction"] > 0.0
    assert no_track["reflux_fraction"] == 0.0 and no_track["tract_voxels"] == 0.0
    assert with_capsule["peak_pressure_kpa"] > without["peak_pressure_kpa"]
    assert without["capsule_voxels"] == 0.0


def test_acetic_acid_kills_further_than_ethanol_at_equal_volume():
    ethanol = run_injection_block(InjectionBlock(volume_ml=0.5, protocol=SHORT, **COARSE))[1].metrics
    acid = run_injection_block(InjectionBlock(agent="acetic-acid-50", volume_ml=0.5, protocol=SHORT, **COARSE))[1]
    assert acid.metrics["necrosis_volume_ml"] > ethanol["necrosis_volume_ml"] > 0.0
    assert acid.metrics["injected_agent"] == pytest.approx(0.25e-6, rel=1e-9)


def test_gene_vector_transduces_and_does_not_kill():
    new, result = run_injection_block(
        InjectionBlock(agent="adenovirus-1e11", volume_ml=0.5, tumour_radius_mm=10.0, protocol=SHORT, **COARSE)
    )
    m = result.metrics
    assert "ablation_zone" not in result.fields and "chemical_omega" not in new.damage
    tf = new.damage["transfected_fraction"]
    assert tf.min() >= 0.0 and tf.max() <= 1.0 and tf.max() > 0.0
    assert m["injected_agent"] == pytest.approx(0.5e11, rel=1e-9)
    assert sum(m[k] for k in BUDGET) == pytest.approx(1.0, abs=1e-9)
    assert m["washout_fraction"] == 0.0  # virions leave only with the fluid
    assert 0.0 < m["transfected_fraction_tumor"] <= 1.0 and m["transduced_cells"] > 0.0


def test_multitine_needle_and_several_points_spread_the_agent():
    tines = run_injection_block(
        InjectionBlock(device="inj-multitine-18g", volume_ml=1.0, protocol=(*SHORT, ("deployed_diameter_mm", 20.0)),
                       **COARSE)
    )[1]  # fmt: skip
    m = tines.metrics
    assert m["outlets"] == 12.0 and m["mass_balance_error"] < 1e-9
    zone = tines.fields["injectate_fraction"] >= 0.5
    i = np.nonzero(zone)[2]
    assert (i.max() - i.min()) * 2.0 >= 14.0  # spread across the 20 mm deployment (2 mm voxels)
    two = run_injection_block(
        InjectionBlock(volume_ml=1.0, protocol=(*SHORT, ("injection_points_mm", [(0.0, 0.0, -6.0), (0.0, 0.0, 6.0)])),
                       **COARSE)
    )[1].metrics  # fmt: skip
    assert two["injection_points"] == 2.0 and two["infusion_s"] == pytest.approx(60.0)


@settings(max_examples=20, deadline=None)
@given(
    direction=st.tuples(*(st.floats(-1.0, 1.0) for _ in range(3))).filter(lambda d: np.linalg.norm(d) > 0.1),
    diameter=st.floats(10.0, 50.0),
)
def test_tine_outlets_lie_on_the_deployment(direction, diameter):
    from insitu.devices.catalog import device_for
    from insitu.therapies.injection import InjectionProtocol, outlet_points_mm

    d = np.asarray(direction) / np.linalg.norm(direction)
    needle = device_for("inj-multitine-18g", "injection", "injection", "needle")
    protocol = InjectionProtocol(agent="ethanol-99.5", volume_ml=1.0, rate_ml_min=1.0, deployed_diameter_mm=diameter)
    tip = np.array([5.0, -3.0, 2.0])
    points = outlet_points_mm(needle, tip, d, protocol)
    assert points.shape == (12, 3)
    rel = points - tip
    axial = rel @ d
    radial = np.linalg.norm(rel - axial[:, None] * d, axis=1)
    assert np.allclose(radial[3::4], diameter / 2.0) and np.all(radial <= diameter / 2.0 + 1e-9)
    assert np.all(axial > 0.0) and np.allclose(axial[3::4], diameter / 4.0)


def test_validation_rows_verification_passes():
    from insitu.validation.injection_cases import darcy_rows, front_rows

    rows = darcy_rows((2.0, 1.0)) + front_rows(2.0)
    ids = {r.case_id for r in rows}
    assert ids == {"IN-INJ-1", "IN-INJ-2"}
    coarse = {r.quantity.split(",")[0]: r for r in rows}
    # at these coarse grids every row passes except two that the report meets at its finer grids (1 → 0.5 mm);
    # here they are held to what a 2 mm grid gives: the order pre-asymptotic, the wetted volume within 5 %
    order = coarse["observed order"]
    assert 1.3 < order.simulated < 2.2
    wetted = next(r for r in rows if "wetted" in r.quantity)
    assert wetted.simulated == pytest.approx(float(wetted.reference), rel=0.05)  # the infused volume
    assert all(r.passed for r in rows if r is not order and r is not wetted)


def test_vehmas_rows_report_the_known_gap():
    """IN-INJ-3 at 2 mm: the default model over-predicts the necrosis of ethanol in normal pig liver (no loss into
    the sinusoids); with microvascular drainage it falls into the measured range at 2 mL. Recorded, not tuned."""
    from insitu.validation.injection_cases import vehmas_setup

    default = run_injection_block(vehmas_setup(1.0, spacing_mm=2.0))[1].metrics
    drained = run_injection_block(vehmas_setup(1.0, spacing_mm=2.0, drainage=True))[1].metrics
    assert default["necrosis_diameter_mm"] > 2.0 * 5.0  # measured ≈ 5 mm
    assert drained["necrosis_diameter_mm"] < default["necrosis_diameter_mm"]
    assert drained["washout_fraction"] > default["washout_fraction"]


# ------------------------------------------------------------------------------------------------ bad input
def _apply(setup: InjectionBlock, **protocol):
    from insitu.plan import Plan
    from insitu.progress import ensure_progress
    from insitu.simulation import StepContext
    from insitu.therapies import injection
    from insitu.tissue.library import load_library

    patient, state = tumour_block(setup)
    step = injection_step(setup)
    step.protocol.update(protocol)
    plan = Plan.model_construct(name="p", patient="block", targets=[], margin_mm=5.0, body_temperature_c=37.0,
                                damage_model="arrhenius:liver_comsol", steps=[step], schema_version=1)  # fmt: skip
    return injection.apply(state, step, StepContext(patient, plan, load_library(), ensure_progress(None)))


def _one_line(exc: InsituError) -> None:
    assert "\n" not in str(exc) and ";" in str(exc)


@settings(max_examples=10, deadline=None)
@given(volume=st.floats(-100.0, 0.0), rate=st.floats(-60.0, 0.0))
def test_nonpositive_volume_or_rate_is_a_plan_error(volume, rate):
    setup = InjectionBlock(spacing_mm=4.0, half_size_mm=20.0)
    with pytest.raises(PlanError, match="volume_ml") as err:
        _apply(setup, volume_ml=volume)
    _one_line(err.value)
    with pytest.raises(PlanError, match="rate_ml_min") as err:
        _apply(setup, rate_ml_min=rate)
    _one_line(err.value)


def test_bad_agent_needle_and_placement():
    from insitu.plan import plan_from_dict

    setup = InjectionBlock(spacing_mm=4.0, half_size_mm=20.0)
    with pytest.raises(RegistryError, match=r"unknown injection agent 'ethanl'.*did you mean 'ethanol") as err:
        _apply(setup, agent="ethanl")
    _one_line(err.value)
    with pytest.raises(PlanError, match="is an agent, not a needle"):  # refused when the plan is read
        plan_from_dict(
            {
                "patient": "block",
                "steps": [
                    {
                        "therapy": "injection",
                        "device": "ethanol-99.5",
                        "placement": {"tip_mm": [0, 0, 0], "direction": [0, 0, 1]},
                        "protocol": {"agent": "ethanol-99.5", "volume_ml": 1, "rate_ml_min": 1},
                    }
                ],
            }
        )
    with pytest.raises(PlanError, match="above"):
        _apply(setup, rate_ml_min=30.0)
    with pytest.raises(PlanError, match="no tines"):
        _apply(setup, deployed_diameter_mm=20.0)
    with pytest.raises(PlanError, match="outside the image"):
        _apply(setup, injection_points_mm=[(500.0, 0.0, 0.0)])
    # the needle tip in air (outside the body)
    from insitu.plan import Plan
    from insitu.progress import ensure_progress
    from insitu.simulation import StepContext
    from insitu.therapies import injection
    from insitu.tissue.library import load_library

    patient, state = tumour_block(setup)
    state.tissue_index[...] = load_library().index_of("air")
    step = injection_step(setup)
    plan = Plan.model_construct(name="p", patient="block", targets=[], margin_mm=5.0, body_temperature_c=37.0,
                                damage_model="arrhenius:liver_comsol", steps=[step], schema_version=1)  # fmt: skip
    with pytest.raises(PlanError, match="outside the body") as err:
        injection.apply(state, step, StepContext(patient, plan, load_library(), ensure_progress(None)))
    _one_line(err.value)
    # through the plan document: the protocol is checked at load time
    protocol = {"agent": "ethanol-99.5", "volume_ml": 0, "rate_ml_min": 1}
    placement = {"tip_mm": [0, 0, 0], "direction": [0, 0, 1]}
    doc = {
        "patient": "phantom",
        "steps": [{"therapy": "injection", "device": "inj-22g-endhole", "placement": placement, "protocol": protocol}],
    }
    with pytest.raises(PlanError, match="volume_ml") as err:
        plan_from_dict(doc)
    _one_line(err.value)
    doc["steps"][0]["protocol"].update(volume_ml=1.0, agent="vodka")
    with pytest.raises(PlanError, match="unknown injection agent"):
        plan_from_dict(doc)
