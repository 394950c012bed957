"""Embolization on vessel trees: lodging, occlusion, Poiseuille redistribution, stasis, reflux, conservation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError, PlanError
from insitu.validation.vascular_flow_cases import _sphere_tree
from insitu.validation.vascular_particle_cases import vasc_5_rows
from insitu.vascular.embolization import (
    EmbolicAgent,
    embolic_agent,
    embolic_agent_names,
    embolize,
    load_embolics,
    particle_volume_from_settled_ml,
    stasis_endpoints,
)
from insitu.vascular.flow import ML_MIN_M3_S, MMHG_PA
from insitu.vascular.tree import VesselTree

MU = 3.5e-3  # Newtonian viscosity for closed-form checks (Pa·s)
DP = 40.0 * MMHG_PA  # 100 → 60 mmHg


def _y(r_daughters: tuple[float, float] = (0.5, 0.5)) -> VesselTree:
    """Root → trunk (node 1) → two daughters (nodes 2, 3), mirror-symmetric geometry."""
    return VesselTree(
        points_mm=[[0, 0, 0], [0, 0, 20], [8, 0, 35], [-8, 0, 35]],
        parent=[-1, 0, 1, 1],
        radius_mm=[1.5, 1.5, *r_daughters],
    )


def _two_level() -> VesselTree:
    """Root → trunk 1 → {2, 3}; 2 → {4, 5}; 3 → {6, 7}; mirror-symmetric."""
    return VesselTree(
        points_mm=[[0, 0, 0], [0, 0, 20], [6, 0, 30], [-6, 0, 30], [10, 0, 40], [4, 0, 42], [-10, 0, 40], [-4, 0, 42]],
        parent=[-1, 0, 1, 1, 2, 2, 3, 3],
        radius_mm=[0.8, 0.8, 0.45, 0.45, 0.3, 0.3, 0.3, 0.3],
    )


def _resistance(tree: VesselTree, node: int, r4_m4: float | None = None) -> float:
    r4 = (tree.radius_mm[node] * 1e-3) ** 4 if r4_m4 is None else r4_m4
    return 8.0 * MU * tree.segment_lengths_mm[node] * 1e-3 / (math.pi * r4)


def _annulus_r4(b_mm: float, a_mm: float) -> float:
    b, a = b_mm * 1e-3, a_mm * 1e-3
    return b**4 - a**4 - (b * b - a * a) ** 2 / math.log(b / a)


def _parallel(x: float, y: float) -> float:
    return x * y / (x + y)


def _tracer(d_um: float = 30.0) -> EmbolicAgent:
    return EmbolicAgent("tracer", d_um, d_um)


def _count_volume(agent: EmbolicAgent, count: float) -> float:
    return count * agent.mean_particle_volume_ml()


def _lumen_ml(tree: VesselTree, node: int) -> float:
    """Lumen volume of segment ``node`` (mL): π r² L."""
    return math.pi * tree.radius_mm[node] ** 2 * tree.segment_lengths_mm[node] * 1e-3


NEWTON = {"viscosity_pa_s": MU, "inlet_pressure_mmhg": 100.0, "outlet_pressure_mmhg": 60.0}
PACKING = 0.64  # random close packing of equal spheres, 0.64 ± 0.02 (Berryman 1983, Phys Rev A 27:1053)


# ---------------------------------------------------------------------- agents
def test_agent_table_sizes_and_sources() -> None:
    agents = load_embolics()["agents"]
    tgms = [
        (agents[k]["diameter_min_um"]["value"], agents[k]["diameter_max_um"]["value"]) for k in agents if "tgms" in k
    ]
    # Laurent 2004 (PMID 15126660) TGMS classes; Martin 2011 DC Bead classes (vascular.md §3)
    assert tgms == [(40, 120), (100, 300), (300, 500), (500, 700), (700, 900), (900, 1200)]
    dc = [
        (agents[k]["diameter_min_um"]["value"], agents[k]["diameter_max_um"]["value"]) for k in agents if "dc_bead" in k
    ]
    assert dc == [(100, 300), (300, 500), (500, 700), (700, 900)]
    for name, entry in agents.items():
        for key in ("diameter_min_um", "diameter_max_um", "distribution"):
            item = entry[key]
            assert "value" in item and item["status"] in {"confirmed", "derived", "recalled", "unconfirmed", "design"}
            assert item["status"] == "design" or item["source"] in load_embolics()["sources"], (name, key)
        assert embolic_agent(name).transport in ("particle", "fluid")
    assert set(embolic_agent_names()) == set(agents)
    for section in ("model", "endpoints", "validation"):
        for name, item in load_embolics()[section].items():
            assert item["status"] == "design" or item["source"] in load_embolics()["sources"], (section, name)


def test_drug_loading_shrinks_dc_bead_by_twenty_percent() -> None:
    # de Baere 2016 (PMID 27402527): DC Bead mean diameter −20 % after doxorubicin loading
    loaded = embolic_agent("dc_bead_300_500", drug_loaded=True)
    assert loaded.diameter_min_um == pytest.approx(240.0, rel=1e-12)
    assert loaded.diameter_max_um == pytest.approx(400.0, rel=1e-12)
    with pytest.raises(PlanError, match="no drug-loading shrink"):
        embolic_agent("tgms_300_500", drug_loaded=True)


def test_size_bins() -> None:
    d, w = EmbolicAgent("u", 100.0, 300.0, distribution="uniform").size_bins(4)
    np.testing.assert_allclose(d, [125.0, 175.0, 225.0, 275.0], rtol=1e-14)
    np.testing.assert_allclose(w, 0.25)
    d, w = embolic_agent("tgms_300_500").size_bins(9)
    assert np.all((d > 300.0) & (d < 500.0)) and np.all(np.diff(d) > 0.0)
    np.testing.assert_allclose(d + d[::-1], 800.0, rtol=1e-12)  # symmetric about the class centre
    assert d[4] == pytest.approx(400.0, rel=1e-12) and w.sum() == pytest.approx(1.0, rel=1e-15)
    mono = _tracer(250.0)
    assert mono.mean_particle_volume_ml() == pytest.approx(math.pi / 6.0 * 250.0**3 * 1e-12, rel=1e-14)
    assert particle_volume_from_settled_ml(2.0) == pytest.approx(1.28, rel=1e-12)


def test_endpoint_table_is_ordered() -> None:
    e = stasis_endpoints()
    assert e["complete_stasis"] < e["near_stasis"] < e["sub_stasis"] < e["partial_stasis"] < 1.0
    assert e["sub_stasis"] == pytest.approx(1.0 - 0.763, abs=1e-12)  # qDSA sub-stasis velocity reduction 76.3 %


# ---------------------------------------------------------------------- transport, lodging, occlusion
def test_symmetric_y_splits_particles_fifty_fifty() -> None:
    tree, agent = _y(), _tracer()
    res = embolize(tree, 1, 0.4, agent, _count_volume(agent, 1000.0), 1.0, **NEWTON)
    assert res.lodged_count[2] == pytest.approx(500.0, rel=1e-12)
    assert res.lodged_count[3] == pytest.approx(500.0, rel=1e-12)
    np.testing.assert_allclose(res.terminal_share(), [0.5, 0.5], rtol=1e-12)
    assert not res.occluded.any() and res.refluxed_count == 0.0 and res.escaped_count == 0.0
    np.testing.assert_allclose(res.flow_factor, 1.0, rtol=1e-12)


def test_narrow_branch_is_plugged_at_its_entrance_and_flow_goes_to_the_sibling() -> None:
    # daughter 3 (lumen 200 µm) is narrower than the 400 µm spheres; daughter 2 (2 mm) lets them pass to its bed
    tree = VesselTree(
        points_mm=[[0, 0, 0], [0, 0, 20], [8, 0, 35], [-8, 0, 35], [-12, 0, 45], [-5, 0, 46]],
        parent=[-1, 0, 1, 1, 3, 3],
        radius_mm=[1.5, 1.5, 1.0, 0.1, 0.08, 0.08],
    )
    r_t = 1e11  # terminal beds (Pa·s/m³)
    agent = _tracer(400.0)
    res = embolize(tree, 1, 0.4, agent, _count_volume(agent, 30.0), 0.5, terminal_resistance_pa_s_m3=r_t, **NEWTON)
    assert res.lodged_count[3] == pytest.approx(1.0, abs=1e-9)  # one sphere per occluded vessel (Laurent 2004)
    assert res.occluded[3] and not res.occluded[2] and res.refluxed_count == 0.0
    assert res.lodged_count[4] == 0.0 and res.lodged_count[5] == 0.0  # nothing passes the plug
    assert res.lodged_count[2] == pytest.approx(29.0, rel=1e-12)  # the rest, below the bed's (2000/400)³ capacity
    terminals = list(res.terminal_nodes)
    # before: R1 + (R2 + Rt) ∥ (R3 + (R4 + Rt) ∥ (R5 + Rt)); after: R1 + R2 + Rt (Poiseuille, catheter withdrawn)
    r = [_resistance(tree, n) for n in range(6)]
    r_sub = r[3] + _parallel(r[4] + r_t, r[5] + r_t)
    q_before = DP / (r[1] + _parallel(r[2] + r_t, r_sub))
    p1 = DP - q_before * r[1]
    assert res.terminal_flow_before_ml_min[terminals.index(2)] == pytest.approx(
        p1 / (r[2] + r_t) / ML_MIN_M3_S, rel=1e-10
    )
    q_after = DP / (r[1] + r[2] + r_t)
    assert res.terminal_flow_after_ml_min[terminals.index(2)] == pytest.approx(q_after / ML_MIN_M3_S, rel=1e-10)
    assert res.flow_factor[terminals.index(4)] == 0.0 and res.flow_factor[terminals.index(5)] == 0.0
    assert res.final_flow_m3_s[3] == 0.0 and res.max_relative_imbalance < 1e-12


def test_stasis_when_both_beds_are_full_and_their_lumens_are_cast() -> None:
    # 250 µm spheres in 1 mm terminals: each bed holds (1000/250)³ = 64 spheres (Murray bed, one per vessel); then the
    # stagnant daughter lumens fill at random close packing (0.64) before the flow stops; the trunk holds the catheter
    tree, agent = _y(), _tracer(250.0)
    res = embolize(tree, 1, 0.4, agent, 1.0, 1.0, **NEWTON)
    sphere_ml = math.pi / 6.0 * 250.0**3 * 1e-12
    cast_ml = PACKING * (_lumen_ml(tree, 2) + _lumen_ml(tree, 3))
    assert res.stasis_reached and res.cast_fill_fraction == PACKING
    assert res.volume_at_stasis_ml == pytest.approx(128.0 * sphere_ml + cast_ml, rel=1e-12)
    assert res.injected_volume_ml == pytest.approx(128.0 * sphere_ml + cast_ml, rel=1e-12)
    assert res.target_volume_ml == pytest.approx(128.0 * sphere_ml + cast_ml, rel=1e-12)
    assert res.plug_volume_ml == pytest.approx(128.0 * sphere_ml, rel=1e-10)
    np.testing.assert_allclose(res.cast_volume_ml, [0.0, 0.0, cast_ml / 2.0, cast_ml / 2.0], rtol=1e-12, atol=0.0)
    assert res.occluded[2] and res.occluded[3]
    np.testing.assert_array_equal(res.flow_factor, 0.0)
    assert res.history_tip_flow_fraction[-1] == 0.0 and res.n_resolves == 1
    # with no endpoint the rest is injected into a stopped bed: it all refluxes and leaves through the inlet
    res = embolize(tree, 1, 0.4, agent, 256.0 * sphere_ml + cast_ml, 1.0, endpoint=None, **NEWTON)
    assert not res.stasis_reached
    assert res.refluxed_count == pytest.approx(128.0, rel=1e-12)
    assert res.escaped_count == pytest.approx(128.0, rel=1e-12)
    # without the cast only the plugs count (the model before the cast was added)
    res = embolize(tree, 1, 0.4, agent, 1.0, 1.0, cast_fill_fraction=0.0, **NEWTON)
    assert res.volume_at_stasis_ml == pytest.approx(128.0 * sphere_ml, rel=1e-12)
    assert not res.cast_volume_ml.any()


def test_plugged_bed_keeps_its_flow_share_while_its_lumen_fills() -> None:
    # daughters 1 mm and 0.8 mm: the beds plug after 64 and 32.768 spheres of 250 µm; their casts need ~1000 and
    # ~670 more, so after 500 spheres both are plugged, both casts are filling and the split is still the flow split
    tree, agent = _y((0.5, 0.4)), _tracer(250.0)
    sphere_ml = math.pi / 6.0 * 250.0**3 * 1e-12
    res = embolize(tree, 1, 0.4, agent, 500.0 * sphere_ml, 1.0, **NEWTON)
    share = res.terminal_flow_before_ml_min / res.terminal_flow_before_ml_min.sum()
    np.testing.assert_allclose(res.lodged_count[[2, 3]], 500.0 * share, rtol=1e-12)
    plugs = np.array([64.0, (800.0 / 250.0) ** 3]) * sphere_ml
    np.testing.assert_allclose(res.cast_volume_ml[[2, 3]], 500.0 * sphere_ml * share - plugs, rtol=1e-10)
    assert np.all(res.cast_volume_ml[[2, 3]] < PACKING * np.array([_lumen_ml(tree, 2), _lumen_ml(tree, 3)]))
    assert not res.occluded.any() and res.n_resolves == 0 and not res.stasis_reached


def test_volume_to_complete_stasis_is_plugs_plus_packed_lumen() -> None:
    # tip at node 1 (the catheter fills the trunk). 300 µm spheres: segments 3 (200 µm) and 7 (240 µm) are plugged at
    # their entrance by one sphere each (Laurent 2004 median); beds 4 (1 mm) and 6 (600 µm) hold (D/d)³ spheres;
    # segments 2, 4, 5, 6 are the ones the spheres enter, and they end up packed at the cast fill fraction
    tree = VesselTree(
        points_mm=[[0, 0, 0], [0, 0, 20], [6, 0, 30], [-6, 0, 30], [10, 0, 40], [3, 0, 42], [6, 0, 50], [0, 0, 52]],
        parent=[-1, 0, 1, 1, 2, 2, 5, 5],
        radius_mm=[1.5, 1.5, 0.6, 0.1, 0.5, 0.45, 0.3, 0.12],
    )
    d_um = 300.0
    sphere_ml = math.pi / 6.0 * d_um**3 * 1e-12
    plugs_ml = (1.0 + (1000.0 / d_um) ** 3 + (600.0 / d_um) ** 3 + 1.0) * sphere_ml
    lumen_ml = sum(_lumen_ml(tree, m) for m in (2, 4, 5, 6))
    for fraction in (None, 0.3, 0.0):
        res = embolize(tree, 1, 0.4, _tracer(d_um), 1.0, 0.01, cast_fill_fraction=fraction, **NEWTON)
        packing = PACKING if fraction is None else fraction
        assert res.stasis_reached and res.refluxed_count == 0.0 and res.escaped_count == 0.0
        assert res.volume_at_stasis_ml == pytest.approx(plugs_ml + packing * lumen_ml, rel=1e-12)
        assert res.cast_volume_ml.sum() == pytest.approx(packing * lumen_ml, rel=1e-12, abs=1e-18)
        assert res.cast_volume_ml[[0, 1, 3, 7]].sum() == 0.0  # catheter segment, and behind the entrance plugs
        assert res.lodged_volume_ml.sum() == pytest.approx(res.injected_volume_ml, rel=1e-12)
        np.testing.assert_array_equal(res.occluded, [False, False, False, True, True, False, True, True])
    # Lipiodol passes everything: it fills every bed and every lumen below the tip (fill fraction 1)
    fill = embolic_agent("lipiodol").bed_fill_fraction
    tissue_ml = np.array([0.2, 0.5, 0.3, 0.1])  # terminals 3, 4, 6, 7
    res = embolize(tree, 1, 0.4, "lipiodol", 5.0, 1e-4, terminal_tissue_volume_ml=tissue_ml, **NEWTON)
    all_lumen_ml = sum(_lumen_ml(tree, m) for m in range(2, 8))
    assert res.stasis_reached and res.refluxed_count == 0.0
    assert res.volume_at_stasis_ml == pytest.approx(fill * tissue_ml.sum() + all_lumen_ml, rel=1e-12)


def test_endpoints_stop_in_order_and_flow_falls_monotonically() -> None:
    tree = VesselTree(
        points_mm=[[0, 0, 0], [0, 0, 20], [6, 0, 30], [-6, 0, 30], [10, 0, 42], [3, 0, 41], [-10, 0, 40], [-3, 0, 44]],
        parent=[-1, 0, 1, 1, 2, 2, 3, 3],
        radius_mm=[1.2, 1.2, 0.8, 0.7, 0.55, 0.45, 0.5, 0.35],
    )
    agent = embolic_agent("tgms_100_300")
    volumes = []
    for name in ("partial_stasis", "sub_stasis", "near_stasis", "complete_stasis"):
        res = embolize(tree, 1, 0.4, agent, 1.0, 0.5, endpoint=name, **NEWTON)
        assert res.stasis_reached and res.history_tip_flow_fraction[-1] <= stasis_endpoints()[name]
        assert np.all(np.diff(res.history_tip_flow_fraction) <= 1e-15)  # Rayleigh monotonicity, no reflux here
        assert res.refluxed_count == 0.0
        volumes.append(res.volume_at_stasis_ml)
    assert volumes == sorted(volumes) and volumes[0] < volumes[-1]


def test_lipiodol_fills_each_bed_by_volume_and_then_the_lumen() -> None:
    # equal flows; beds of 1 and 3 mL tissue × 0.13 fillable, then each daughter's lumen (oil fills it: fraction 1)
    tree = _y((0.02, 0.02))  # 40 µm daughters: the oil deforms through them (no droplet size plays a part)
    agent = embolic_agent("lipiodol")
    fill, lumen = agent.bed_fill_fraction, _lumen_ml(tree, 2)
    assert agent.cast_fill_fraction == 1.0
    res = embolize(tree, 1, 0.4, agent, 5.0, 1e-6, terminal_tissue_volume_ml=[1.0, 3.0], **NEWTON)
    assert res.refluxed_count == 0.0
    assert res.stasis_reached
    assert res.volume_at_stasis_ml == pytest.approx(4.0 * fill + 2.0 * lumen, rel=1e-12)
    np.testing.assert_allclose(res.lodged_volume_ml[[2, 3]], [fill + lumen, 3.0 * fill + lumen], rtol=1e-12)
    np.testing.assert_allclose(res.cast_volume_ml[[2, 3]], lumen, rtol=1e-12)


# ---------------------------------------------------------------------- reflux
def _reflux_threshold(tree: VesselTree, a_mm: float) -> tuple[float, float]:
    """(antegrade flow in segment 2 with the catheter in place, share α of an injection at node 2 that goes up)."""
    r1c = _resistance(tree, 1, _annulus_r4(tree.radius_mm[1], a_mm))
    r2c = _resistance(tree, 2, _annulus_r4(tree.radius_mm[2], a_mm))
    r45 = _parallel(_resistance(tree, 4), _resistance(tree, 5))
    r3_67 = _resistance(tree, 3) + _parallel(_resistance(tree, 6), _resistance(tree, 7))
    q_total = DP / (r1c + _parallel(r2c + r45, r3_67))
    q2 = (DP - q_total * r1c) / (r2c + r45)
    y2 = 1.0 / (r2c + 1.0 / (1.0 / r1c + 1.0 / r3_67))  # root held: upstream conductance seen from node 2
    return q2, y2 / (y2 + 1.0 / r45)


def test_reflux_only_above_the_bed_capacity_and_into_the_sibling() -> None:
    tree, a = _two_level(), 0.33
    q2, alpha = _reflux_threshold(tree, a)
    threshold_ml_min = q2 / alpha / ML_MIN_M3_S
    agent = _tracer()
    volume = _count_volume(agent, 100.0)
    below = embolize(tree, 2, a, agent, volume, 0.9 * threshold_ml_min, **NEWTON)
    assert below.refluxed_count == 0.0 and below.nontarget_volume_ml.sum() == 0.0
    assert below.lodged_count[[4, 5]].sum() == pytest.approx(100.0, rel=1e-12)
    rate = 3.0 * threshold_ml_min
    above = embolize(tree, 2, a, agent, volume, rate, **NEWTON)
    q = rate * ML_MIN_M3_S
    assert above.refluxed_fraction == pytest.approx((alpha * q - q2) / q, rel=1e-9)
    sibling = above.lodged_count[[6, 7]].sum()
    assert sibling == pytest.approx(above.refluxed_count, rel=1e-12) and above.escaped_count == 0.0
    terminals = list(above.terminal_nodes)
    nontarget = above.nontarget_volume_ml[[terminals.index(6), terminals.index(7)]]
    np.testing.assert_allclose(nontarget, above.lodged_volume_ml[[6, 7]], rtol=1e-12)
    assert above.nontarget_volume_ml[[terminals.index(4), terminals.index(5)]].sum() == 0.0


def test_reflux_past_a_lone_trunk_leaves_the_tree() -> None:
    # catheter in the trunk: the root has no other branch, so refluxed embolic leaves through the inlet
    tree, agent = _two_level(), _tracer()
    res = embolize(tree, 1, 0.5, agent, _count_volume(agent, 100.0), 5000.0, **NEWTON)
    assert res.refluxed_count > 0.0
    assert res.escaped_count == pytest.approx(res.refluxed_count, rel=1e-12)


# ---------------------------------------------------------------------- conservation
def _check_conservation(res, monte_carlo: bool = False) -> None:
    injected = res.injected_count
    assert res.lodged_count.sum() + res.escaped_count == pytest.approx(injected, rel=1e-12, abs=1e-9)
    outside = res.lodged_count[~res.in_target].sum()
    assert res.refluxed_count == pytest.approx(outside + res.escaped_count, rel=1e-9, abs=1e-9)
    volume_outside = res.lodged_volume_ml[~res.in_target].sum()
    assert res.nontarget_volume_ml.sum() == pytest.approx(volume_outside, rel=1e-9, abs=1e-15)
    assert res.max_relative_imbalance < 1e-12
    assert np.all(res.final_flow_m3_s[1:][res.occluded[1:]] == 0.0)
    assert np.all(res.flow_factor >= 0.0) and np.all(res.lodged_count >= 0.0)
    # the casts are part of what lodged, lie only below the catheter's segments, and never overfill a lumen
    assert np.all(res.cast_volume_ml <= res.lodged_volume_ml * (1.0 + 1e-12) + 1e-300)
    path, m = [], res.catheter_node
    while m != 0:
        path.append(m)
        m = int(res.tree.parent[m])
    assert not res.cast_volume_ml[[0, *path]].any()
    if not monte_carlo:  # deterministic: events land exactly on full
        lumen = np.array([0.0] + [_lumen_ml(res.tree, n) for n in range(1, res.tree.n_nodes)])
        assert np.all(res.cast_volume_ml <= res.cast_fill_fraction * lumen * (1.0 + 1e-9))


def test_conservation_on_a_cco_tree_with_reflux() -> None:
    tree, _, _ = _sphere_tree(24, seed=3)
    lobe = int(tree.children(tree.children(0)[0])[0])
    res = embolize(tree, lobe, 0.3, "tgms_300_500", 0.2, 40.0, endpoint=None)  # stasis at ~0.18 mL, then reflux
    assert res.occluded.sum() > 5 and res.refluxed_count > 0.0 and res.n_resolves > 5
    _check_conservation(res)


@given(
    n=st.integers(3, 14),
    seed=st.integers(0, 10_000),
    size=st.floats(0.05, 0.95),
    rate=st.floats(0.1, 500.0),
    count=st.floats(1.0, 400.0),
    mc=st.booleans(),
    flow_inlet=st.booleans(),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_particles_are_conserved_on_random_trees(
    n: int, seed: int, size: float, rate: float, count: float, mc: bool, flow_inlet: bool
) -> None:
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
    tree = VesselTree(
        points_mm=rng.uniform(-20.0, 20.0, size=(n, 3)), parent=parent, radius_mm=rng.uniform(0.1, 1.0, size=n)
    )
    tip = int(rng.integers(0, n))
    path = [tip]
    while path[-1] != 0:
        path.append(int(parent[path[-1]]))
    outer = 0.5 * float(tree.radius_mm[path].min())
    lumen_um = 2000.0 * tree.radius_mm[tip]
    agent = EmbolicAgent("random", 0.5 * size * lumen_um, size * lumen_um, distribution="uniform")
    inlet = {"inlet_flow_ml_min": 50.0} if flow_inlet else {}
    volume = _count_volume(agent, count)
    res = embolize(tree, tip, outer, agent, volume, rate, endpoint=None, rng=seed if mc else None, **inlet)
    _check_conservation(res, monte_carlo=mc)
    if flow_inlet:
        assert res.escaped_count == 0.0  # a flow-driven inlet takes nothing back
    if mc:
        assert float(res.injected_count).is_integer()


def test_monte_carlo_is_seeded_and_follows_the_expected_split() -> None:
    tree, agent = _y(), _tracer()
    volume = _count_volume(agent, 2000.0)
    one = embolize(tree, 1, 0.4, agent, volume, 1.0, rng=11, **NEWTON)
    two = embolize(tree, 1, 0.4, agent, volume, 1.0, rng=11, **NEWTON)
    np.testing.assert_array_equal(one.lodged_count, two.lodged_count)
    assert one.lodged_count[2] + one.lodged_count[3] == 2000.0
    assert abs(one.lodged_count[2] - 1000.0) < 5.0 * math.sqrt(2000.0 * 0.25)  # binomial, 5 σ


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_errors() -> None:
    tree, agent = _y(), _tracer()
    with pytest.raises(PlanError, match="catheter node 9 is not in vessel tree"):
        embolize(tree, 9, 0.4, agent, 0.1, 1.0)
    with pytest.raises(PlanError, match="catheter node -1 is not in vessel tree"):
        embolize(tree, -1, 0.4, agent, 0.1, 1.0)
    with pytest.raises(PlanError, match=r"up to 1200 µm are larger than the 1000 µm lumen at the catheter tip"):
        embolize(tree, 2, 0.2, "tgms_900_1200", 0.1, 1.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(PhysicsError, match="embolic volume"):
            embolize(tree, 1, 0.4, agent, bad, 1.0)
        with pytest.raises(PhysicsError, match="injection rate"):
            embolize(tree, 1, 0.4, agent, 0.1, bad)
    with pytest.raises(PhysicsError, match="injection rate"):
        embolize(tree, 1, 0.4, agent, 0.1, 0.0)
    with pytest.raises(PlanError, match="did you mean dc_bead_300_500"):
        embolize(tree, 1, 0.4, "dc_bead_300_50", 0.1, 1.0)
    with pytest.raises(PlanError, match="does not fit"):
        embolize(tree, 2, 0.6, agent, 0.1, 1.0)
    with pytest.raises(PlanError, match="did you mean near_stasis"):
        embolize(tree, 1, 0.4, agent, 0.1, 1.0, endpoint="near stasys")
    with pytest.raises(PlanError, match="endpoint fraction"):
        embolize(tree, 1, 0.4, agent, 0.1, 1.0, endpoint=1.5)
    for err in (PlanError, PhysicsError):
        try:
            embolize(tree, 9 if err is PlanError else 1, 0.4, agent, 0.1 if err is PlanError else -1.0, 1.0)
        except err as exc:
            assert "\n" not in str(exc) and ";" in str(exc)


# ---------------------------------------------------------------------- validation case
def test_vasc_5_rows_pass() -> None:
    rows = vasc_5_rows()
    assert len(rows) == 4 and all(r.case_id == "VASC-5" for r in rows)
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    assert "Bomberna" in rows[0].source and "Taebi" in rows[-1].source
