"""Poiseuille flow networks on vessel trees, Fåhræus–Lindqvist viscosity, perfusion territories and maps."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError, StructureError
from insitu.grid import Grid
from insitu.validation.vascular_flow_cases import vascular_flow_rows
from insitu.vascular.flow import (
    ML_MIN_M3_S,
    MMHG_PA,
    apparent_viscosity_pa_s,
    load_rheology,
    relative_apparent_viscosity,
    solve_flow,
)
from insitu.vascular.territories import assign_territories, perfusion_map_per_s, perfusion_maps_per_s, tree_perfusion
from insitu.vascular.tree import VesselTree


def _random_tree(n: int, seed: int) -> VesselTree:
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
    points = rng.uniform(-20.0, 20.0, size=(n, 3))
    radius = rng.uniform(0.02, 2.0, size=n)
    return VesselTree(points_mm=points, parent=parent, radius_mm=radius)


def _box(n: int = 20, spacing: float = 1.0) -> tuple[Grid, np.ndarray]:
    grid = Grid(shape=(n, n, n), spacing_mm=(spacing,) * 3, origin_mm=(-(n - 1) * spacing / 2,) * 3)
    z, y, x = grid.axis_coordinates_mm()
    mask = (x[None, None, :] ** 2 + y[None, :, None] ** 2 + z[:, None, None] ** 2) <= (0.45 * n * spacing) ** 2
    return grid, mask


# ---------------------------------------------------------------------- viscosity
def test_pries_regression_values() -> None:
    # vascular.md §2.2: our evaluation of the formula, 1e-3 absolute
    for d, mu in ((6, 1.274), (8, 1.267), (10, 1.328), (20, 1.588), (50, 2.045), (100, 2.443), (200, 2.808)):
        assert abs(float(relative_apparent_viscosity(d, 0.45)) - mu) < 1e-3
    assert abs(float(relative_apparent_viscosity(500, 0.45)) - 3.110) < 1e-3
    assert abs(float(relative_apparent_viscosity(100, 0.30)) - 1.777) < 1e-3
    assert float(relative_apparent_viscosity(100, 0.0)) == 1.0
    # μ_rel(D, 0.45) is μ₀.₄₅ by construction; large vessels tend to 3.2
    assert abs(float(relative_apparent_viscosity(5000, 0.45)) - 3.2) < 0.01
    # whole blood in a 3 mm artery ≈ 3.8 mPa·s with 1.2 mPa·s plasma
    assert 3.6e-3 < float(apparent_viscosity_pa_s(1.5e-3)) < 4.0e-3
    assert load_rheology()["fahraeus_lindqvist"]["status"] == "unconfirmed"


@given(st.floats(5.0, 2000.0), st.floats(0.05, 0.7))
@settings(max_examples=60, deadline=None)
def test_viscosity_rises_with_haematocrit(diameter_um: float, h: float) -> None:
    low = float(relative_apparent_viscosity(diameter_um, h))
    high = float(relative_apparent_viscosity(diameter_um, min(h + 0.1, 0.95)))
    assert 1.0 < low < high


def test_bad_viscosity_inputs() -> None:
    with pytest.raises(PhysicsError, match="haematocrit"):
        relative_apparent_viscosity(10.0, 1.2)
    with pytest.raises(PhysicsError, match="diameter"):
        relative_apparent_viscosity(np.array([10.0, -1.0]), 0.45)


# ---------------------------------------------------------------------- network
def test_single_segment_case_1() -> None:
    tree = VesselTree(points_mm=[[0, 0, 0], [0, 0, 30]], parent=[-1, 0], radius_mm=[2.0, 2.0])
    sol = solve_flow(tree, inlet_flow_ml_min=300.0, outlet_pressure_mmhg=0.0, viscosity_pa_s=3.5e-3)
    assert sol.resistance_pa_s_m3[1] == pytest.approx(1.6711e7, rel=5e-5)
    assert sol.pressure_pa[0] == pytest.approx(83.556, rel=1e-5)
    assert sol.pressure_mmhg[0] == pytest.approx(0.6267, rel=1e-4)
    assert sol.flow_m3_s[1] == pytest.approx(5.0e-6, rel=1e-12)
    # wall shear 4μQ/(πr³) = 2.7852 Pa (vascular.md §8 case 2 numbers)
    assert sol.wall_shear_stress_pa()[1] == pytest.approx(2.7852, rel=1e-4)
    # the same segment driven by pressure gives the same flow back
    back = solve_flow(tree, inlet_pressure_mmhg=sol.pressure_mmhg[0], outlet_pressure_mmhg=0.0, viscosity_pa_s=3.5e-3)
    assert back.inlet_flow_ml_min == pytest.approx(300.0, rel=1e-12)


def test_terminal_resistance_in_series() -> None:
    tree = VesselTree(points_mm=[[0, 0, 0], [0, 0, 30]], parent=[-1, 0], radius_mm=[2.0, 2.0])
    r_seg = 1.6711269024649007e7
    sol = solve_flow(
        tree,
        inlet_pressure_mmhg=100.0,
        outlet_pressure_mmhg=60.0,
        terminal_resistance_pa_s_m3=3 * r_seg,
        viscosity_pa_s=3.5e-3,
    )
    assert sol.inlet_flow_m3_s == pytest.approx(40 * MMHG_PA / (4 * r_seg), rel=1e-10)
    assert sol.pressure_mmhg[1] == pytest.approx(90.0, rel=1e-12)
    assert sol.terminal_outflow_m3_s[0] == pytest.approx(sol.inlet_flow_m3_s, rel=1e-12)


def test_symmetric_tree_case_2_resistance() -> None:
    """Murray-symmetric tree, L = 10 r: each generation's parallel resistance is 8μλ/(πr₀³)."""
    r0, generations, lam, mu = 2e-3, 6, 10.0, 3.5e-3
    points, parent, radius = [[0.0, 0.0, 0.0]], [-1], [r0 * 1e3]
    frontier = [0]
    rng = np.random.default_rng(0)
    for k in range(generations):
        r = r0 * 2 ** (-k / 3)
        nxt = []
        for node in frontier:
            for _ in range(1 if k == 0 else 2):
                direction = rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                points.append(list(np.asarray(points[node]) + direction * lam * r * 1e3))
                parent.append(node)
                radius.append(r * 1e3)
                nxt.append(len(points) - 1)
        frontier = nxt
    tree = VesselTree(points_mm=points, parent=parent, radius_mm=radius)
    sol = solve_flow(tree, inlet_flow_ml_min=300.0, outlet_pressure_mmhg=0.0, viscosity_pa_s=mu)
    # generation 1 is one segment; each later one doubles the count and divides r by 2^(1/3)
    expected = sum(8 * mu * lam / (np.pi * (r0 * 2 ** (-k / 3)) ** 3) / (1 if k == 0 else 2**k) for k in range(6))
    assert sol.pressure_pa[0] / sol.inlet_flow_m3_s == pytest.approx(expected, rel=1e-10)
    assert np.allclose(sol.terminal_outflow_m3_s, sol.inlet_flow_m3_s / 2 ** (generations - 1), rtol=1e-10)


@given(st.integers(2, 300), st.integers(0, 2**31 - 1), st.booleans(), st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mass_conserved_at_every_node(n: int, seed: int, use_terminal_resistance: bool, by_flow: bool) -> None:
    tree = _random_tree(n, seed)
    rng = np.random.default_rng(seed + 1)
    n_term = tree.terminals.size
    kwargs = {
        "outlet_pressure_mmhg": rng.uniform(5.0, 60.0, size=n_term),
        "terminal_resistance_pa_s_m3": rng.uniform(1e8, 1e12, size=n_term) if use_terminal_resistance else None,
    }
    if by_flow:
        kwargs["inlet_flow_ml_min"] = 50.0
    else:
        kwargs["inlet_pressure_mmhg"] = 100.0
    sol = solve_flow(tree, **kwargs)
    assert sol.max_relative_imbalance() < 1e-11
    assert sol.terminal_outflow_m3_s.sum() == pytest.approx(sol.inlet_flow_m3_s, rel=1e-11)
    if by_flow:
        assert sol.inlet_flow_ml_min == pytest.approx(50.0, rel=1e-12)
    # with all outlets below the inlet every pressure lies between them (maximum principle)
    assert np.all(sol.pressure_mmhg <= max(100.0, sol.pressure_mmhg[0]) + 1e-9)
    assert np.all(sol.pressure_mmhg >= kwargs["outlet_pressure_mmhg"].min() - 1e-9)


def test_flows_follow_resistance_and_tree_round_trip() -> None:
    tree = _random_tree(200, 7)
    sol = solve_flow(tree, inlet_pressure_mmhg=100.0, outlet_pressure_mmhg=60.0)
    assert np.all(sol.flow_m3_s[1:] > 0.0)  # one outlet pressure: flow runs root → terminals
    seg = np.flatnonzero(tree.parent >= 0)
    dp = sol.pressure_pa[tree.parent[seg]] - sol.pressure_pa[seg]
    # pressures are stored absolute (≈ 1e4 Pa): differences carry ≈ 1e-12 Pa of round-off
    assert np.allclose(dp, sol.flow_m3_s[seg] * sol.resistance_pa_s_m3[seg], rtol=1e-12, atol=1e-9)
    with_flows = sol.tree_with_flows()
    assert with_flows.flow_unit == "ml_min"
    assert with_flows.flow[0] == pytest.approx(sol.inlet_flow_ml_min)
    with_flows.validate()
    # Fåhræus–Lindqvist lowers the resistance of thin vessels relative to bulk blood
    bulk = solve_flow(tree, inlet_pressure_mmhg=100.0, outlet_pressure_mmhg=60.0, viscosity_pa_s=3.84e-3)
    assert sol.inlet_flow_m3_s > bulk.inlet_flow_m3_s


def test_bad_network_inputs() -> None:
    tree = _random_tree(20, 1)
    with pytest.raises(PhysicsError, match="one of them"):
        solve_flow(tree, inlet_pressure_mmhg=100.0, inlet_flow_ml_min=10.0)
    with pytest.raises(PhysicsError, match="terminals"):
        solve_flow(tree, outlet_pressure_mmhg=np.array([60.0, 50.0]))
    with pytest.raises(PhysicsError, match="terminal resistance"):
        solve_flow(tree, terminal_resistance_pa_s_m3=-1.0)
    disconnected = VesselTree(
        points_mm=np.zeros((3, 3)) + np.arange(3)[:, None], parent=[-1, 2, 1], radius_mm=[1.0] * 3, flow=np.ones(3)
    )
    with pytest.raises(StructureError):
        solve_flow(disconnected)
    coincident = VesselTree(points_mm=[[0, 0, 0], [0, 0, 0]], parent=[-1, 0], radius_mm=[1.0, 1.0])
    with pytest.raises(StructureError, match="zero-length"):
        solve_flow(coincident)
    with pytest.raises(StructureError, match="no segment"):
        solve_flow(VesselTree(points_mm=[[0, 0, 0]], parent=[-1], radius_mm=[1.0]))


def test_large_tree_is_fast() -> None:
    tree = _random_tree(100_000, 3)
    _ = tree.order
    solve_flow(tree)  # warm-up
    start = time.perf_counter()
    sol = solve_flow(tree)
    elapsed = time.perf_counter() - start
    assert sol.max_relative_imbalance() < 1e-11
    assert elapsed < 2.0  # benchmark target flow_1e5_s ≤ 0.5 s; loose here (shared 2-core machine)


# ---------------------------------------------------------------------- territories and perfusion
def test_territories_by_hand() -> None:
    grid = Grid(shape=(1, 1, 10), spacing_mm=(2.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0))
    mask = np.ones(grid.shape, dtype=bool)
    mask[0, 0, 9] = False
    # root at x = 9, terminals at x = 0 and x = 17 (voxel centres at 0, 2, …, 18 mm; 2 µL each)
    tree = VesselTree(points_mm=[[9, 5, 0], [0, 0, 0], [17, 0, 0]], parent=[-1, 0, 0], radius_mm=[1.0] * 3)
    terr = assign_territories(tree, mask, grid)
    assert terr.labels[0, 0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, -1]
    assert terr.volume_ml.tolist() == pytest.approx([0.010, 0.008])
    omega = perfusion_map_per_s(terr, np.array([2e-9, 5e-9]))
    assert omega[0, 0, 0] == pytest.approx(2e-9 / 10e-9)
    assert omega[0, 0, 5] == pytest.approx(5e-9 / 8e-9)
    assert omega[0, 0, 9] == 0.0
    # a weight of 3 on terminal 0 moves the border to x/3 = 17 − x, x = 12.75 mm
    weighted = assign_territories(tree, mask, grid, weights=np.array([3.0, 1.0]))
    assert weighted.labels[0, 0].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, -1]
    assert weighted.territory_mask([1]).sum() == 2


def test_terminal_without_voxels_hands_its_flow_on() -> None:
    grid, mask = _box(10)
    # two terminals close together: the second wins nothing when it sits just behind the first
    tree = VesselTree(
        points_mm=[[0, 0, -30], [0, 0, 0], [0, 0, 0.2], [0, 0, -20]], parent=[-1, 0, 1, 1], radius_mm=[1.0] * 4
    )
    terr = assign_territories(tree, mask, grid)
    assert np.any(terr.voxel_count == 0)
    omega = perfusion_map_per_s(terr, np.array([1e-8, 2e-8]))
    assert float(omega.astype(np.float64).sum()) * 1e-9 == pytest.approx(3e-8, rel=1e-6)
    with pytest.raises(PhysicsError, match="back into the tree"):
        perfusion_map_per_s(terr, np.array([1e-8, -2e-8]))


@given(st.integers(2, 120), st.integers(0, 2**31 - 1), st.booleans())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_territories_partition_and_perfusion_integrates_to_inflow(n: int, seed: int, weighted: bool) -> None:
    grid, mask = _box(16, spacing=1.5)
    tree = _random_tree(n, seed)
    sol = solve_flow(tree, inlet_pressure_mmhg=100.0, outlet_pressure_mmhg=60.0)
    weights = sol.terminal_outflow_m3_s ** (1 / 3) if weighted else None
    terr, omega = tree_perfusion(sol, mask, grid, weights)
    # territories partition the organ exactly
    assert terr.volume_ml.sum() == pytest.approx(mask.sum() * grid.voxel_volume_ml, rel=1e-12)
    assert np.array_equal(terr.labels >= 0, mask)
    # ω·V summed over the organ is the inflow (float32 ω)
    integral_m3_s = float(np.sum(omega.astype(np.float64)) * grid.voxel_volume_ml * 1e-6)
    assert integral_m3_s == pytest.approx(sol.inlet_flow_m3_s, rel=1e-6)
    assert np.all(omega[~mask] == 0.0)


def test_arterial_and_portal_maps_on_a_cco_tree() -> None:
    from insitu.validation.vascular_flow_cases import _sphere_tree

    tree, mask, grid = _sphere_tree(n_terminals=100, seed=5)
    organ_ml = mask.sum() * grid.voxel_volume_ml
    # hepatic artery ≈ 0.21 mL/min/mL and portal ≈ 1.1 mL/min/mL (CT perfusion, vascular.md §1.1)
    arterial = solve_flow(tree, inlet_flow_ml_min=0.21 * organ_ml, outlet_pressure_mmhg=60.0)
    portal = solve_flow(tree, inlet_flow_ml_min=1.1 * organ_ml, outlet_pressure_mmhg=8.0)
    art_map, portal_map = perfusion_maps_per_s(mask, grid, arterial, portal)
    assert art_map.dtype == np.float32 and portal_map.shape == mask.shape
    mean_art = float(art_map[mask].astype(np.float64).mean())
    assert mean_art == pytest.approx(0.21 / 60.0, rel=1e-6)  # 1 mL/min/mL = 1/60 s⁻¹
    assert float(portal_map[mask].astype(np.float64).mean()) == pytest.approx(1.1 / 60.0, rel=1e-6)
    assert arterial.inlet_flow_m3_s == pytest.approx(0.21 * organ_ml * ML_MIN_M3_S)
    _, no_portal = perfusion_maps_per_s(mask, grid, arterial, None)
    assert not no_portal.any()


def test_validation_rows_pass() -> None:
    rows = vascular_flow_rows()
    assert {r.case_id for r in rows} == {"VASC-1", "VASC-3"}
    failed = [r for r in rows if not r.passed]
    assert not failed, failed
