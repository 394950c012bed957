"""Verification of the RF electric-field solver (physics/electric.py), the electrode rasteriser and the
multigrid face factors: the exact spherical electrode (thermal.md §5.4-5, V3), the coaxial pair, the
energy identity Σ Q·vol = Σ I·V, sub-voxel electrode placement, σ(T) with desiccation, warm starts,
and one-line errors for bad input. Grids are coarse (≤ 64³) so the file runs in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError
from insitu.physics.applicator import MetalSegment
from insitu.physics.electric import (
    DESICCATION_DROP_FACTOR,
    RFField,
    conductivity_at_temperature,
    outer_layer_mask,
    update_desiccation,
)
from insitu.physics.electric_verification import (
    case_coaxial,
    case_constant_power,
    case_sphere,
    rows,
    shell_power_exact,
    surface_ground,
)
from insitu.physics.electrode_raster import metal_bounding_box, rasterize_metal, ray_capsule_entry, wall_face_fractions
from insitu.physics.multigrid import EllipticOperator, MultigridSolver

H = 0.5e-3  # m, the spacing of the small test grids


def _needle(n: int, radius_m: float, shift_voxels: float = 0.0, electrode: int = 0, x_offset_m: float = 0.0):
    """A 8 mm conducting cylinder along z through the centre of an n³ grid at spacing H."""
    c = (n // 2) * H
    x, y = c + shift_voxels * H + x_offset_m, c + 0.3 * shift_voxels * H
    return MetalSegment((c - 4e-3, y, x), (c + 4e-3, y, x), radius_m, electrode=electrode)


# --------------------------------------------------------------------------------------------
# the exact spherical electrode (V3)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphere():
    """V3 on one octant at a = 4h and 8h (34³ and 50³ voxels), return sphere at b = 6a."""
    return case_sphere((4, 8), ratio=6.0)


def test_sphere_power_within_half_percent_and_second_order(sphere):
    """P = 4πσV0²ab/(b − a): measured −0.45 % at a = 4h and −0.11 % at 8h. The error at a given h depends a little on
    how the sphere sits in the grid (−0.45 … −0.57 % at 4h over four placements, −0.31 … −0.42 % at 5h), so the
    0.5 % of §5.4-5 is met robustly from a = 5h (next test) and we allow 0.6 % at 4h here.

    Both spheres are placed with Shortley–Weller faces, so the error is smooth in h: the measured order between
    a = 4h and 8h is 2.00. At finer grids the θ ≥ θ_min clamp of near-grazing faces adds a small O(h) part (order
    1.77 from 8h to 16h with θ_min = 0.05; 1.89 with the default 0.01), so we assert ≥ 1.8 on the pair measured here.
    """
    assert abs(sphere["power_error"][0]) <= 6e-3
    assert abs(sphere["power_error"][1]) <= 1.5e-3
    assert sphere["power_orders"][0] >= 1.8
    assert sphere["iterations"][1] <= 15


def test_sphere_potential_and_joule_source(sphere):
    """V against V0·a(b − r)/(r(b − a)) everywhere in the tissue, Q against σV0²a²b²/((b − a)²r⁴) on shells."""
    assert sphere["rms_error"][1] <= 2.5e-4  # measured 1.8e-4 of V0 at a = 8h
    assert sphere["rms_orders"][0] >= 1.8  # measured 1.99
    assert abs(sphere["joule_error_1.5a"][1]) <= 4e-3  # measured 1.9e-3
    assert abs(sphere["joule_error_2a"][1]) <= 1e-3  # measured 1.3e-4
    assert abs(sphere["joule_error_3a"][1]) <= 2.5e-3  # measured −1.2e-3


def test_full_grid_sphere_off_centre_matches_shell_power():
    """A sphere of radius 5h on the full grid, its centre off every grid plane: power within 0.5 % (measured −0.36 %),
    currents balance, and the energy identity Σ Q·vol = Σ I·V holds to 1e-5."""
    a, n = 5 * H, 47
    b = 4 * a
    centre = (23.3 * H, 22.8 * H, 23.1 * H)
    raster = rasterize_metal([MetalSegment(centre, centre, a)], (n,) * 3, (H,) * 3)
    ground, fractions = surface_ground((n,) * 3, (H,) * 3, centre, b)
    field = RFField((H,) * 3, raster, ground, ground_face_fraction=fractions)
    sol = field.solve_unit(0.33, {0: 1.0}, rtol=1e-8)
    assert sol.conductance_s / shell_power_exact(0.33, a, b, 1.0) - 1.0 == pytest.approx(0.0, abs=5e-3)
    deposited = float(np.sum(sol.joule_w_m3_per_v2, dtype=np.float64)) * H**3
    assert deposited == pytest.approx(sol.conductance_s, rel=1e-5)
    assert sol.ground_current_a == pytest.approx(-sol.terminal_currents_a[0], rel=1e-5)
    assert sol.impedance_ohm == pytest.approx(1.0 / sol.conductance_s)


def test_constant_power_reaches_target():
    """V = √(P/G) deposits P (the 1.66 W of §5.4-5) and matches the exact drive voltage of the finite shell."""
    cp = case_constant_power(cells_per_radius=4, ratio=6.0)
    assert cp["deposited_w"] == pytest.approx(cp["target_w"], rel=1e-6)
    assert cp["target_w"] == pytest.approx(1.659, abs=1e-3)
    assert cp["voltage_v"] == pytest.approx(cp["voltage_exact_v"], rel=3e-3)  # P error/2: measured 0.23 %


def test_coaxial_resistance_per_length():
    """R·L = ln(b/a)/(2πσ) for a cylinder through the whole grid (clipped) inside a grounded cylinder: within 1 %."""
    res = case_coaxial(cells_per_radius=4, ratio=6.0)
    assert res["exact_ohm_m"] == pytest.approx(math.log(6.0) / (2 * math.pi * 0.33))
    assert abs(res["rel_error"]) <= 1e-2  # measured −0.16 %
    coarse = case_coaxial(cells_per_radius=2, ratio=6.0)
    assert abs(coarse["rel_error"]) > abs(res["rel_error"])  # converges (−0.63 % at a = 2h)


def test_verification_rows_have_the_report_format():
    """rows(fine=False) runs the V3 set on the quick grids; every row passes its own tolerance."""
    out = rows(fine=False)
    assert {r["id"] for r in out} == {"V3", "IN-RF-COAX"}
    for r in out:
        assert set(r) == {"id", "quantity", "simulated", "reference", "tolerance_rel", "source"}
        assert abs(r["simulated"] - r["reference"]) <= r["tolerance_rel"] * abs(r["reference"]), r


# --------------------------------------------------------------------------------------------
# energy, sub-voxel placement, drive patterns
# --------------------------------------------------------------------------------------------


def _two_needles(n: int = 32):
    """Two conducting tips with insulated shafts, in heterogeneous σ with an insulating pocket."""
    c = (n // 2) * H
    segs = [
        MetalSegment((c - 3e-3, c, c - 3e-3), (c + 2e-3, c, c - 3e-3), 0.7e-3, electrode=0),
        MetalSegment((c + 2e-3, c, c - 3e-3), (c + 9e-3, c, c - 3e-3), 0.7e-3, conducting=False),
        MetalSegment((c - 3e-3, c, c + 3e-3), (c + 2e-3, c, c + 3e-3), 0.7e-3, electrode=1),
    ]
    raster = rasterize_metal(segs, (n,) * 3, (H,) * 3)
    rng = np.random.default_rng(3)
    sigma = (0.33 * np.exp(0.3 * rng.standard_normal((n,) * 3))).astype(np.float32)
    sigma[4:8, 4:8, 4:8] = 0.0  # an insulating pocket
    return raster, sigma


def test_energy_identity_and_bipolar_currents():
    """Σ Q·vol = Σ I·V to 1e-5 (face-wise Joule heating); bipolar current leaves one tip and enters the other."""
    raster, sigma = _two_needles()
    field = RFField((H,) * 3, raster)
    for drive in ({0: 1.0}, {0: 0.5, 1: -0.5}):
        sol = field.solve_unit(sigma, drive, rtol=1e-7)
        deposited = float(np.sum(sol.joule_w_m3_per_v2, dtype=np.float64)) * H**3
        supplied = sum(sol.terminal_currents_a[t] * v for t, v in drive.items())
        assert deposited == pytest.approx(supplied, rel=1e-5)
        assert sol.conductance_s == pytest.approx(supplied, rel=1e-12)
        total = sum(sol.terminal_currents_a.values()) + sol.ground_current_a
        assert abs(total) <= 1e-5 * abs(sol.terminal_currents_a[0])  # charge conservation
        assert np.all(sol.joule_w_m3_per_v2 >= 0)
        assert np.all(sol.joule_w_m3_per_v2[raster.inside] == 0)
    mono = field.solve_unit(sigma, {0: 1.0})
    assert mono.terminal_currents_a[1] < 0  # the undriven tip is held at 0 V and collects current
    assert np.all(mono.potential_v[raster.terminal == 1] == 0.0)
    bip = field.solve_unit(sigma, {0: 0.5, 1: -0.5})
    assert bip.terminal_currents_a[0] > 0 > bip.terminal_currents_a[1]
    assert abs(bip.ground_current_a) < 0.5 * bip.terminal_currents_a[0]
    assert bip.power_w(40.0) == pytest.approx(bip.conductance_s * 1600.0)


def test_subvoxel_faces_make_impedance_independent_of_axis_position():
    """Shifting a 1.5-voxel-radius needle by 0–½ voxel: impedance spread < 1 % with Shortley–Weller faces (measured
    0.7 %), > 5 % for the voxel staircase (measured 12 %)."""
    n = 40

    def spread(subvoxel: bool) -> float:
        z = []
        for shift in (0.0, 0.17, 0.33, 0.5):
            raster = rasterize_metal([_needle(n, 1.5 * H, shift)], (n,) * 3, (H,) * 3)
            z.append(RFField((H,) * 3, raster, subvoxel=subvoxel).solve_unit(0.33, {0: 1.0}).impedance_ohm)
        return max(z) / min(z) - 1.0

    assert spread(True) < 1e-2
    assert spread(False) > 5e-2


def test_warm_start_needs_fewer_iterations_after_small_sigma_change():
    """After σ rises 5 % non-uniformly (heating), a warm start converges in fewer iterations than a cold solve."""
    raster, sigma = _two_needles()
    field = RFField((H,) * 3, raster)
    field.solve_unit(sigma, {0: 1.0})
    n = sigma.shape[0]
    ramp = np.linspace(1.0, 1.05, n, dtype=np.float32)[None, None, :]
    warm = field.solve_unit(sigma * ramp, {0: 1.0})
    cold = RFField((H,) * 3, raster).solve_unit(sigma * ramp, {0: 1.0})
    assert warm.info.iterations < cold.info.iterations
    assert warm.conductance_s == pytest.approx(cold.conductance_s, rel=1e-5)
    again = field.solve_unit(sigma * ramp, {0: 1.0})  # nothing changed: converged from the stored solution
    assert again.info.iterations <= 1


def test_a_stalled_warm_start_starts_over_cold():
    """A warm start that cannot reach the tolerance within the iteration budget (here a wildly wrong stored field;
    in a run, the field from before a shell of tissue boiled at the electrode) is retried from zero."""
    raster, sigma = _two_needles()
    cold = RFField((H,) * 3, raster).solve_unit(sigma, {0: 1.0})
    field = RFField((H,) * 3, raster, max_iterations=cold.info.iterations + 1)
    key, _ = field._drive_lut({0: 1.0})
    field._previous[key] = np.random.default_rng(7).normal(0.0, 1e6, sigma.shape).astype(np.float32)
    retried = field.solve_unit(sigma, {0: 1.0})
    assert retried.info.converged
    assert retried.info.iterations > cold.info.iterations  # the stalled attempt is counted
    assert retried.conductance_s == pytest.approx(cold.conductance_s, rel=1e-6)


# --------------------------------------------------------------------------------------------
# σ(T) and desiccation
# --------------------------------------------------------------------------------------------


def test_conductivity_temperature_model_values():
    """σ37 at 37 °C, ×1.66 at 70 °C for 2 %/°C, linear drop over 99–100 °C, σ37·(1 + 0.02·63)/10⁴ from 100 °C on."""
    temps = np.array([37.0, 70.0, 99.0, 99.5, 100.0, 130.0, -20.0])
    sigma = conductivity_at_temperature(0.35, 0.02, temps)
    at99 = 0.35 * (1 + 0.02 * 62)
    at100 = 0.35 * (1 + 0.02 * 63)
    expected = [0.35, 0.35 * 1.66, at99, 0.35 * (1 + 0.02 * 62.5) * (1 + 0.5 * (1e-4 - 1)), at100 / 1e4,
                at100 / 1e4, 0.35 * 0.05]  # fmt: skip
    assert sigma.dtype == np.float32
    np.testing.assert_allclose(sigma, expected, rtol=1e-6)
    assert DESICCATION_DROP_FACTOR == 1e4


def test_conductivity_writes_into_out_and_takes_volumes():
    """Volumes of σ37 and α per voxel, float64 temperatures, and ``out`` reused without allocation."""
    temp = np.full((3, 4, 5), 47.0)
    s37 = np.full(temp.shape, 0.5, np.float32)
    alpha = np.full(temp.shape, 0.01, np.float32)
    out = np.zeros(temp.shape, np.float32)
    res = conductivity_at_temperature(s37, alpha, temp, out=out)
    assert res is out
    np.testing.assert_allclose(out, 0.55, rtol=1e-6)
    with pytest.raises(PhysicsError, match="float32 volume"):
        conductivity_at_temperature(s37, alpha, temp, out=np.zeros(temp.shape))


def test_desiccation_is_irreversible():
    """Tissue that reached 100 °C keeps the low σ after it cools; tissue that never did recovers."""
    temp = np.array([[[60.0, 101.0, 99.5]]])
    dry = np.zeros(temp.shape, bool)
    assert update_desiccation(dry, temp) == 1
    assert update_desiccation(dry, temp) == 0  # already marked
    cooled = np.full(temp.shape, 60.0)
    sigma = conductivity_at_temperature(0.35, 0.02, cooled, desiccated=dry)
    normal = 0.35 * (1 + 0.02 * 23)
    np.testing.assert_allclose(sigma[0, 0], [normal, normal / 1e4, normal], rtol=1e-6)
    assert dry.tolist() == [[[False, True, False]]]


# --------------------------------------------------------------------------------------------
# rasteriser
# --------------------------------------------------------------------------------------------


_coord = st.floats(-1.5e-3, 7.5e-3, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(st.tuples(_coord, _coord, _coord), st.tuples(_coord, _coord, _coord), st.floats(0.3e-3, 2.5e-3))
def test_inside_iff_centre_within_radius_of_axis(start, end, radius):
    """A voxel is inside iff its centre lies within the radius of the segment; θ ∈ [θ_min, 1] and < 1 only on faces
    between an outside and a conducting voxel."""
    n, h = 12, 0.5e-3
    seg = MetalSegment(start, end, radius)
    raster = rasterize_metal([seg], (n,) * 3, (h,) * 3, theta_min=0.05)
    centres = np.stack(np.meshgrid(*(np.arange(n) * h,) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    a, b = np.asarray(start), np.asarray(end)
    ab = b - a
    s = np.clip((centres - a) @ ab / max(ab @ ab, 1e-300), 0.0, 1.0) if ab @ ab > 0 else np.zeros(len(centres))
    dist = np.linalg.norm(centres - (a + s[:, None] * ab), axis=1)
    decided = np.abs(dist - radius) > 1e-12  # leave exact ties to rounding
    assert np.array_equal(raster.inside.reshape(-1)[decided], (dist <= radius)[decided])
    assert np.array_equal(raster.terminal >= 0, raster.inside)
    for axis, f in enumerate(raster.face_fraction):
        assert f.min() >= 0.05 and f.max() <= 1.0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        inner = [slice(None)] * 3
        inner[axis] = slice(1, -1)
        mixed = raster.inside[tuple(lo)] != raster.inside[tuple(hi)]
        assert np.all(f[tuple(inner)][~mixed] == 1.0)


def test_face_fraction_is_the_exact_distance_to_the_sphere():
    """θ on every face of a sphere's staircase equals the distance along the face normal to r = a, per spacing."""
    n, h, a = 16, 0.5e-3, 2.7e-3
    centre = np.array([7.4, 7.9, 7.2]) * h
    raster = rasterize_metal([MetalSegment(tuple(centre), tuple(centre), a)], (n,) * 3, (h,) * 3, theta_min=1e-6)
    checked = 0
    for axis, f in enumerate(raster.face_fraction):
        for face in np.argwhere(f < 1.0):
            lower, upper = face.copy(), face.copy()
            lower[axis] -= 1
            out_voxel, step = (lower, 1.0) if not raster.inside[tuple(lower)] else (upper, -1.0)
            p = out_voxel * h - centre
            # |p + t·e|² = a² → t = −step·p_axis − √(p_axis² − |p|² + a²), the nearer root
            t = -step * p[axis] - math.sqrt(p[axis] ** 2 - p @ p + a * a)
            assert f[tuple(face)] == pytest.approx(t / h, rel=1e-5)
            checked += 1
    assert checked > 100


def test_ray_capsule_entry_matches_sampling():
    """First entry of axis-aligned rays into a slanted capsule agrees with dense sampling along the ray."""
    seg = MetalSegment((1e-3, 2e-3, 1.5e-3), (4e-3, 2.5e-3, 3e-3), 0.8e-3)
    rng = np.random.default_rng(0)
    origins = rng.uniform(-1e-3, 6e-3, size=(200, 3))
    a, ab = np.asarray(seg.start_m), np.subtract(seg.end_m, seg.start_m)
    for axis in range(3):
        for sign in (1, -1):
            t = ray_capsule_entry(origins, axis, sign, seg)
            ts = np.linspace(0.0, 8e-3, 8001)
            pts = origins[:, None, :].repeat(len(ts), axis=1)
            pts[:, :, axis] += sign * ts[None, :]
            s = np.clip((pts - a) @ ab / (ab @ ab), 0.0, 1.0)
            inside = np.linalg.norm(pts - (a + s[..., None] * ab), axis=-1) <= seg.radius_m
            outside_start = ~inside[:, 0]
            first = np.where(inside.any(axis=1), ts[np.argmax(inside, axis=1)], np.inf)
            ok = outside_start & np.isfinite(first)
            assert np.all(np.abs(t[ok] - first[ok]) <= 1.01e-6)
            assert np.all(np.isinf(t[outside_start & ~np.isfinite(first)]))


def test_raster_overlaps_cooling_and_clipping():
    """Where metal overlaps, insulation wins inside an insulated cylinder and conducting metal wins in its round
    caps (exposed metal ends flat where a coating begins); cooled marks follow segments; outside metal is clipped."""
    n = 20
    tip = MetalSegment((2e-3, 5e-3, 5e-3), (5e-3, 5e-3, 5e-3), 1e-3, electrode=2, cooled=True)
    shaft = MetalSegment((4e-3, 5e-3, 5e-3), (30e-3, 5e-3, 5e-3), 1e-3, conducting=False)
    away = MetalSegment((-9e-3, -9e-3, -9e-3), (-8e-3, -9e-3, -9e-3), 1e-3)
    raster = rasterize_metal([tip, shaft, away], (n,) * 3, (H,) * 3)
    assert raster.terminals() == (2,)
    assert raster.terminal[8, 10, 10] == -1  # z = 4 mm: inside the shaft's cylinder, insulated
    assert raster.terminal[7, 10, 10] == 2  # z = 3.5 mm: in the shaft's round cap only, conducting wins
    assert raster.terminal[7, 10, 11] == 2 and raster.terminal[9, 10, 11] == -1
    assert raster.terminal[13, 10, 10] == -1 and raster.inside[13, 10, 10]
    assert raster.inside[19, 10, 10]  # the shaft runs out of the grid
    assert raster.cooled[6, 10, 10] and not raster.cooled[14, 10, 10]
    assert all(s.stop == s.start for s in metal_bounding_box(away, (n,) * 3, (H,) * 3))


def test_rasterise_long_electrode_on_256_cubed_touches_only_its_box():
    """A slanted 3 cm electrode with shaft at 0.5 mm on 256³: the metal lies inside the segments' bounding boxes and
    the tip holds ≈ π·1.5²·60 voxels (the raster's speed is for the benchmarks, not a timed test)."""
    segs = [
        MetalSegment((0.03, 0.064, 0.064), (0.06, 0.07, 0.066), 0.75e-3, cooled=True),
        MetalSegment((0.06, 0.07, 0.066), (0.2, 0.09, 0.07), 0.75e-3, conducting=False, cooled=True),
    ]
    raster = rasterize_metal(segs, (256,) * 3, (H,) * 3)
    assert 400 < np.count_nonzero(raster.terminal >= 0) < 500
    boxes = np.zeros(raster.shape, bool)
    for seg in segs:
        boxes[metal_bounding_box(seg, raster.shape, (H,) * 3)] = True
    assert raster.inside.any() and not (raster.inside & ~boxes).any()


# --------------------------------------------------------------------------------------------
# multigrid face factors
# --------------------------------------------------------------------------------------------


def test_face_factors_of_one_change_nothing_and_place_a_wall_exactly():
    """Unit factors reproduce the plain operator; 1/θ on the faces next to held planes makes a linear profile between
    walls at fractional positions exact (Shortley–Weller), where the plain operator is off by the staircase."""
    n = (4, 4, 12)
    held = np.zeros(n, bool)
    held[:, :, 0] = held[:, :, -1] = True
    value = np.zeros(n, np.float32)
    value[:, :, -1] = 1.0
    ones = (np.ones((5, 4, 12), np.float32), np.ones((4, 5, 12), np.float32), np.ones((4, 4, 13), np.float32))
    plain = MultigridSolver(EllipticOperator(1.0, 0.0, (1.0,) * 3, held, value)).solve(0.0, rtol=1e-10)[0]
    unit_op = EllipticOperator(1.0, 0.0, (1.0,) * 3, held, value, face_factors=ones)
    unit = MultigridSolver(unit_op).solve(0.0, rtol=1e-10)[0]
    np.testing.assert_array_equal(plain, unit)
    # walls at x = 0.6 (V = 0) and x = 10.25 (V = 1): voxel centres at x = i
    fx = ones[2].copy()
    fx[:, :, 1] = 1.0 / 0.4  # voxel 1 is 0.4 from the wall at 0.6
    fx[:, :, 11] = 1.0 / 0.25  # voxel 10 is 0.25 from the wall at 10.25
    solver = MultigridSolver(EllipticOperator(1.0, 0.0, (1.0,) * 3, held, value, face_factors=(ones[0], ones[1], fx)))
    u = solver.solve(0.0, rtol=1e-10)[0]
    exact = (np.arange(1, 11) - 0.6) / (10.25 - 0.6)
    np.testing.assert_allclose(u[2, 2, 1:11], exact, atol=1e-6)
    assert np.abs(plain[2, 2, 1:11] - exact).max() > 0.02
    solver.update_coefficients(2.0)  # factors kept when not given again
    np.testing.assert_allclose(solver.solve(0.0, rtol=1e-10)[0][2, 2, 1:11], exact, atol=1e-6)
    solver.update_coefficients(1.0, face_factors=ones)
    np.testing.assert_allclose(solver.solve(0.0, rtol=1e-10)[0], plain, atol=1e-6)


def test_face_factors_bad_input():
    """Wrong layout or negative factors are refused with a one-line PhysicsError."""
    held = np.zeros((3, 3, 3), bool)
    held[0] = True
    good = (np.ones((4, 3, 3), np.float32), np.ones((3, 4, 3), np.float32), np.ones((3, 3, 4), np.float32))
    with pytest.raises(PhysicsError, match="face factor fx has shape"):
        EllipticOperator(1.0, 0.0, (1.0,) * 3, held, 1.0, face_factors=(good[0], good[1], good[0]))
    with pytest.raises(PhysicsError, match="negative or non-finite"):
        EllipticOperator(1.0, 0.0, (1.0,) * 3, held, 1.0, face_factors=(good[0], -good[1], good[2]))
    with pytest.raises(PhysicsError, match=r"has 2 arrays"):
        EllipticOperator(1.0, 0.0, (1.0,) * 3, held, 1.0, face_factors=good[:2])


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def needle_field():
    n = 24
    raster = rasterize_metal([_needle(n, 1e-3)], (n,) * 3, (H,) * 3)
    return RFField((H,) * 3, raster), raster


@pytest.mark.parametrize(
    ("sigma", "match"),
    [(-0.1, "negative or non-finite"), (np.nan, "negative or non-finite"), (np.ones((3, 3, 3)), "has shape")],
)
def test_bad_sigma(needle_field, sigma, match):
    field, _ = needle_field
    with pytest.raises(PhysicsError, match=match) as err:
        field.solve_unit(sigma, {0: 1.0})
    assert "\n" not in str(err.value)
    assert field.solve_unit(0.33, {0: 1.0}).conductance_s > 0  # the field still works afterwards


def test_bad_drive(needle_field):
    field, _ = needle_field
    with pytest.raises(PhysicsError, match="drive pattern is empty"):
        field.solve_unit(0.33, {})
    with pytest.raises(PhysicsError, match=r"electrode 3 has no voxel in the grid.*finer grid.*placement"):
        field.solve_unit(0.33, {3: 1.0})
    with pytest.raises(PhysicsError, match="every driven potential is 0"):
        field.solve_unit(0.33, {0: 0.0})
    with pytest.raises(PhysicsError, match="finite"):
        field.solve_unit(0.33, {0: math.inf})


def test_electrode_too_small_or_outside_has_no_voxel():
    """A tip thinner and shorter than a voxel between centres, or outside the grid, owns no voxel: a clear error."""
    n = 16
    c = 8.5 * H  # between voxel centres
    tiny = MetalSegment((c, c, c), (c + 0.2 * H, c, c), 0.2 * H, electrode=0)
    outside = MetalSegment((-5e-3, c, c), (-4e-3, c, c), 0.5e-3, electrode=1)
    big = MetalSegment((4 * H, 4 * H, 4 * H), (6 * H, 4 * H, 4 * H), H, electrode=2)
    raster = rasterize_metal([tiny, outside, big], (n,) * 3, (H,) * 3)
    field = RFField((H,) * 3, raster)
    for t in (0, 1):
        with pytest.raises(PhysicsError, match=f"electrode {t} has no voxel in the grid"):
            field.solve_unit(0.33, {t: 1.0})


def test_grid_mismatch_and_ground_overlap(needle_field):
    _, raster = needle_field
    with pytest.raises(PhysicsError, match="another grid"):
        RFField((H, H, 2 * H), raster)
    with pytest.raises(PhysicsError, match="ground_mask"):
        RFField((H,) * 3, raster, np.zeros((5, 5, 5), bool))
    ground = outer_layer_mask(raster.shape)
    ground[12, 12, 12] = True  # inside the needle
    with pytest.raises(PhysicsError, match="overlaps conducting electrode metal in 1 voxels"):
        RFField((H,) * 3, raster, ground)
    n = 24
    touching = rasterize_metal([_needle(n, 1e-3, x_offset_m=5.5e-3)], (n,) * 3, (H,) * 3)
    with pytest.raises(PhysicsError, match="overlaps conducting"):
        RFField((H,) * 3, touching)  # the default ground is the box's outer layer


def test_bad_temperature_inputs():
    with pytest.raises(PhysicsError, match="negative σ37"):
        conductivity_at_temperature(-0.1, 0.02, 37.0)
    with pytest.raises(PhysicsError, match="non-finite temperature"):
        conductivity_at_temperature(0.35, 0.02, np.array([37.0, np.nan]))
    with pytest.raises(PhysicsError, match="has shape"):
        conductivity_at_temperature(np.ones(3), 0.02, np.ones(4))


def test_cooled_wall_faces_are_placed_on_the_insulated_shaft_too():
    """wall_face_fractions: θ on the faces from tissue to *cooled* metal (the insulated shaft included), the exact
    distance to the cylinder along the face normal; the conducting fractions know only the exposed metal."""
    n = 16
    axis_j, axis_i, r = 8 * H, 8 * H, 0.8e-3  # a cylinder along k through a voxel centre, radius 1.6 voxels
    tip = MetalSegment((2 * H, axis_j, axis_i), (6 * H, axis_j, axis_i), r, cooled=True)
    shaft = MetalSegment((6 * H, axis_j, axis_i), (40 * H, axis_j, axis_i), r, conducting=False, cooled=True)
    raster = rasterize_metal([tip, shaft], (n,) * 3, (H,) * 3)
    _, _, fi = wall_face_fractions([tip, shaft], raster)
    # voxel (k, 8, 10) is free (2 voxels = 1 mm from the axis); its −i face leads to the held voxel (k, 8, 9):
    # the wall is 1 mm − 0.8 mm = 0.2 mm = 0.4 voxel away along −i
    for k in (4, 12):  # on the exposed tip and on the insulated shaft
        assert raster.cooled[k, 8, 9] and not raster.inside[k, 8, 10]
        assert fi[k, 8, 10] == pytest.approx(0.4, abs=1e-6)
    assert raster.face_fraction[2][12, 8, 10] == 1.0  # the conducting fractions stop where the shaft begins
