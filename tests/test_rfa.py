"""RF ablation as a plan step (therapies/rfa.py): generator control through the coupled electric–thermal
model, re-solve-interval independence, and one-line errors for bad placements and protocols."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.errors import InsituError, PlanError
from insitu.plan import Placement, Plan, Step
from insitu.progress import ensure_progress
from insitu.simulation import StepContext
from insitu.tissue.library import load_library
from insitu.validation.rfa_cases import BlockSetup, block_state, block_step, perfusion_per_s, run_block


def _run(setup: BlockSetup, step: Step | None = None, edit=None):
    from insitu.therapies import rfa

    patient, state = block_state(setup)
    if edit is not None:
        edit(state)
    step = step or block_step(setup)
    plan = Plan(patient="block", steps=[step])
    return rfa.apply(state, step, StepContext(patient, plan, load_library(), ensure_progress(None)))


def test_constant_power_delivers_its_power_into_the_tissue():
    """P = G·V² with G from the solved field: the tissue receives exactly the set power (energy identity)."""
    setup = BlockSetup(
        "rf-cooled-17g-20mm", 30.0, 37.0, perfusion_per_s(20), spacing_mm=1.0, half_size_mm=25.0,
        generator={"mode": "constant_power", "power_w": 15.0},
    )  # fmt: skip
    result = run_block(setup)
    assert set(result.curves["power_w"]) == {15.0}
    assert result.metrics["delivered_energy_j"] == pytest.approx(450.0, rel=1e-9)
    # the tissue in the electric box receives its share of the series circuit; the rest heats tissue far away
    far = result.metrics["far_field_resistance_ohm"]
    assert 0.0 < far < 0.2 * result.curves["impedance_ohm"][0]  # 1/(4πσR) of a 50 mm box: ≈ 9 Ω
    assert result.metrics["deposited_energy_j"] == pytest.approx(result.metrics["electric_box_energy_j"], rel=1e-5)
    assert result.metrics["deposited_energy_j"] < 450.0
    z = np.asarray(result.curves["impedance_ohm"])
    assert 40.0 < z[0] < 150.0  # a cooled 2 cm electrode in liver: tens of ohms (thermal.md §1.2: 43–80 Ω)
    assert z[-1] < z[0]  # σ rises ~2 %/°C as the tissue heats: the impedance falls
    assert result.metrics["peak_temperature_c"] > 50.0
    assert result.metrics["ablation_volume_ml"] > 0.0


def test_zone_does_not_depend_on_the_potential_re_solve_interval():
    """The field is re-solved every 2 s or every 10 s (and whenever the conductance estimate moves by 5 %)."""
    zones = []
    for interval in (2.0, 10.0):
        setup = BlockSetup(
            "rf-cooled-17g-20mm", 180.0, 37.0, perfusion_per_s(20), spacing_mm=1.0, half_size_mm=25.0,
            potential_update_s=interval,
        )  # fmt: skip
        zones.append(run_block(setup).metrics)
    a, b = zones
    assert a["potential_solves"] > b["potential_solves"]
    assert abs(a["zone_volume_ml"] - b["zone_volume_ml"]) <= 0.03 * a["zone_volume_ml"]
    assert abs(a["short_axis_mm"] - b["short_axis_mm"]) <= 1.0
    assert abs(a["long_axis_mm"] - b["long_axis_mm"]) <= 1.0
    assert a["delivered_energy_j"] == pytest.approx(b["delivered_energy_j"], rel=0.03)


def test_conductance_estimate_and_the_local_trigger_share():
    """Between solves G moves by Σ Q₁·(σ/σ₀ − 1)·V (first order, σ/σ₀ capped at 1.5); the local trigger's share counts
    the field's power in voxels whose σ moved by more than half, weighted by what they would draw."""
    from insitu.therapies.rfa import LOCAL_CHANGE, _conductance_change

    q = np.array([4.0, 3.0, 2.0, 1.0], np.float32).reshape(1, 1, 4)  # W/m³ per V², sums to 10
    ref = np.ones((1, 1, 4), np.float32)
    now = np.array([1.1, 0.4, 3.0, 1.0], np.float32).reshape(1, 1, 4)  # +10 %, boiled (−60 %), regained (×3), same
    change, share = _conductance_change(q, now, ref, 2.0, LOCAL_CHANGE)
    assert change == pytest.approx(2.0 * (4.0 * 0.1 + 3.0 * -0.6 + 2.0 * 0.5), rel=1e-6)  # the ×3 capped at 1.5
    assert share == pytest.approx((3.0 * 1.0 + 2.0 * 3.0) / 10.0, rel=1e-6)
    # no change: no estimate, no share
    assert _conductance_change(q, ref, ref, 2.0, LOCAL_CHANGE) == (0.0, 0.0)


def test_boiling_next_to_the_electrode_forces_a_re_solve_before_the_cadence():
    """With the longest cadence allowed (120 s, half the run), the field is still re-solved as tissue boils at the
    electrode (the local trigger) and the zone stays that of a 10 s cadence within a voxel."""
    runs = {}
    for interval in (10.0, 120.0):
        setup = BlockSetup(
            "rf-cooled-17g-20mm", 240.0, 21.0, 0.0, spacing_mm=1.0, half_size_mm=25.0,
            potential_update_s=interval,
        )  # fmt: skip
        runs[interval] = run_block(setup).metrics
    lazy, regular = runs[120.0], runs[10.0]
    assert lazy["rolloffs"] >= 1  # the impedance controller met boiling tissue
    assert lazy["potential_solves"] >= 2 * lazy["rolloffs"]  # each roll-off re-solved, not only the first solve
    assert abs(lazy["long_axis_mm"] - regular["long_axis_mm"]) <= 1.0
    assert abs(lazy["short_axis_mm"] - regular["short_axis_mm"]) <= 1.0


SMALL = BlockSetup("rf-cooled-17g-20mm", 10.0, 37.0, 0.0, spacing_mm=1.0, half_size_mm=20.0)


def test_tip_in_air_is_a_one_line_error():
    def air_around_tip(state):
        state.tissue_index[:, :, :] = 0  # everything outside the body

    with pytest.raises(PlanError, match="outside the body"):
        _run(SMALL, edit=air_around_tip)


def test_track_through_bone_is_a_one_line_error():
    library = load_library()

    def rib(state):
        # the electrode points along +z (k grows toward the tip): a bone slab near the k = 0 face crosses its track
        state.tissue_index[5:8, :, :] = library.index_of("bone_cortical")

    with pytest.raises(PlanError, match="crosses bone"):
        _run(SMALL, edit=rib)


@pytest.mark.parametrize(
    ("device", "protocol", "message"),
    [
        ("rf-coold-17g-20mm", {"duration_s": 60}, "rf-cooled-17g-20mm"),
        ("rf-cooled-17g-20mm", {"duration_s": 0}, "duration_s"),
        ("rf-cooled-17g-20mm", {"duration_s": 60, "generator": {"mode": "constant_power", "power_w": -5}}, "power"),
        ("rf-cooled-17g-20mm", {"duration_s": 60, "generator": {"mode": "impedanse"}}, "impedance"),
        ("cryoprobe-argon-2.4mm", {"duration_s": 60}, "not an RF"),
    ],
)
def test_bad_device_or_protocol_is_rejected_when_the_plan_is_read(device, protocol, message):
    with pytest.raises((ValueError, InsituError)) as info:
        Step(
            therapy="rfa", device=device, placement=Placement(tip_mm=(0, 0, 0), direction=(0, 0, 1)), protocol=protocol
        )
    text = str(info.value)
    assert message in text


def test_electrode_thinner_and_shorter_than_a_voxel_is_a_one_line_error():
    coarse = BlockSetup("rf-cooled-17g-20mm", 10.0, 37.0, 0.0, spacing_mm=30.0, half_size_mm=90.0)
    with pytest.raises(InsituError) as info:
        _run(coarse)
    assert "\n" not in str(info.value) and "voxel" in str(info.value)


def test_missing_axis_is_a_one_line_error():
    step = Step(therapy="rfa", device="rf-cooled-17g-20mm", placement=Placement(tip_mm=(0, 0, 10)),
                protocol={"duration_s": 10})  # fmt: skip
    with pytest.raises(PlanError, match="axis"):
        _run(SMALL, step=step)
