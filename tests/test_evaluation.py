"""evaluation/: coverage, target + margin, signed minimal margin, tissue lost, organs at risk, volume histograms.

Analytic geometry: a tumour ball of radius r inside (or around) a zone ball of radius R. Exact answers: the margin
is R − r − offset; the coverage of a concentric zone is min(1, R³/r³) and of target + margin min(1, R³/(r + m)³).
Discretisation errors we allow, and why:
- margin: ±0.55 voxel of the coarsest axis (evaluation/margin.py: measured on 300 sphere pairs);
- coverage: each ball's voxel count differs from 4/3·π·a³ by the lattice noise at its surface, measured below 1 %
  for a ≥ 5 voxels (2 % with a 2 mm axis), so fractions are compared within 0.01 (0.02);
- target + margin region: its radius is within ±0.12 voxel of r + m (evaluation/surface.py), a volume error of
  3·0.12·h/(r + m): below 3.6 % for the balls here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insitu.errors import GridError, InsituError, PlanError, StructureError
from insitu.evaluation import (
    coverage_fraction,
    cumulative_fraction,
    evaluate,
    margin_coverage,
    margin_map_mm,
    margin_region,
    minimal_margin_mm,
    minimal_margin_point_mm,
    overlap_ml,
    surface_points_mm,
    value_at_fraction,
    volume_histogram,
)
from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Role, Structure
from insitu.plan import plan_from_dict
from insitu.simulation import Outcome, StepResult, simulate
from insitu.state import TissueState
from insitu.tissue.library import load_library

CENTRE = np.array([0.3, -0.2, 0.1])  # off the lattice, so no symmetry hides an error
ANISOTROPIC = (0.9, 1.1, 2.0)


def _grid(spacing, half_width_mm: float) -> Grid:
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    n = np.ceil(2.0 * half_width_mm / spacing).astype(int)
    return Grid(shape=(n[2], n[1], n[0]), spacing_mm=tuple(spacing), origin_mm=tuple(np.full(3, -half_width_mm)))


def _balls(spacing, r_mm: float, zone_r_mm: float, offset_mm=(0.0, 0.0, 0.0), pad_mm: float = 4.0):
    """(grid, tumour, zone): a tumour ball of radius r offset from a zone ball of radius R."""
    offset = np.asarray(offset_mm, dtype=float)
    grid = _grid(spacing, max(r_mm + float(np.linalg.norm(offset)), zone_r_mm) + pad_mm)
    world = grid.world_coordinates_mm(np.float64)
    zone = np.linalg.norm(world - CENTRE, axis=-1) <= zone_r_mm
    tumour = np.linalg.norm(world - CENTRE - offset, axis=-1) <= r_mm
    return grid, tumour, zone


def _coarsest(spacing) -> float:
    return float(np.max(np.atleast_1d(spacing)))


# ---------------------------------------------------------------------- signed minimal margin
@pytest.mark.parametrize(
    ("spacing", "r_mm", "zone_r_mm"),
    [
        (1.0, 6.0, 11.0),
        (1.0, 6.0, 8.3),
        (1.0, 7.5, 5.8),  # zone smaller than the tumour: negative margin
        (0.5, 5.0, 10.0),
        (0.5, 5.0, 6.2),
        (0.5, 6.0, 4.5),
        (ANISOTROPIC, 6.0, 11.0),
        (ANISOTROPIC, 8.0, 5.5),
    ],
)
def test_concentric_margin_is_the_radius_difference_within_half_a_voxel(spacing, r_mm, zone_r_mm):
    grid, tumour, zone = _balls(spacing, r_mm, zone_r_mm)
    margin = minimal_margin_mm(tumour, zone, grid)
    assert margin == pytest.approx(zone_r_mm - r_mm, abs=0.5 * _coarsest(spacing))
    assert (margin > 0) == (zone_r_mm > r_mm)


def test_an_offset_tumour_has_its_least_margin_on_the_side_it_moved_to():
    offset = np.array([2.5, 0.0, 0.0])
    grid, tumour, zone = _balls(1.0, 5.0, 10.0, offset_mm=offset)
    margin_map = margin_map_mm(tumour, zone, grid)
    assert np.isnan(margin_map[~tumour]).all()
    assert float(np.nanmin(margin_map)) == pytest.approx(10.0 - 5.0 - 2.5, abs=0.5)
    at = np.asarray(minimal_margin_point_mm(margin_map, grid))
    direction = (at - CENTRE) / np.linalg.norm(at - CENTRE)
    assert direction @ np.array([1.0, 0.0, 0.0]) > 0.9  # the thin side is along the offset (+x, L)


def test_no_zone_means_minus_infinity_and_a_tumour_outside_reads_how_far_out():
    grid, tumour, _ = _balls(1.0, 4.0, 8.0)
    assert minimal_margin_mm(tumour, np.zeros_like(tumour), grid) == -math.inf
    # a zone ball 12 mm away along x: the far side of the tumour lies 12 + 4 − 3 = 13 mm out of it
    world = grid.world_coordinates_mm(np.float64)
    far_zone = np.linalg.norm(world - CENTRE - np.array([12.0, 0.0, 0.0]), axis=-1) <= 3.0
    assert minimal_margin_mm(tumour, far_zone, grid) == pytest.approx(-13.0, abs=0.5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    r_mm=st.floats(3.0, 8.0),
    extra_mm=st.floats(-2.5, 5.0),
    offset_mm=st.floats(0.0, 2.5),
    theta=st.floats(0.0, math.pi),
    phi=st.floats(0.0, 2.0 * math.pi),
    spacing=st.sampled_from([1.0, (1.0, 1.0, 1.5)]),
)
def test_margin_never_overstates_the_exact_one_by_more_than_the_stated_error(
    r_mm, extra_mm, offset_mm, theta, phi, spacing
):
    """Random radii, offsets and directions: margin ≤ R − r − offset + tol (tol 0.55 voxel), and not far below."""
    direction = np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])
    zone_r_mm = max(r_mm + extra_mm, 2.0)
    grid, tumour, zone = _balls(spacing, r_mm, zone_r_mm, offset_mm=offset_mm * direction)
    exact = zone_r_mm - r_mm - offset_mm
    tol = 0.55 * _coarsest(spacing)
    margin = minimal_margin_mm(tumour, zone, grid)
    assert margin <= exact + tol
    assert margin >= exact - tol


# ---------------------------------------------------------------------- coverage
@pytest.mark.parametrize(
    ("spacing", "r_mm", "zone_r_mm", "tol"),
    [(1.0, 7.5, 5.8, 0.01), (0.5, 6.0, 4.5, 0.01), (ANISOTROPIC, 8.0, 5.5, 0.02), (1.0, 6.0, 8.0, 0.0)],
)
def test_coverage_of_a_concentric_zone_is_the_cube_of_the_radius_ratio(spacing, r_mm, zone_r_mm, tol):
    _, tumour, zone = _balls(spacing, r_mm, zone_r_mm)
    assert coverage_fraction(zone, tumour) == pytest.approx(min(1.0, (zone_r_mm / r_mm) ** 3), abs=tol)


@pytest.mark.parametrize(
    ("spacing", "r_mm", "margin_mm", "zone_r_mm"),
    [(1.0, 6.0, 5.0, 9.0), (0.5, 5.0, 4.0, 7.0), (ANISOTROPIC, 6.0, 5.0, 9.0), (1.0, 6.0, 5.0, 12.5)],
)
def test_target_plus_margin_is_a_euclidean_ball_and_its_coverage_the_exact_ratio(spacing, r_mm, margin_mm, zone_r_mm):
    grid, tumour, zone = _balls(spacing, r_mm, zone_r_mm, pad_mm=6.0)
    region = margin_region(tumour, grid, margin_mm)
    exact_ml = 4.0 / 3.0 * math.pi * (r_mm + margin_mm) ** 3 * 1e-3
    region_ml = float(np.count_nonzero(region)) * grid.voxel_volume_ml
    assert region_ml == pytest.approx(exact_ml, rel=3 * 0.12 * _coarsest(spacing) / (r_mm + margin_mm))
    assert region[tumour].all()
    exact = min(1.0, (zone_r_mm / (r_mm + margin_mm)) ** 3)
    assert margin_coverage(zone, tumour, grid, margin_mm) == pytest.approx(exact, abs=0.02)


def test_margin_region_is_measured_in_millimetres_on_an_anisotropic_grid():
    """Its extent is 2(r + m) mm along the 0.9 mm axis and along the 2 mm axis alike (a voxel dilation would not)."""
    grid, tumour, _ = _balls(ANISOTROPIC, 4.0, 4.0, pad_mm=8.0)
    region = margin_region(tumour, grid, 6.0)
    k, j, i = np.nonzero(region)
    points = grid.index_to_world(np.stack([i, j, k], axis=-1).astype(float))
    extent = points.max(axis=0) - points.min(axis=0) + np.asarray(ANISOTROPIC)  # voxel boxes
    assert extent[0] == pytest.approx(20.0, abs=ANISOTROPIC[0])
    assert extent[2] == pytest.approx(20.0, abs=ANISOTROPIC[2])
    assert margin_region(tumour, grid, 0.0).sum() == tumour.sum()


def test_surface_points_of_a_ball_lie_on_its_sphere():
    grid, tumour, _ = _balls(1.0, 7.0, 7.0)
    radius = np.linalg.norm(surface_points_mm(tumour, grid) - CENTRE, axis=1)
    assert abs(float(np.mean(radius)) - 7.0) < 0.05
    assert np.all(np.abs(radius - 7.0) < 0.55)


def test_bad_input_is_a_one_line_error():
    grid, tumour, zone = _balls(1.0, 4.0, 6.0)
    for bad in (-1.0, math.nan, "5 mm"):
        with pytest.raises(PlanError, match=r"margin_mm .* give the margin in mm"):
            margin_region(tumour, grid, bad)
    with pytest.raises(StructureError, match="empty target"):
        coverage_fraction(zone, np.zeros_like(tumour))
    with pytest.raises(StructureError, match="empty target"):
        minimal_margin_mm(np.zeros_like(tumour), zone, grid)
    with pytest.raises(GridError, match="shape"):
        minimal_margin_mm(tumour[:-1], zone[:-1], grid)
    for error in (PlanError, StructureError, GridError):
        assert issubclass(error, InsituError)


# ---------------------------------------------------------------------- histograms
def test_cumulative_histograms_count_volume_at_or_beyond_each_threshold():
    values = np.arange(10.0).reshape(10, 1, 1) * np.ones((10, 2, 2))  # 0 … 9, four voxels each
    mask = np.ones_like(values, dtype=bool)
    assert cumulative_fraction(values, mask, np.array([0.0, 5.0, 9.0, 10.0])).tolist() == [1.0, 0.5, 0.1, 0.0]
    assert cumulative_fraction(values, mask, np.array([0.0, 4.5]), "at_most").tolist() == [0.1, 0.5]
    assert value_at_fraction(values, mask, 0.9) == 1.0  # 90 % of the volume reaches 1, not 2
    assert value_at_fraction(values, mask, 0.9, "at_most") == 8.0
    values[0] = np.nan  # never reached: below every threshold
    assert cumulative_fraction(values, mask, np.array([0.0]))[0] == pytest.approx(0.9)
    hist = volume_histogram("max_temperature_c", 37.0 + 3.0 * values, mask, voxel_volume_ml=0.001)
    assert hist.volume_ml == pytest.approx(0.04)
    assert hist.fraction[0] == pytest.approx(0.9)  # ≥ 37 °C
    assert np.all(np.diff(hist.fraction) <= 0)


# ---------------------------------------------------------------------- evaluate(): a synthetic outcome
def _ball_patient() -> tuple[Patient, dict[str, np.ndarray]]:
    """1 mm grid: liver ball r 15 mm, tumour r 5 mm at its centre, gallbladder r 4 mm 12 mm to +x, a vessel."""
    grid = _grid(1.0, 20.0)
    world = grid.world_coordinates_mm(np.float64)
    r = np.linalg.norm(world - CENTRE, axis=-1)
    tumour = r <= 5.0
    gallbladder = np.linalg.norm(world - CENTRE - np.array([12.0, 0.0, 0.0]), axis=-1) <= 4.0
    vessel = (np.hypot(world[..., 0] - CENTRE[0] + 8.0, world[..., 1] - CENTRE[1]) <= 1.5) & (r <= 15.0)
    liver = (r <= 15.0) & ~tumour & ~gallbladder & ~vessel
    image = np.where(liver | tumour | gallbladder | vessel, 60, -1000).astype(np.int16)
    masks = {"liver": liver, "tumor": tumour, "gallbladder": gallbladder, "hepatic_vein": vessel}
    structures = {
        "liver": Structure("liver", Role.ORGAN, liver, grid, "liver"),
        "tumor": Structure("tumor", Role.TARGET, tumour, grid, "hcc"),
        "gallbladder": Structure("gallbladder", Role.OAR, gallbladder, grid, "gallbladder_bile"),
        "hepatic_vein": Structure("hepatic_vein", Role.VESSEL, vessel, grid, "blood"),
    }
    return Patient(grid=grid, image=image, structures=structures), masks


def _plan(margin_mm: float = 3.0):
    protocol = {"power_w": 1.0, "duration_s": 1.0}  # never run: the tests hand evaluate() the steps' results
    step = {"therapy": "prescribed_source", "placement": {"tip_mm": CENTRE.tolist()}, "protocol": protocol}
    return plan_from_dict({"patient": "p", "targets": ["tumor"], "margin_mm": margin_mm, "steps": [step, step, step]})


def test_evaluate_measures_each_step_and_the_union_of_their_zones():
    patient, masks = _ball_patient()
    grid = patient.grid
    world = grid.world_coordinates_mm(np.float64)
    r = np.linalg.norm(world - CENTRE, axis=-1)
    first = r <= 6.5  # covers the tumour with 1.5 mm
    second = np.linalg.norm(world - CENTRE - np.array([9.0, 0.0, 0.0]), axis=-1) <= 5.0  # reaches the gallbladder
    heat = (37.0 + 60.0 * np.exp(-((r / 6.0) ** 2))).astype(np.float32)
    state = TissueState.from_patient(patient, load_library())
    state.damage["max_temperature_c"] = np.where(r <= 14.0, heat, np.nan).astype(np.float32)  # NaN: never heated
    steps = [
        StepResult(0, "prescribed_source", "one", fields={"ablation_zone": first, "max_temperature_c": heat}),
        StepResult(1, "prescribed_source", "two", fields={"ablation_zone": second}),
        StepResult(2, "tae", "embolize", metrics={"tumour_territory_coverage": 0.8, "nontarget_embolized_ml": 0.5}),
    ]
    outcome = Outcome(plan=_plan(3.0), patient=patient, final_state=state, steps=steps)
    evaluation = evaluate(outcome)
    union = first | second
    assert np.array_equal(evaluation.zone, union)

    one = evaluation.steps[0].zone
    assert one.targets["tumor"].coverage == 1.0
    assert one.targets["tumor"].minimal_margin_mm == pytest.approx(1.5, abs=0.5)
    assert one.targets["tumor"].margin_coverage == pytest.approx((6.5 / 8.0) ** 3, abs=0.03)
    assert one.zone_volume_ml == pytest.approx(4.0 / 3.0 * math.pi * 6.5**3 * 1e-3, rel=0.02)
    assert one.axes_mm[0] == pytest.approx(13.0, abs=1.0) and one.axes_mm[2] == pytest.approx(13.0, abs=1.0)
    expected_lost = float(np.count_nonzero(first & masks["liver"])) * 1e-3
    assert one.healthy_tissue_lost_ml["liver"] == pytest.approx(expected_lost)
    assert one.at_risk["gallbladder"].damaged_ml == 0.0
    peak_in_gallbladder = float(heat[masks["gallbladder"]].max())
    assert one.at_risk["gallbladder"].max_temperature_c == pytest.approx(peak_in_gallbladder)

    two = evaluation.steps[1].zone
    assert two.at_risk["gallbladder"].damaged_ml == pytest.approx(
        np.count_nonzero(second & masks["gallbladder"]) * 1e-3
    )
    assert two.at_risk["gallbladder"].damaged_ml > 0.05
    assert two.at_risk["gallbladder"].max_temperature_c is None  # the step recorded no temperature
    assert two.targets["tumor"].minimal_margin_mm < -4.0  # its zone misses most of the tumour

    whole = evaluation.cumulative
    assert whole.zone_volume_ml == pytest.approx(np.count_nonzero(union) * 1e-3)
    assert whole.targets["tumor"].coverage == 1.0
    assert whole.healthy_tissue_lost_ml["liver"] == pytest.approx(overlap_ml(union, masks["liver"], grid))
    assert whole.at_risk["gallbladder"].damaged_ml == two.at_risk["gallbladder"].damaged_ml
    # the vessel runs beyond the heated region (NaN there): its peak is the larger of the heat and 37 °C
    assert whole.at_risk["hepatic_vein"].max_temperature_c == pytest.approx(float(heat[masks["hepatic_vein"]].max()))

    # histograms: the share of the tumour at ≥ 60 °C, and T90
    tumour_heat = evaluation.histograms["tumor"]["max_temperature_c"]
    assert tumour_heat.fraction[tumour_heat.thresholds.tolist().index(60.0)] == pytest.approx(
        float(np.mean(heat[masks["tumor"]] >= 60.0))
    )
    assert tumour_heat.at_90_percent == pytest.approx(float(np.quantile(heat[masks["tumor"]], 0.1)), abs=0.5)
    assert "max_temperature_c" in evaluation.steps[0].histograms["tumor"]

    # transcatheter metrics from the step, the non-target share derived from them
    tae = evaluation.steps[2].transcatheter
    tumour_ml = float(np.count_nonzero(masks["tumor"])) * 1e-3
    assert tae["nontarget_fraction"] == pytest.approx(0.5 / (0.5 + 0.8 * tumour_ml))
    assert evaluation.steps[2].zone is None
    json.dumps(evaluation.summary(), allow_nan=False)


def test_transcatheter_totals_come_from_the_final_state_and_add_exposures():
    patient, masks = _ball_patient()
    state = TissueState.from_patient(patient, load_library())
    state.embolized_fraction[masks["tumor"]] = 0.95
    liver_part = masks["liver"] & (patient.grid.world_coordinates_mm(np.float64)[..., 0] < CENTRE[0] - 8.0)
    state.embolized_fraction[liver_part] = 0.6
    state.drug_mg_per_ml[masks["tumor"]] = 0.2
    pk = {"plasma_auc_ng_h_ml": 10.0, "plasma_cmax_ng_ml": 3.0}
    steps = [
        StepResult(0, "tace", "a", metrics=pk | {"flr_ml": 500.0}),
        StepResult(1, "tace", "b", metrics={"plasma_auc_ng_h_ml": 6.0, "plasma_cmax_ng_ml": 4.0, "flr_ml": 450.0}),
    ]
    evaluation = evaluate(Outcome(plan=_plan(), patient=patient, final_state=state, steps=steps), margin_mm=0.0)
    totals = evaluation.transcatheter
    tumour_ml = np.count_nonzero(masks["tumor"]) * 1e-3
    liver_ml = np.count_nonzero(liver_part) * 1e-3
    assert totals["tumour_embolized_fraction"] == 1.0
    assert totals["tumour_inflow_stopped_mean"] == pytest.approx(0.95)
    assert totals["nontarget_embolized_ml"] == pytest.approx(liver_ml)
    assert totals["nontarget_fraction"] == pytest.approx(liver_ml / (liver_ml + tumour_ml))
    assert totals["drug_tumour_mg"] == pytest.approx(0.2 * tumour_ml, rel=1e-5)
    assert totals["drug_nontarget_mg"] == 0.0
    assert totals["systemic_auc_ng_h_ml"] == 16.0
    assert totals["systemic_cmax_ng_ml"] == 4.0
    assert totals["flr_ml"] == 450.0  # the latest estimate
    assert evaluation.cumulative is None  # no step left a necrosis zone


def test_evaluate_rejects_a_negative_margin_before_measuring(small_patient):
    state = TissueState.from_patient(small_patient, load_library())
    outcome = Outcome(plan=_plan(), patient=small_patient, final_state=state, steps=[])
    with pytest.raises(PlanError, match="margin_mm -2"):
        evaluate(outcome, margin_mm=-2.0)


# ---------------------------------------------------------------------- evaluate(): a simulated outcome
@pytest.mark.parametrize(("power_w", "covered"), [(4.0, True), (0.6, False)])
def test_a_simulated_heating_step_is_judged_consistently(small_patient, power_w, covered):
    centre = [float(v) for v in small_patient.structures["tumor"].centroid_mm]
    plan = plan_from_dict(
        {
            "patient": "patient",
            "targets": ["tumor"],
            "margin_mm": 2.0,
            "steps": [
                {
                    "therapy": "prescribed_source",
                    "placement": {"tip_mm": centre},
                    "protocol": {"shape": "sphere", "power_w": power_w, "duration_s": 90.0, "radius_mm": 3.0},
                }
            ],
        }
    )
    outcome = simulate(plan, small_patient)
    evaluation = evaluate(outcome)
    step = outcome.steps[0]
    zone = step.fields["ablation_zone"]
    whole = evaluation.cumulative
    tumour = whole.targets["tumor"]
    # the same numbers the thermal step reports, and the geometry agrees with itself
    assert tumour.coverage == pytest.approx(step.metrics["coverage_tumor"])
    assert whole.zone_volume_ml == pytest.approx(step.metrics["ablation_volume_ml"])
    assert tumour.margin_coverage <= tumour.coverage + 1e-12
    assert whole.zone_volume_ml > 0.05  # 0.6 W still kills part of the tumour: coverage 0.19, margin −2.3 mm
    assert (tumour.coverage == 1.0) == covered
    assert (tumour.minimal_margin_mm > 0) == covered
    liver = small_patient.structures["liver"].mask
    assert whole.healthy_tissue_lost_ml["liver"] == pytest.approx(np.count_nonzero(zone & liver) * 0.9 * 1.1 * 2e-3)
    peak = float(np.nanmax(outcome.final_state.damage["max_temperature_c"][small_patient.structures["tumor"].mask]))
    assert evaluation.histograms["tumor"]["max_temperature_c"].fraction[0] == 1.0  # all ≥ 37 °C
    assert evaluation.histograms["tumor"]["max_temperature_c"].at_90_percent <= peak
    summary = json.loads(json.dumps(evaluation.summary(), allow_nan=False))
    assert summary["margin_mm"] == 2.0
    assert summary["steps"][0]["zone"]["targets"]["tumor"]["coverage"] == pytest.approx(tumour.coverage, abs=1e-4)
