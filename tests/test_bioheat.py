"""Pennes bioheat solver: verification against closed forms, conservation, boundaries, bad input.

Coarse grids (three levels each) keep the file well under 90 s on 2 cores; ``make validate`` runs the
same cases at full resolution through ``bioheat_verification.verification_cases``.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from insitu.errors import PhysicsError
from insitu.physics import bioheat_verification as bv
from insitu.physics.bioheat import (
    BioheatSolver,
    PhaseChange,
    RobinBoundary,
    ThermalMedium,
    VesselBoundary,
)
from insitu.progress import Recorder

K, RHO, C = bv.LIVER_K, bv.LIVER_RHO, bv.LIVER_C


def _uniform(shape=(8, 9, 10), h=1e-3, perfusion=0.0, **kw) -> ThermalMedium:
    return ThermalMedium.uniform(shape, h, K, RHO, C, perfusion, **kw)


# ----------------------------------------------------------------------------------- verification
@pytest.mark.parametrize("w", [bv.V1_W, 0.0])
def test_v1_steady_point_source_second_order(w):
    res = bv.case_point_source((1.0, 0.5, 0.25), perfusion_w_m3k=w)
    for r, ref in ((5.0, 82.1 if w else 306.0), (10.0, 11.0 if w else 153.0)):
        d = res[f"theta_{r:g}mm"]
        assert d["exact"] == pytest.approx(ref, rel=2e-3)  # the closed form reproduces thermal.md's numbers
        assert d["rel_error_finest"] < 0.005
        assert min(d["orders"]) > 1.7, d


@pytest.mark.parametrize("w", [0.0, bv.V1_W])
def test_v2_transient_green_function(w):
    res = bv.case_green(
        (1.0, 0.5, 0.25),
        perfusion_w_m3k=w,
        t0_s=10.0,
        t1_s=40.0,
        half_width_mm=16.0,
        dt_study_spacing_mm=0.5 if w == 0.0 else None,
    )
    for p in (0.0, 3.0):
        d = res[f"theta_{p:g}mm"]
        assert d["rel_error_finest"] < 0.01
        assert min(d["orders"]) > 1.7, d
    if w == 0.0:
        assert 0.8 < res["dt_order"] < 1.2  # forward Euler


def test_heated_sphere_second_order():
    res = bv.case_heated_sphere((1.0, 0.5, 0.25))
    assert res["theta_0mm"]["rel_error_finest"] < 1e-3
    assert res["theta_6mm"]["rel_error_finest"] < 0.01
    assert min(res["theta_6mm"]["orders"]) > 1.7


def test_hifu6_gaussian_source_heating():
    for t, ref in bv.HIFU6["reference_K"].items():
        assert bv.gaussian_source_exact(t) == pytest.approx(ref, rel=1e-3)
    res = bv.case_gaussian_source((0.4, 0.2, 0.1))
    for t in (0.1, 1.0, 3.0, 10.0):
        d = res[f"dT_{t:g}s"]
        assert d["rel_error_finest"] < 0.01, (t, d)
        assert abs(d["simulated"][-1] - d["reference"]) / d["reference"] < 0.01
    for t in (1.0, 3.0, 10.0):
        assert min(res[f"dT_{t:g}s"]["orders"]) > 1.7


# ----------------------------------------------------------------------------------- conservation
def test_energy_conservation_insulated_box():
    plain = bv.case_energy()
    assert plain["rel_error"] < 1e-5
    assert plain["max_rise_K"] > 1.0
    comp = bv.case_energy(compensated=True)
    assert comp["rel_error"] < 1e-7


def test_temperature_dependent_conductivity_kirchhoff_slab():
    res = bv.case_conductivity_slab()
    assert res["max_error_K"] < 5e-3
    assert abs(res["midpoint"] - res["midpoint_constant_k"]) > 1.0  # the k(T) law really acts
    assert res["refreshes"] > 1


def test_temperature_dependent_heat_capacity_conserves_enthalpy():
    res = bv.case_heat_capacity_energy()
    assert res["rel_error"] < 1e-3
    assert res["rel_error_if_c_constant"] > 3e-3


# ----------------------------------------------------------------------------------- boundaries
@pytest.mark.parametrize("use_mask", [False, True])
def test_robin_slab_linear_profile(use_mask):
    res = bv.case_robin_slab(use_mask=use_mask)
    assert res["steady_max_error_K"] < 1e-5
    assert res["explicit_max_error_K"] < 2e-3


def test_vessel_wall_exchange():
    res = bv.case_vessel_slab()
    assert res["wall_h_w_m2k"] == pytest.approx(4.36 * 0.52 / 4e-3)
    assert res["vessel_temperature"] == 37.0
    assert res["simulated_flux_w_m2"] == pytest.approx(res["wall_flux_w_m2"], rel=1e-3)
    assert res["max_error_K"] < 2e-3


def test_dirichlet_perfused_slab_order_and_held_values():
    res = bv.case_dirichlet_perfused_slab()
    assert min(res["orders"]) > 1.9
    med = _uniform((6, 6, 6), perfusion=0.01)
    mask = np.zeros(med.shape, bool)
    mask[2:4, 2:4, 2:4] = True
    solver = BioheatSolver(med, dirichlet_mask=mask, dirichlet_temperature_c=-40.0)
    T = np.full(med.shape, 37.0, np.float32)
    run = solver.advance(T, 20.0)
    assert np.all(T[mask] == -40.0)  # written at the start and held exactly
    assert T[~mask].min() < 37.0 and T[~mask].max() <= 37.0
    assert np.all(run.peak_temperature_c[~mask] == 37.0)


def test_stable_step_matches_the_analytic_bound():
    h = (1e-3, 0.5e-3, 2e-3)
    w = bv.V1_W
    med = ThermalMedium.uniform((6, 7, 8), h, K, RHO, C, w / bv.BLOOD_RHO_C)
    interior = RHO * C / (K * sum(2 / s**2 for s in h) + w)
    solver = BioheatSolver(med)
    assert solver.stability_bound_s == pytest.approx(interior, rel=1e-5)
    assert solver.stable_time_step_s() == pytest.approx(0.9 * interior, rel=1e-5)
    # a Robin face adds its conductance to the boundary voxels' diagonal
    hr = 1e4
    robin = BioheatSolver(med, robin=RobinBoundary(hr, 20.0, box_faces=("i-",)))
    edge = RHO * C / (K * sum(2 / s**2 for s in h) - K / h[2] ** 2 + 1 / (h[2] * (h[2] / (2 * K) + 1 / hr)) + w)
    assert robin.stability_bound_s == pytest.approx(min(interior, edge), rel=1e-5)
    # temperature-dependent k and c: the worst case inside the range
    tdep = ThermalMedium.uniform(
        (6, 7, 8), h, K, RHO, C, 0.0, conductivity_coeff_1_k=0.005, specific_heat_coeff_1_k=-0.002
    )
    worst = RHO * C * (1 - 0.002 * 63) / (K * (1 + 0.005 * 63) * sum(2 / s**2 for s in h))
    assert BioheatSolver(tdep).stability_bound_s == pytest.approx(worst, rel=1e-5)


def test_at_the_stable_step_a_checkerboard_decays():
    med = _uniform((10, 10, 10), perfusion=0.01)
    solver = BioheatSolver(med, safety=1.0)
    kk, jj, ii = np.indices(med.shape)
    T = (37.0 + 5.0 * (-1.0) ** (kk + jj + ii)).astype(np.float32)
    solver.advance(T, 50 * solver.stable_time_step_s())
    assert np.all(np.isfinite(T)) and np.ptp(T) < 10.0


# ----------------------------------------------------------------------------------- the run loop
class _Damage:
    def __init__(self, shape):
        self.calls = 0
        self.time = 0.0
        self.factor = np.zeros(shape, np.float32)

    def update(self, temperature_c, dt_s):
        self.calls += 1
        self.time += dt_s

    def perfusion_factor(self):
        return self.factor


def test_advance_snapshots_peak_progress_and_damage_hook():
    med = _uniform((8, 8, 8), perfusion=0.01)
    solver = BioheatSolver(med)
    q = np.zeros(med.shape, np.float32)
    q[3:5, 3:5, 3:5] = 5e6
    rec = Recorder()
    damage = _Damage(med.shape)
    seen = []
    T = np.full(med.shape, 37.0, np.float32)
    dt = solver.stable_time_step_s()
    run = solver.advance(
        T,
        30.0,
        dt_s=dt,
        source_w_m3=q,
        damage=damage,
        step_callback=lambda t, _T: seen.append(t),
        snapshot_times_s=(0.0, 7.3, 30.0),
        progress=rec,
    )
    assert run.time_s == 30.0 and damage.calls == run.steps == len(seen)
    assert damage.time == pytest.approx(30.0)
    assert seen[-1] == pytest.approx(30.0) and any(abs(t - 7.3) < 1e-9 for t in seen)
    assert np.all(run.snapshots[0.0] == 37.0)
    assert np.array_equal(run.snapshots[30.0], T)
    assert np.all(run.peak_temperature_c >= T) and run.peak_temperature_c.max() == T.max()
    assert run.source_energy_j == pytest.approx(float(q.sum()) * 1e-9 * 30.0, rel=1e-6)
    assert rec.stages() == ["bioheat"] and rec.events[-1][1] == 1.0
    # the damage accumulator's factor (all zero: dead tissue) switched perfusion off
    T2 = np.full(med.shape, 37.0, np.float32)
    BioheatSolver(_uniform((8, 8, 8), perfusion=0.0)).advance(T2, 30.0, dt_s=dt, source_w_m3=q, snapshot_times_s=(7.3,))
    np.testing.assert_array_equal(T, T2)


def test_callable_source_interval_and_step_equals_advance():
    med = _uniform((6, 6, 6), perfusion=0.005)
    calls = []

    def source(t, T):
        calls.append(t)
        return np.full(T.shape, 1e5 * (1 + t), np.float32)

    solver = BioheatSolver(med)
    dt = solver.stable_time_step_s()
    T = np.full(med.shape, 37.0, np.float32)
    solver.advance(T, 10 * dt, source_w_m3=source, source_interval_s=2.5 * dt, dt_s=dt)
    assert len(calls) == 4  # t = 0, 3 dt, 5 dt (≥ 5 dt), 8 dt
    # step() and advance() agree step for step
    a = np.full(med.shape, 37.0, np.float32)
    b = a.copy()
    q = np.full(med.shape, 2e5, np.float32)
    peak = a.copy()
    for _ in range(5):
        solver.step(a, dt, q, peak)
    solver.advance(b, 5 * dt, source_w_m3=q, dt_s=dt)
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(peak, a)


def test_perfusion_changed_in_place_is_picked_up():
    med = _uniform((6, 6, 6), perfusion=0.02)
    solver = BioheatSolver(med)
    q = np.full(med.shape, 1e5, np.float32)
    med.perfusion_1_s[...] = 0.0  # embolised
    T = np.full(med.shape, 37.0, np.float32)
    solver.advance(T, 20.0, source_w_m3=q)
    assert T.mean() == pytest.approx(37.0 + 1e5 * 20.0 / (RHO * C), rel=1e-4)


def test_steady_state_is_the_fixed_point_of_the_explicit_scheme():
    med = _uniform((9, 9, 9), perfusion=0.01)
    solver = BioheatSolver(med, robin=RobinBoundary(20.0, 25.0, box_faces=("all",)))
    q = np.zeros(med.shape, np.float32)
    q[4, 4, 4] = 1e7
    T = solver.steady_state(q)
    before = T.copy()
    solver.step(T, solver.stable_time_step_s(), q)
    assert np.max(np.abs(T - before)) < 1e-4
    assert T.min() < 37.0  # cooled through the box faces


def test_time_loop_does_not_allocate():
    med = _uniform((16, 16, 16), perfusion=0.01)
    solver = BioheatSolver(med)
    q = np.full(med.shape, 1e4, np.float32)

    def peak_bytes(steps):
        T = np.full(med.shape, 37.0, np.float32)
        solver.advance(T, 1.0 * solver.stable_time_step_s(), source_w_m3=q)  # warm
        tracemalloc.start()
        solver.advance(T, steps * solver.stable_time_step_s(), source_w_m3=q)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    assert peak_bytes(400) - peak_bytes(20) < 16 * 16 * 16 * 4  # less than one field


# ----------------------------------------------------------------------------------- bad input
def test_bad_medium_raises():
    k = np.full((4, 4, 4), K, np.float32)
    k[1, 1, 1] = np.nan
    ones = np.ones((4, 4, 4), np.float32)
    with pytest.raises(PhysicsError, match="non-finite"):
        ThermalMedium(k, ones * RHO, ones * C, ones * 0, (1e-3,) * 3)
    with pytest.raises(PhysicsError, match="negative"):
        ThermalMedium(ones * K, ones * RHO, ones * C, -ones, (1e-3,) * 3)
    with pytest.raises(PhysicsError, match="shape"):
        ThermalMedium(ones * K, np.ones((4, 4, 5)), ones * C, ones * 0, (1e-3,) * 3)
    with pytest.raises(PhysicsError, match="millimetres"):
        ThermalMedium(ones * K, ones * RHO, ones * C, ones * 0, (1.0, 1.0, 1.0))
    with pytest.raises(PhysicsError, match="non-positive"):
        _uniform(conductivity_coeff_1_k=-0.05)


def test_bad_solver_input_raises_and_writes_nothing():
    med = _uniform((6, 6, 6))
    with pytest.raises(PhysicsError, match="Dirichlet mask is empty"):
        BioheatSolver(med, dirichlet_mask=np.zeros(med.shape, bool), dirichlet_temperature_c=10.0)
    with pytest.raises(PhysicsError, match="shape"):
        BioheatSolver(med, vessels=VesselBoundary(np.zeros((6, 6, 5), bool), 3e-3))
    with pytest.raises(PhysicsError, match="millimetres"):
        BioheatSolver(med, vessels=VesselBoundary(np.ones((6, 6, 6), bool) & False, 3.0))
    mask = np.zeros(med.shape, bool)
    mask[0] = True
    solver = BioheatSolver(med, dirichlet_mask=mask, dirichlet_temperature_c=5.0)
    T = np.full(med.shape, 37.0, np.float32)
    untouched = T.copy()
    too_big = solver.stability_bound_s * 1.5
    with pytest.raises(PhysicsError, match="stability limit"):
        solver.advance(T, 10.0, dt_s=too_big)
    with pytest.raises(PhysicsError, match="stability limit"):
        solver.step(T, too_big)
    with pytest.raises(PhysicsError, match="thermal grid"):
        solver.advance(T, 10.0, source_w_m3=np.zeros((6, 6, 7), np.float32))
    with pytest.raises(PhysicsError, match="thermal grid"):
        solver.step(T, 0.1, np.zeros((6, 6, 7), np.float32))
    bad_q = np.zeros(med.shape, np.float32)
    bad_q[2, 2, 2] = np.inf
    with pytest.raises(PhysicsError, match="non-finite"):
        solver.advance(T, 10.0, source_w_m3=bad_q)
    with pytest.raises(PhysicsError, match="outside"):
        solver.advance(T, 10.0, snapshot_times_s=(11.0,))
    with pytest.raises(PhysicsError, match="float32"):
        solver.advance(T.astype(np.float64), 10.0)
    assert np.array_equal(T, untouched)  # nothing written, held values included
    with pytest.raises(PhysicsError, match="perfusion factor"):
        solver.advance(T, 1.0, perfusion_factor=np.ones((2, 2, 2)))
    assert np.array_equal(T, untouched)


def test_all_held_or_bad_boundaries_raise():
    med = _uniform((3, 3, 3))
    with pytest.raises(PhysicsError, match="every voxel is held"):
        BioheatSolver(med, dirichlet_mask=np.ones(med.shape, bool), dirichlet_temperature_c=0.0)
    with pytest.raises(PhysicsError, match="box face"):
        BioheatSolver(med, robin=RobinBoundary(10.0, 20.0, box_faces=("x+",)))
    with pytest.raises(PhysicsError, match="not positive"):
        BioheatSolver(med, robin=RobinBoundary(-1.0, 20.0, box_faces=("i+",)))
    assert math.isfinite(BioheatSolver(med, robin=RobinBoundary(math.inf, 20.0, box_faces="all")).stability_bound_s)


def test_failure_inside_the_loop_leaves_the_last_good_step():
    med = _uniform((6, 6, 6))
    solver = BioheatSolver(med)
    calls = []

    def source(t, T):
        calls.append(t)
        return np.full(T.shape if len(calls) < 3 else (2, 2, 2), 1e5, np.float32)

    T = np.full(med.shape, 37.0, np.float32)
    dt = solver.stable_time_step_s()
    with pytest.raises(PhysicsError, match="thermal grid"):
        solver.advance(T, 10 * dt, dt_s=dt, source_w_m3=source)
    assert T.mean() == pytest.approx(37.0 + 2 * dt * 1e5 / (RHO * C), rel=1e-5)  # two steps done


def test_row_skipping_peak_and_source_equal_a_brute_force_record():
    """The kernel skips peak rows that cannot rise and source rows that are zero; the result must be exact."""
    rng = np.random.default_rng(7)
    shape = (10, 12, 14)
    med = _uniform(shape, perfusion=0.004)
    solver = BioheatSolver(med)
    dt = solver.stable_time_step_s()
    q = np.zeros(shape, np.float32)
    q[4:6, 5:7, 3:11] = 4e6  # a local source: most rows carry none
    start = (37.0 + rng.normal(0.0, 0.5, shape)).astype(np.float32)  # some rows cool, some warm
    prior_peak = np.maximum(start, (37.0 + rng.uniform(0.0, 3.0, shape)).astype(np.float32))
    T = start.copy()
    brute = prior_peak.copy()
    fields = []
    run = solver.advance(
        T, 40 * dt, dt_s=dt, source_w_m3=q, peak_temperature_c=prior_peak.copy(),
        step_callback=lambda _t, field: fields.append(field.copy()),
    )  # fmt: skip
    heated_peak = run.peak_temperature_c.copy()
    cooled = solver.advance(T, 40 * dt, dt_s=dt, peak_temperature_c=run.peak_temperature_c)  # source off, same peak
    reference = start.copy()
    for _ in range(40):
        solver.step(reference, dt, q)
        np.maximum(brute, reference, out=brute)
    assert np.array_equal(fields[-1], reference)
    assert np.array_equal(heated_peak, brute)
    for _ in range(40):
        solver.step(reference, dt)
        np.maximum(brute, reference, out=brute)
    assert np.array_equal(cooled.peak_temperature_c, brute)
    assert np.array_equal(T, reference)
    assert float(brute.max()) > float(prior_peak.max()) + 4.0  # the source did raise peaks


@pytest.mark.parametrize("theta", [1.0, 0.75, 0.5])
def test_face_factors_place_a_held_wall_between_voxel_centres(theta):
    """Shortley–Weller: a held wall θ·h from the first free centre (face factor 1/θ) gives the exact linear
    steady profile between the wall at 10 °C and the far box face at 37 °C (no perfusion, no source)."""
    n = 12
    h = 1e-3
    med = _uniform((3, 3, n), h=h)
    held = np.zeros(med.shape, bool)
    held[:, :, 0] = True
    fk = np.ones((4, 3, n), np.float32)
    fj = np.ones((3, 4, n), np.float32)
    fi = np.ones((3, 3, n + 1), np.float32)
    fi[:, :, 1] = 1.0 / theta  # the face between the held voxel 0 and voxel 1
    solver = BioheatSolver(
        med, dirichlet_mask=held, dirichlet_temperature_c=10.0,
        robin=RobinBoundary(h_w_m2k=np.inf, ambient_c=37.0, box_faces=("i+",)), face_factors=(fk, fj, fi),
    )  # fmt: skip
    T = solver.steady_state(dtype=np.float64)
    wall = 1.0 - theta  # the wall's position in voxel units (voxel centres at 0, 1, …)
    far = n - 0.5  # the i+ box face
    x = np.arange(1, n)
    exact = 10.0 + 27.0 * (x - wall) / (far - wall)
    np.testing.assert_allclose(T[1, 1, 1:], exact, rtol=1e-6)
    with pytest.raises(PhysicsError, match="face factors"):
        BioheatSolver(med, face_factors=(fk, fj, fi[:, :, :-1]))


def test_phase_change_band_absorbs_exactly_its_latent_heat():
    """An insulated box heated uniformly: the temperature climbs at Q/(ρc), stalls in the 99–100 °C band until
    the latent heat is absorbed, then climbs again; energy in = Σ ρc ΔT + latent heat, to float32 rounding: in the
    band one float32 step of T (7.6e-6 K at 99 °C) holds 16 kJ/m³ of latent heat, 4 mK of sensible heat."""
    shape = (4, 4, 4)
    med = _uniform(shape)
    latent = 2.162e9  # J/m³: 0.68 water fraction × 958 kg/m³ × 2.257 MJ/kg (Berjano-group value, recalled)
    solver = BioheatSolver(med, phase_change=PhaseChange(latent, 99.0, 1.0))
    q = np.full(shape, 5e7, np.float32)  # 5e7 W/m³ → 13 K/s sensible
    T = np.full(shape, 90.0, np.float32)
    rho_c = RHO * C
    t_to_band = (99.0 - 90.0) * rho_c / 5e7
    t_through = (latent + rho_c) / 5e7  # the band's 1 K also takes its sensible heat
    duration = t_to_band + t_through + 0.5  # 0.5 s above the band
    run = solver.advance(T, duration, source_w_m3=q)
    expected = 100.0 + 0.5 * 5e7 / rho_c
    assert run.time_s == pytest.approx(duration)
    np.testing.assert_allclose(T, expected, atol=0.01)
    # halfway through the band the temperature sits at 99.5 °C
    T2 = np.full(shape, 90.0, np.float32)
    BioheatSolver(med, phase_change=PhaseChange(latent, 99.0, 1.0)).advance(
        T2, t_to_band + 0.5 * t_through, source_w_m3=q
    )
    np.testing.assert_allclose(T2, 99.5, atol=2e-3)
    with pytest.raises(PhysicsError, match="phase-change band"):
        BioheatSolver(med, phase_change=PhaseChange(latent, 99.0, 0.0))


def test_local_refresh_keeps_every_voxel_within_the_refresh_bound():
    """Between full refreshes k, c and the faces are refreshed only where the temperature moved (a box of lanes):
    after a heated run, every face differs from a full refresh at the same field by at most what a_k·δ allows,
    the heated region's faces are exact, and local refreshes did the work (fewer full ones)."""
    shape = (16, 12, 20)
    a_k, delta = 0.01, 1.0
    med = _uniform(shape, perfusion=0.002, conductivity_coeff_1_k=a_k, specific_heat_coeff_1_k=-0.002)
    fk = np.ones((shape[0] + 1, shape[1], shape[2]), np.float32)
    fj = np.ones((shape[0], shape[1] + 1, shape[2]), np.float32)
    fi = np.ones((shape[0], shape[1], shape[2] + 1), np.float32)
    fi[:, :, 3] = 1.5  # face factors must be re-applied by the local refresh
    solver = BioheatSolver(med, refresh_every_steps=50, refresh_delta_k=delta, face_factors=(fk, fj, fi))
    q = np.zeros(shape, np.float32)
    q[6:9, :, 8:11] = 2e7
    T = np.full(shape, 37.0, np.float32)
    solver.advance(T, 40 * solver.stable_time_step_s(), source_w_m3=q)
    assert solver.local_refreshes > 5 and float(T.max()) > 45.0
    local = [g.copy() for g in solver.face_conductances()]
    irc_local = solver._irc.copy()
    solver._fill(T, worst_case=False)  # a full refresh at the same field
    for before, after in zip(local, solver.face_conductances(), strict=True):
        conducting = after > 0
        assert not np.any(before[~conducting])  # zero-flux box faces stay zero
        relative = np.abs(before[conducting] / after[conducting] - 1.0)
        assert float(relative.max()) <= 1.05 * a_k * delta  # no face more than δ stale
    cold = BioheatSolver(med, face_factors=(fk, fj, fi)).face_conductances()[2]  # the faces at 37 °C
    rise = float(T[6:8, :, 9].min()) - 37.0  # the face between cells 6 and 7
    assert rise > 5.0
    # the hot lanes were refreshed as they heated: their faces follow k(T), not k(37 °C)
    assert np.all(local[2][7, :, 9] > cold[7, :, 9] * (1.0 + a_k * (rise - 2 * delta)))
    assert float(np.abs(irc_local / solver._irc - 1.0).max()) <= 1.05 * 0.002 * delta
    assert float(local[0][:, :, 3].max()) > 1.4 * float(local[0][:, :, 5].max())  # face factor kept


def test_source_region_gives_the_same_run_and_rejects_a_source_outside_it():
    """A local source scanned only inside ``source_region`` steps exactly as one scanned everywhere."""
    shape = (10, 12, 14)
    med = _uniform(shape, perfusion=0.004)
    q = np.zeros(shape, np.float32)
    q[4:6, 5:7, 3:11] = 4e6
    region = (slice(3, 7), slice(4, 8), slice(2, 12))
    runs = []
    for kwargs in ({}, {"source_region": region}):
        T = np.full(shape, 37.0, np.float32)
        run = BioheatSolver(med).advance(T, 20.0, source_w_m3=lambda _t, _T: q, source_interval_s=1.0, **kwargs)
        runs.append((T, run.source_energy_j))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-12)
    T = np.full(shape, 37.0, np.float32)
    with pytest.raises(PhysicsError, match="outside source_region"):
        BioheatSolver(med).advance(T, 5.0, source_w_m3=q, source_region=(slice(0, 2), slice(None), slice(None)))
    assert np.all(T == 37.0)  # nothing written
