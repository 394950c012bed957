"""Portal vein embolization: BSA and liver-volume formulas, FLR volumetry, branch choice and FLR growth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from insitu.errors import PhysicsError, PlanError, StructureError
from insitu.grid import Grid
from insitu.vascular.generate import TreeSpec, generate_trees
from insitu.vascular.liver_remnant import (
    RegenerationKinetics,
    body_surface_area_m2,
    flr_growth,
    future_liver_remnant,
    load_liver_remnant,
    min_sflr,
    portal_branch_for_segments,
    published_kinetics,
    standard_liver_volume_ml,
)
from insitu.vascular.territories import assign_territories
from insitu.vascular.tree import VesselTree


# ---------------------------------------------------------------------- formulas
def test_liver_volume_formulas_to_round_off() -> None:
    # Vauthey TELV = −794.41 + 1267.28·BSA (Ribero 2013 Ann Surg abstract); Urata SLV = 706.2·BSA + 2.4
    # (J Surg Oncol 2019 Table 1): BSA 1.9 m² → 1613.422 mL and 1344.18 mL
    assert standard_liver_volume_ml(1.9) == pytest.approx(1613.422, rel=1e-13)
    assert standard_liver_volume_ml(1.9, "urata") == pytest.approx(1344.18, rel=1e-13)
    # Mosteller √(175·70/3600) and DuBois 0.007184·175^0.725·70^0.425 (formulas via globalrph.com)
    assert body_surface_area_m2(175.0, 70.0) == pytest.approx(math.sqrt(12250.0 / 3600.0), rel=1e-14)
    assert body_surface_area_m2(175.0, 70.0) == pytest.approx(1.8446619684, abs=1e-10)
    assert body_surface_area_m2(175.0, 70.0, "dubois") == pytest.approx(1.8481430181, abs=1e-10)
    # thresholds of J Surg Oncol 2019 Table 1 (confirmed): 20 % normal, 30 % chemotherapy, 40 % cirrhosis
    assert (min_sflr("normal"), min_sflr("chemotherapy"), min_sflr("Cirrhosis")) == (0.20, 0.30, 0.40)
    table = load_liver_remnant()
    for key in ("normal", "chemotherapy", "cirrhosis"):
        assert table["min_sflr"][key]["status"] == "confirmed"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: body_surface_area_m2(1.75, 70.0), PlanError),  # metres for cm
        (lambda: body_surface_area_m2(175.0, 700.0), PlanError),
        (lambda: body_surface_area_m2(175.0, 70.0, "haycock"), PlanError),
        (lambda: standard_liver_volume_ml(0.3), PlanError),
        (lambda: standard_liver_volume_ml(float("nan")), PlanError),
        (lambda: standard_liver_volume_ml(1.9, "feng"), PlanError),
        (lambda: min_sflr("steatosis"), PlanError),
    ],
)
def test_formula_inputs_refused(call, error) -> None:
    with pytest.raises(error) as info:
        call()
    assert "\n" not in str(info.value) and ";" in str(info.value)


# ---------------------------------------------------------------------- FLR volumetry
def _box_liver() -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray]:
    """A 40×20×10 mm box liver (2 mm voxels) cut at x = 0: right half embolized, a 4×4×4 mm tumour in it."""
    grid = Grid(shape=(5, 10, 20), spacing_mm=(2.0, 2.0, 2.0), origin_mm=(-19.0, -9.0, -4.0))
    liver = np.ones(grid.shape, dtype=bool)
    right = np.zeros(grid.shape, dtype=bool)
    right[:, :, 10:] = True  # x > 0
    tumour = np.zeros(grid.shape, dtype=bool)
    tumour[1:3, 4:6, 14:16] = True
    return grid, liver, tumour, right


def test_flr_arithmetic_on_a_box_liver() -> None:
    grid, liver, tumour, right = _box_liver()
    # 1000 voxels of 8 µL = 8 mL; tumour 8 voxels = 0.064 mL; functional 7.936 mL; FLR = left half 4 mL
    flr = future_liver_remnant(liver, tumour, right, grid)
    assert flr.functional_liver_ml == pytest.approx(7.936, rel=1e-12)
    assert flr.tumour_ml == pytest.approx(0.064, rel=1e-12)
    assert flr.embolized_ml == pytest.approx(3.936, rel=1e-12)
    assert flr.flr_ml == pytest.approx(4.0, rel=1e-12)
    assert flr.flr_fraction == pytest.approx(500 / 992, rel=1e-14)
    assert flr.sflr is None and flr.ratio_used == "measured" and flr.adequate
    assert int(flr.flr_mask.sum()) == 500 and not np.any(flr.flr_mask & right)
    # with body size: sFLR = FLR / TELV; a 4 mL remnant of a 1613 mL standard liver fails every threshold
    flr = future_liver_remnant(liver, tumour, right, grid, bsa_m2=1.9, condition="cirrhosis")
    assert flr.telv_ml == pytest.approx(1613.422, rel=1e-13)
    assert flr.sflr == pytest.approx(4.0 / 1613.422, rel=1e-12)
    assert flr.ratio_used == "sflr" and flr.threshold_fraction == 0.40 and not flr.adequate
    # height/weight route gives the Mosteller BSA
    flr = future_liver_remnant(liver, None, right, grid, height_cm=175.0, weight_kg=70.0)
    assert flr.bsa_m2 == pytest.approx(math.sqrt(12250.0 / 3600.0), rel=1e-14)
    assert flr.flr_fraction == 0.5 and flr.tumour_ml == 0.0


def test_threshold_is_met_at_the_boundary_and_overridable() -> None:
    grid, liver, _, right = _box_liver()
    measured = future_liver_remnant(liver, None, right, grid, condition="normal", threshold_fraction=0.5)
    assert measured.adequate  # 50 % ≥ 50 %
    stricter = future_liver_remnant(liver, None, right, grid, threshold_fraction=0.5000001)
    assert not stricter.adequate


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"liver": "empty"}, StructureError, "empty"),
        ({"tumour": "all"}, StructureError, "tumour"),
        ({"embolized": "outside"}, StructureError, "overlap"),
        ({"bsa_m2": 19.0}, PlanError, "bsa_m2"),
        ({"bsa_m2": 1.9, "height_cm": 175.0}, PlanError, "either"),
        ({"height_cm": 175.0}, PlanError, "both"),
        ({"weight_kg": 7000.0, "height_cm": 175.0}, PlanError, "weight_kg"),
        ({"condition": "healthy"}, PlanError, "condition"),
        ({"threshold_fraction": 25.0}, PlanError, "threshold"),
    ],
)
def test_flr_bad_input(kwargs: dict, error: type, word: str) -> None:
    grid, liver, tumour, right = _box_liver()
    if kwargs.pop("liver", None):
        liver = np.zeros_like(liver)
    if kwargs.pop("tumour", None):
        tumour = np.ones_like(tumour)
    if kwargs.pop("embolized", None):
        liver = ~right
    with pytest.raises(error) as info:
        future_liver_remnant(liver, tumour, right, grid, **kwargs)
    assert word in str(info.value) and "\n" not in str(info.value)


@given(
    arrays(np.bool_, (4, 5, 6)),
    arrays(np.bool_, (4, 5, 6)),
    arrays(np.bool_, (4, 5, 6)),
    st.floats(0.3, 3.0),
)
@settings(max_examples=60, deadline=None)
def test_flr_plus_embolized_is_functional_liver(liver, tumour, embolized, spacing_mm) -> None:
    grid = Grid(shape=(4, 5, 6), spacing_mm=(spacing_mm, 1.0, 0.7))
    functional = liver & ~tumour
    if not (functional & embolized).any():
        with pytest.raises(StructureError):
            future_liver_remnant(liver, tumour, embolized, grid)
        return
    flr = future_liver_remnant(liver, tumour, embolized, grid)
    assert flr.flr_ml + flr.embolized_ml == pytest.approx(flr.functional_liver_ml, rel=1e-12)
    assert flr.functional_liver_ml + flr.tumour_ml == pytest.approx(liver.sum() * grid.voxel_volume_ml, rel=1e-12)
    assert 0.0 <= flr.flr_fraction < 1.0


# ---------------------------------------------------------------------- branch choice
def _two_lobe_liver(seed: int) -> tuple[VesselTree, np.ndarray, np.ndarray, Grid]:
    """Two 20 mm boxes joined by a 4 mm neck (1 mm voxels); portal inlet below the neck.

    Couinaud labels: left lobe 2 (y < 0) and 3, right lobe 5..8 by quadrant in (y, z); the neck is 4.
    """
    grid = Grid(shape=(20, 20, 48), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(-23.5, -9.5, -9.5))
    z, y, x = grid.axis_coordinates_mm()
    x, y, z = x[None, None, :], y[None, :, None], z[:, None, None]
    lobes = (np.abs(x) > 2) & (np.abs(x) < 23) & (np.abs(y) < 9) & (np.abs(z) < 9)
    neck = (np.abs(x) <= 2) & (np.abs(y) < 4) & (np.abs(z) < 4)
    liver = np.broadcast_to(lobes | neck, grid.shape).copy()
    labels = np.zeros(grid.shape, dtype=np.uint8)
    quadrant = (y > 0).astype(np.uint8) + 2 * (z > 0).astype(np.uint8)
    labels[...] = np.where(x > 2, 5 + quadrant, np.where(x < -2, np.where(y < 0, 2, 3), 4))
    labels[~liver] = 0
    spec = TreeSpec("portal", "portal_vein", (0.0, 0.0, -14.0), 1.5, 60, first_target_mm=(0.0, 0.0, 0.0))
    tree = generate_trees(liver, grid, [spec], seed=seed)[0]
    return tree, liver, labels, grid


@pytest.mark.parametrize("seed", [0, 1])
def test_right_pve_branch_drains_the_right_lobe(seed: int) -> None:
    tree, liver, labels, grid = _two_lobe_liver(seed)
    territories = assign_territories(tree, liver, grid)
    branch = portal_branch_for_segments(tree, territories, labels, "right")
    assert branch.segments == (5, 6, 7, 8)
    assert branch.dice >= 0.8
    right = liver & (labels >= 5)
    # Dice, precision and recall recomputed from the returned mask
    overlap = np.count_nonzero(branch.territory_mask & right)
    assert branch.dice == pytest.approx(2 * overlap / (branch.territory_mask.sum() + right.sum()), rel=1e-14)
    assert branch.precision == pytest.approx(overlap / branch.territory_mask.sum(), rel=1e-14)
    assert branch.recall == pytest.approx(overlap / right.sum(), rel=1e-14)
    assert branch.target_ml == pytest.approx(right.sum() * grid.voxel_volume_ml, rel=1e-14)
    # the chosen node is a real branch, not the trunk; its terminals all lie below it
    assert branch.node != 0 and branch.territory_ml < territories.volume_ml.sum()
    sub = tree.subtree(branch.node)
    assert sub.terminals.size == branch.terminal_indices.size
    # the FLR it leaves is the left lobe plus the neck, to within the symmetric difference (1 − Dice)(|T| + |R|)
    flr = future_liver_remnant(liver, None, branch.territory_mask, grid)
    left_ml = np.count_nonzero(liver & (labels <= 4)) * grid.voxel_volume_ml
    assert abs(flr.flr_ml - left_ml) <= (1.0 - branch.dice) * (branch.territory_ml + branch.target_ml) + 1e-9


def test_whole_liver_target_picks_the_root_and_bad_segments_are_refused() -> None:
    tree, liver, labels, grid = _two_lobe_liver(0)
    territories = assign_territories(tree, liver, grid)
    whole = portal_branch_for_segments(tree, territories, labels, [2, 3, 4, 5, 6, 7, 8])
    assert whole.dice == 1.0 and whole.node == 0 and whole.terminal_indices.size == tree.terminals.size
    with pytest.raises(StructureError, match="unknown Couinaud"):
        portal_branch_for_segments(tree, territories, labels, [5, 9])
    with pytest.raises(StructureError, match="no voxel"):
        portal_branch_for_segments(tree, territories, labels, [1, 5])  # no segment 1 in this phantom
    with pytest.raises(StructureError, match="unknown segment set"):
        portal_branch_for_segments(tree, territories, labels, "caudate")
    with pytest.raises(StructureError, match="no Couinaud"):
        portal_branch_for_segments(tree, territories, labels, [])
    other = generate_trees(liver, grid, [TreeSpec("p", "portal_vein", (0.0, 0.0, -14.0), 1.5, 20)], seed=5)[0]
    with pytest.raises(StructureError, match="not built from"):
        portal_branch_for_segments(other, territories, labels, "right")


# ---------------------------------------------------------------------- growth
def test_growth_reproduces_the_calibration_facts() -> None:
    # calibration inputs (both confirmed, yaml): first-week KGR 5.4 %/week (PMC6414468), DH ≈ 10 points at
    # 6 weeks (PMC6700017); the solve must reproduce them to round-off and match the yaml's derived values
    table = load_liver_remnant()["hypertrophy"]
    assert table["kgr_first_week_percent_per_week"]["status"] == "confirmed"
    assert table["degree_of_hypertrophy_points"]["status"] == "confirmed"
    growth = flr_growth(400.0, [0.0, 1.0, 6.0], telv_ml=1600.0)
    assert growth.kgr_percent_per_week[1] == pytest.approx(5.4, rel=1e-10)
    assert growth.dh_percent_points[2] == pytest.approx(10.0, rel=1e-10)
    kin = published_kinetics()
    model = load_liver_remnant()["regeneration_model"]
    assert kin.rate_per_week == pytest.approx(model["rate_per_week"]["value"], abs=5e-5)
    assert kin.plateau_gain_points == pytest.approx(model["plateau_gain_points"]["value"], abs=5e-3)
    # t = 0: no gain, KGR is the initial slope G·k; FLR volume is FLR₀ + DH·TELV
    assert growth.flr_ml[0] == 400.0 and growth.dh_percent_points[0] == 0.0
    assert growth.kgr_percent_per_week[0] == pytest.approx(kin.plateau_gain_points * kin.rate_per_week)
    assert growth.flr_ml[2] == pytest.approx(400.0 + 160.0, rel=1e-10)
    assert growth.sflr[2] == pytest.approx(0.35, rel=1e-10)


def test_growth_agrees_with_held_out_published_facts() -> None:
    kin = published_kinetics()
    # PMC6414468 (confirmed): KGR between the first (1 week) and second CT 1.5 ± 2 %/week; the second CT's
    # timing is not in the abstract, so check every second CT from 2 to 8 weeks (waits of up to 8 weeks)
    for t2 in np.linspace(2.0, 8.0, 13):
        later = (kin.gain_points(t2) - kin.gain_points(1.0)) / (t2 - 1.0)
        assert 1.5 - 2.0 <= later <= 1.5 + 2.0
        assert later < 5.4  # KGR falls after the first week (the paper's finding)
    # the same cohort's first-week range 5.4 ± 4 holds for the model's first-week KGR
    assert 5.4 - 4.0 <= kin.gain_points(1.0) <= 5.4 + 4.0
    # van Lienden 2013 (confirmed): mean relative FLR hypertrophy 37.9 %; the model's relative gain at six
    # weeks brackets it across the PVE candidates' sFLR₀ of 20–30 % (Shindoh: > 20 %; PMC6414468: < 30 %)
    high = flr_growth(0.20 * 1600.0, 6.0, telv_ml=1600.0).hypertrophy_fraction[0]
    low = flr_growth(0.30 * 1600.0, 6.0, telv_ml=1600.0).hypertrophy_fraction[0]
    assert low <= 0.379 <= high
    # a smaller remnant grows more in relative terms (gain in points of TELV is the same)
    assert high > low


@given(st.floats(50.0, 1500.0), st.floats(0.0, 40.0), st.floats(0.0, 40.0))
@settings(max_examples=60, deadline=None)
def test_growth_is_monotone_and_saturating(flr_ml: float, t1: float, t2: float) -> None:
    telv = 1600.0
    g = flr_growth(flr_ml, sorted([t1, t2]), telv_ml=telv)
    assert g.flr_ml[1] >= g.flr_ml[0] >= flr_ml
    kin = published_kinetics()
    assert g.dh_percent_points[1] <= kin.plateau_gain_points * (1 + 1e-12)
    assert np.all(g.kgr_percent_per_week <= kin.plateau_gain_points * kin.rate_per_week * (1 + 1e-12))
    assert np.array_equal(g.kgr_cutoff_met, g.kgr_percent_per_week >= 2.0)


def test_growth_and_kinetics_bad_input() -> None:
    with pytest.raises(PhysicsError, match="weeks"):
        flr_growth(400.0, [-1.0, 2.0], telv_ml=1600.0)
    with pytest.raises(PhysicsError, match="FLR"):
        flr_growth(0.0, 2.0, telv_ml=1600.0)
    with pytest.raises(PhysicsError, match="telv_ml"):
        flr_growth(400.0, 2.0, telv_ml=float("nan"))
    with pytest.raises(PhysicsError, match="saturating"):
        RegenerationKinetics.from_published(1.0, 10.0, 6.0)  # slower than linear
    with pytest.raises(PhysicsError, match="positive"):
        RegenerationKinetics(plateau_gain_points=-1.0, rate_per_week=0.5)
    # a custom kinetics is honoured
    slow = RegenerationKinetics(plateau_gain_points=5.0, rate_per_week=0.1)
    assert flr_growth(400.0, 10.0, telv_ml=1000.0, kinetics=slow).dh_percent_points[0] == pytest.approx(
        5.0 * (1 - math.exp(-1.0)), rel=1e-14
    )


def test_flr_growth_from_volumetry_uses_telv() -> None:
    grid, liver, _, right = _box_liver()
    flr = future_liver_remnant(liver, None, right, grid)
    g = flr.growth([6.0])  # no BSA: standardized by the functional liver (8 mL)
    assert g.flr_ml[0] == pytest.approx(4.0 + 0.10 * 8.0, rel=1e-10)
