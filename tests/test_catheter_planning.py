"""Catheter tip planning on a hand-built tree whose territories are known exactly.

The liver is a 2 mm-voxel box (k, j, i) = (4, 8, 8) split into four 4×4×4 quadrants, each fed by one terminal of a
binary tree: inlet 0 → trunk 1 → lobar 2 (left, x < 7 mm) and 3 (right) → terminals 4, 5 (under 2) and 6, 7 (under 3).
One voxel is 0.008 mL and a quadrant 64 voxels, so every volume below is an exact count × 0.008 mL.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insitu.devices.catalog import load_catalog
from insitu.errors import GridError, PlanError, RegistryError, StructureError
from insitu.grid import Grid
from insitu.planning.catheter import (
    catheter_data,
    catheter_outer_diameter_mm,
    evaluate_tips,
    french_to_mm,
    plan_catheter_tips,
    selectivity_level,
    tumour_feeders,
)
from insitu.vascular.territories import assign_territories
from insitu.vascular.tree import VesselTree

VOXEL_ML = 0.008  # (2 mm)³
QUADRANT = 64  # voxels
MICRO_2P7_MM = 0.9  # 2.7 Fr = 2.7/3 mm (definition)
CATH_4FR_MM = 4.0 / 3.0
CLEARANCE = 1.2  # passed explicitly: the tests do not depend on the yaml's design value


def hand_tree(terminal_radius_mm: float = 0.75) -> VesselTree:
    points = [
        (7, 7, 20),  # 0 inlet
        (7, 7, 10),  # 1 trunk end, first branching
        (3, 7, 6),  # 2 left lobar
        (11, 7, 6),  # 3 right lobar
        (3, 3, 3),  # 4 quadrant x<7, y<7
        (3, 11, 3),  # 5 quadrant x<7, y>7
        (11, 3, 3),  # 6 quadrant x>7, y<7
        (11, 11, 3),  # 7 quadrant x>7, y>7
    ]
    radius = [2.0, 2.0, 1.5, 1.5] + [terminal_radius_mm] * 4
    return VesselTree(points, [-1, 0, 1, 1, 2, 2, 3, 3], radius, name="hand HA", kind="hepatic_artery")


def box(ni: int = 8):
    """Grid (4, 8, ni) of 2 mm voxels at origin 0; the liver is i < 8 (x ≤ 14 mm)."""
    grid = Grid(shape=(4, 8, ni), spacing_mm=(2.0, 2.0, 2.0))
    liver = np.zeros(grid.shape, dtype=bool)
    liver[:, :, :8] = True
    return grid, liver


@pytest.fixture(scope="module")
def setup():
    grid, liver = box()
    tree = hand_tree()
    return tree, assign_territories(tree, liver, grid), liver, grid


def block(shape, k, j, i) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[k[0] : k[1], j[0] : j[1], i[0] : i[1]] = True
    return m


def test_territories_are_the_quadrants(setup):
    _, terr, _, _ = setup
    assert terr.terminal_nodes.tolist() == [4, 5, 6, 7]
    assert terr.voxel_count.tolist() == [QUADRANT] * 4
    assert np.all(terr.labels[:, :4, :4] == 0) and np.all(terr.labels[:, 4:, 4:] == 3)


def test_feeders_of_a_tumour_in_one_quadrant(setup):
    tree, terr, _, _ = setup
    tumour = block(terr.labels.shape, (1, 3), (1, 3), (1, 3))
    f = tumour_feeders(tree, terr, tumour)
    assert f.terminal_nodes.tolist() == [4] and f.tumour_voxels.tolist() == [8]
    assert f.lca_node == 4 and f.feeder_nodes.tolist() == [4]
    assert f.tumour_volume_ml[0] == pytest.approx(8 * VOXEL_ML, rel=1e-12)
    assert f.unexplained_voxels == 0


def test_feeders_of_a_tumour_across_lobes(setup):
    tree, terr, _, _ = setup
    tumour = block(terr.labels.shape, (1, 3), (1, 3), (3, 5))  # i = 3 | 4: quadrants of 4 and 6
    f = tumour_feeders(tree, terr, tumour)
    assert f.terminal_nodes.tolist() == [4, 6] and f.tumour_voxels.tolist() == [4, 4]
    assert f.supplied_fraction.tolist() == [0.5, 0.5]
    assert f.lca_node == 1 and f.feeder_nodes.tolist() == [4, 6]


def test_one_quadrant_tumour_gets_its_terminal(setup):
    tree, terr, liver, _ = setup
    tumour = block(liver.shape, (1, 3), (1, 3), (1, 3))
    plan = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, clearance_factor=CLEARANCE)
    assert plan.tip_nodes.tolist() == [4]
    assert plan.covered_fraction == 1.0 and plan.explained_fraction == 1.0
    assert plan.non_target_liver_ml == pytest.approx((QUADRANT - 8) * VOXEL_ML, rel=1e-12)
    assert plan.tip_positions_mm.tolist() == [[3.0, 5.0, 4.5]]  # mid-segment 2 → 4
    assert plan.vessel_radius_mm.tolist() == [0.75]
    assert plan.lumen_fill_fraction[0] == pytest.approx((0.45 / 0.75) ** 2, rel=1e-12)
    assert plan.selectivity == ("segmental",) and plan.generation.tolist() == [3]
    assert plan.warnings == ()


def test_straddling_lobes_one_tip_vs_two(setup):
    tree, terr, liver, _ = setup
    tumour = block(liver.shape, (1, 3), (1, 3), (3, 5))
    one = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, max_tips=1, clearance_factor=CLEARANCE)
    two = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, max_tips=2, clearance_factor=CLEARANCE)
    assert one.tip_nodes.tolist() == [1] == [tumour_feeders(tree, terr, tumour).lca_node]
    assert one.non_target_liver_ml == pytest.approx((4 * QUADRANT - 8) * VOXEL_ML, rel=1e-12)
    assert one.selectivity == ("nonselective",) and any("upstream" in w for w in one.warnings)
    assert two.tip_nodes.tolist() == [4, 6]
    assert two.non_target_liver_ml == pytest.approx((2 * QUADRANT - 8) * VOXEL_ML, rel=1e-12)
    assert one.covered_fraction == two.covered_fraction == 1.0


def test_straddling_siblings_prefers_one_tip_at_equal_cost(setup):
    tree, terr, liver, _ = setup
    tumour = block(liver.shape, (1, 3), (3, 5), (1, 3))  # j = 3 | 4: quadrants of 4 and 5, both under 2
    plan = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, max_tips=3, clearance_factor=CLEARANCE)
    assert plan.tip_nodes.tolist() == [2] and plan.selectivity == ("lobar",)
    assert plan.non_target_liver_ml == pytest.approx((2 * QUADRANT - 8) * VOXEL_ML, rel=1e-12)


def test_min_coverage_lets_a_small_part_go(setup):
    tree, terr, liver, _ = setup
    tumour = block(liver.shape, (0, 4), (0, 4), (1, 5))  # 48 voxels in quadrant 4, 16 in quadrant 6
    full = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, max_tips=1, clearance_factor=CLEARANCE)
    part = plan_catheter_tips(
        tree, terr, tumour, liver, MICRO_2P7_MM, max_tips=1, min_coverage=0.75, clearance_factor=CLEARANCE
    )
    assert full.tip_nodes.tolist() == [1] and full.covered_fraction == 1.0
    assert part.tip_nodes.tolist() == [4] and part.covered_fraction == 0.75
    assert part.non_target_liver_ml == pytest.approx((QUADRANT - 48) * VOXEL_ML, rel=1e-12)


def test_catheter_too_big_for_the_segmental_branch_stays_lobar(setup):
    tree, terr, liver, _ = setup
    tumour = block(liver.shape, (1, 3), (1, 3), (1, 3))
    # 4 Fr: outer radius 0.667 mm × 1.2 = 0.80 mm > 0.75 mm terminal radius, < 1.5 mm lobar radius
    plan = plan_catheter_tips(tree, terr, tumour, liver, CATH_4FR_MM, clearance_factor=CLEARANCE)
    micro = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, clearance_factor=CLEARANCE)
    assert plan.tip_nodes.tolist() == [2] and plan.selectivity == ("lobar",)
    assert plan.non_target_liver_ml == pytest.approx((2 * QUADRANT - 8) * VOXEL_ML, rel=1e-12)
    assert plan.non_target_liver_ml > micro.non_target_liver_ml
    assert any("cannot reach" in w and "[4]" in w for w in plan.warnings)


def test_catheter_larger_than_the_root_is_refused(setup):
    tree, terr, liver, _ = setup
    tumour = block(liver.shape, (1, 3), (1, 3), (1, 3))
    with pytest.raises(PlanError, match=r"4\.00 mm diameter.*smaller catheter"):
        plan_catheter_tips(tree, terr, tumour, liver, 14.0 / 3.0, clearance_factor=CLEARANCE)


def test_tumour_partly_outside_the_liver_is_reported_exactly():
    grid, liver = box(ni=10)
    tree = hand_tree()
    terr = assign_territories(tree, liver, grid)
    tumour = block(grid.shape, (1, 3), (1, 3), (6, 10))  # i = 6, 7 inside (quadrant 6), i = 8, 9 outside
    plan = plan_catheter_tips(tree, terr, tumour, liver, MICRO_2P7_MM, clearance_factor=CLEARANCE)
    assert plan.feeders.unexplained_voxels == 8 and plan.feeders.unexplained_fraction == 0.5
    assert plan.explained_fraction == 0.5 and plan.covered_fraction == 0.5
    assert plan.unexplained_ml == pytest.approx(8 * VOXEL_ML, rel=1e-12)
    assert plan.unexplained_outside_liver_ml == pytest.approx(8 * VOXEL_ML, rel=1e-12)
    assert plan.tip_nodes.tolist() == [6]
    assert plan.non_target_liver_ml == pytest.approx((QUADRANT - 8) * VOXEL_ML, rel=1e-12)
    (warning,) = [w for w in plan.warnings if "cannot explain" in w]
    assert "50.0 %" in warning and "extrahepatic" in warning and "30.8 %" in warning


def test_non_target_per_segment_label(setup):
    tree, terr, liver, _ = setup
    labels = np.where(np.arange(4)[:, None, None] < 2, 5, 8) * np.ones(liver.shape, dtype=np.int64)
    tumour = block(liver.shape, (1, 3), (1, 3), (1, 3))  # 4 voxels at k = 1 (label 5), 4 at k = 2 (label 8)
    plan = plan_catheter_tips(
        tree, terr, tumour, liver, MICRO_2P7_MM, clearance_factor=CLEARANCE, segment_labels=labels
    )
    assert set(plan.non_target_by_segment_ml) == {5, 8}
    assert plan.non_target_by_segment_ml[5] == pytest.approx(28 * VOXEL_ML, rel=1e-12)
    assert plan.non_target_by_segment_ml[8] == pytest.approx(28 * VOXEL_ML, rel=1e-12)
    assert sum(plan.non_target_by_segment_ml.values()) == pytest.approx(plan.non_target_liver_ml, rel=1e-12)


def test_selectivity_levels():
    tree = hand_tree(terminal_radius_mm=0.4)  # 0.8 mm diameter
    assert [selectivity_level(tree, n) for n in (0, 1, 2, 4)] == [
        "nonselective",
        "nonselective",
        "lobar",
        "subsegmental",
    ]
    assert selectivity_level(hand_tree(), 4) == "segmental"


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(tumour="empty"), StructureError, "tumour mask is empty"),
        (dict(tumour="outside"), StructureError, "outside the liver"),
        (dict(min_coverage=0.0), PlanError, r"outside \(0, 1\]"),
        (dict(min_coverage=1.5), PlanError, r"outside \(0, 1\]"),
        (dict(max_tips=0), PlanError, "max_tips"),
        (dict(catheter=-1.0), PlanError, "not positive"),
        (dict(clearance_factor=0.9), PlanError, "below 1"),
        (dict(tumour="wrong grid"), GridError, "tumour mask has shape"),
    ],
)
def test_bad_input_names_the_problem(change, error, match):
    grid, liver = box(ni=10)
    tree = hand_tree()
    terr = assign_territories(tree, liver, grid)
    tumour = block(grid.shape, (1, 3), (1, 3), (1, 3))
    if change.get("tumour") == "empty":
        tumour[:] = False
    elif change.get("tumour") == "outside":
        tumour = block(grid.shape, (1, 3), (1, 3), (8, 10))
    elif change.get("tumour") == "wrong grid":
        tumour = tumour[:, :, :8]
    kwargs = {k: v for k, v in change.items() if k in ("min_coverage", "max_tips", "clearance_factor")}
    with pytest.raises(error, match=match) as info:
        plan_catheter_tips(tree, terr, tumour, liver, change.get("catheter", MICRO_2P7_MM), **kwargs)
    assert "\n" not in str(info.value) and ";" in str(info.value)  # one line: problem; fix


def test_territories_of_another_tree_are_refused(setup):
    _, terr, liver, _ = setup
    other = VesselTree([(7, 7, 20), (3, 3, 3), (11, 11, 3)], [-1, 0, 0], [2.0, 1.0, 1.0])
    with pytest.raises(StructureError, match="do not belong"):
        tumour_feeders(other, terr, block(liver.shape, (1, 3), (1, 3), (1, 3)))


def test_catalog_catheters_follow_the_french_scale():
    catheters = [d for d in load_catalog() if d.kind.endswith("catheter")]
    assert {d.therapy for d in catheters} == {"transcatheter"} and len(catheters) == 7
    for d in catheters:
        p = d.parameters
        assert p["outer_diameter_mm"] == pytest.approx(french_to_mm(p["french"]), abs=5e-5)  # 1 Fr = 1/3 mm
        if "inner_diameter_in" in p:
            assert p["inner_diameter_mm"] == pytest.approx(25.4 * p["inner_diameter_in"], abs=5e-5)
            assert p["inner_diameter_mm"] < p["outer_diameter_mm"]
        assert d.sources
    assert catheter_outer_diameter_mm("microcatheter-2.7fr") == 0.9
    # PMID 25737453: 1.8 Fr outer, 0.017 in = 431.8 µm inner (confirmed)
    mc18 = next(d for d in catheters if d.name == "microcatheter-1.8fr").parameters
    assert mc18["inner_diameter_mm"] * 1000 == pytest.approx(431.8, abs=1e-9)
    with pytest.raises(RegistryError, match=r"microcatheter-2\.7fr"):
        catheter_outer_diameter_mm("microcatheter-2.7")
    for section in ("french", "placement_rule", "selectivity", "extrahepatic_feeders"):
        for entry in catheter_data()[section].values():
            assert {"value", "source", "status"} <= set(entry)


# ---------------------------------------------------------------------------------------------- properties
TUMOUR_BITS = st.lists(st.booleans(), min_size=4 * 8 * 8, max_size=4 * 8 * 8).filter(any)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bits=TUMOUR_BITS, node=st.integers(1, 7))
def test_moving_a_tip_upstream_never_loses_coverage(setup, bits, node):
    tree, terr, liver, _ = setup
    tumour = np.array(bits).reshape(liver.shape)
    here = evaluate_tips(tree, terr, tumour, liver, [node])
    up = evaluate_tips(tree, terr, tumour, liver, [int(tree.parent[node])])
    assert up.covered_fraction >= here.covered_fraction
    assert up.non_target_liver_ml >= here.non_target_liver_ml


def _random_tree(draw) -> VesselTree:
    n = draw(st.integers(3, 11))
    parent = [-1, 0] + [draw(st.integers(1, i - 1)) for i in range(2, n)]
    coords = st.tuples(*(st.floats(0.0, 14.0, allow_nan=False),) * 2, st.floats(0.0, 6.0, allow_nan=False))
    points = [draw(coords) for _ in range(n)]
    radius = [draw(st.sampled_from([0.3, 0.6, 1.0, 2.0])) for _ in range(n)]
    radius[0] = 2.0
    return VesselTree(points, parent, radius)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), bits=TUMOUR_BITS, max_tips=st.integers(1, 3), coverage=st.sampled_from([0.5, 0.8, 1.0]))
def test_plan_is_the_exact_optimum(data, bits, max_tips, coverage):
    """Brute force over every set of ≤ max_tips reachable nodes: none reaches the coverage with less non-target."""
    grid, liver = box()
    tree = _random_tree(data.draw)
    terr = assign_territories(tree, liver, grid)
    tumour = np.array(bits).reshape(liver.shape)
    plan = plan_catheter_tips(
        tree, terr, tumour, liver, MICRO_2P7_MM, max_tips=max_tips, min_coverage=coverage, clearance_factor=CLEARANCE
    )
    assert plan.covered_fraction >= coverage - 1e-12
    reachable = tree.radius_mm >= CLEARANCE * MICRO_2P7_MM / 2
    for n in tree.order[1:]:
        reachable[n] &= reachable[tree.parent[n]]
    best = np.inf
    for k in range(1, max_tips + 1):
        for tips in itertools.combinations(np.flatnonzero(reachable).tolist(), k):
            c = evaluate_tips(tree, terr, tumour, liver, list(tips))
            if c.covered_fraction >= coverage - 1e-12:
                best = min(best, c.non_target_liver_ml)
    assert plan.non_target_liver_ml == pytest.approx(best, abs=1e-12)
