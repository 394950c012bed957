"""Light diffusion (physics/optics.py): point-source convergence, power balance, sources, boundaries, the cooled
spherical applicator (thermal.md §5.4-4) and the optical table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError, TissueError
from insitu.physics.optics import (
    LightField,
    cooled_shell_temperature_c,
    deposit_points,
    effective_attenuation_per_m,
    line_source_points,
    load_optical_table,
    partial_current_a,
    point_source_fluence_w_m2,
)
from insitu.validation.laser_cases import (
    S22_MUA_PER_M,
    S22_MUSP_PER_M,
    SHELL,
    cooled_shell_errors,
    observed_orders,
    point_source_errors,
)


def test_point_source_converges_at_second_order():
    """φ = P·e^(−μ_eff r)/(4πDr): error at 5 mm falls ~4× per halving (measured 3.2 % → 0.70 %)."""
    errors = [point_source_errors(h, half_size_mm=16.0)[5.0] for h in (1.0, 0.5)]
    assert abs(errors[0]) < 0.04 and abs(errors[1]) < 0.01
    assert observed_orders(errors)[0] == pytest.approx(2.0, abs=0.3)


def test_closed_form_point_source_numbers():
    """The [S22] set gives μ_eff = 2.64 /cm (δ = 3.8 mm, thermal.md §1.4) and D = 1/(3·515) m."""
    mu = float(effective_attenuation_per_m(S22_MUA_PER_M, S22_MUSP_PER_M))
    assert mu == pytest.approx(263.7, rel=1e-3)
    phi = point_source_fluence_w_m2(1.0, 0.005, S22_MUA_PER_M, S22_MUSP_PER_M)
    assert phi == pytest.approx(math.exp(-mu * 0.005) * 3 * 515 / (4 * math.pi * 0.005), rel=1e-12)


@pytest.mark.parametrize("boundary", ["zero_flux", "matched", "partial_current", "zero_fluence"])
def test_power_balance(boundary):
    """Σ S·V = absorbed + escaped (discrete identity); all is absorbed with a zero-flux box; less escapes through the
    matched box than through the vacuum and zero-fluence ones."""
    n, h = 21, 1e-3
    source = deposit_points((n, n, n), (h, h, h), np.array([[10e-3, 10e-3, 10e-3]]), np.array([2.0]))
    sol = LightField((n, n, n), (h, h, h), box_boundary=boundary).solve(S22_MUA_PER_M, S22_MUSP_PER_M, source)
    assert sol.emitted_w == pytest.approx(2.0, rel=1e-6)
    assert sol.absorbed_w + sol.escaped_w == pytest.approx(2.0, rel=1e-5)
    limits = {
        "zero_flux": (0.0, 1e-9),
        "matched": (0.05, 0.3),
        "partial_current": (0.1, 0.5),
        "zero_fluence": (0.2, 0.7),
    }
    lo, hi = limits[boundary]
    assert lo * 2.0 <= sol.escaped_w <= hi * 2.0


@settings(max_examples=25, deadline=None)
@given(
    a=st.tuples(*[st.floats(0.5, 9.5)] * 3),
    b=st.tuples(*[st.floats(0.5, 9.5)] * 3),
    h_mm=st.floats(0.4, 1.5),
    power=st.floats(0.1, 50.0),
)
def test_line_source_conserves_power(a, b, h_mm, power):
    """Trilinear deposition of a diffusing tip anywhere in the box keeps Σ S·V = P exactly (units: W, m, W/m³)."""
    h = h_mm * 1e-3
    n = math.ceil(10.0 / h_mm) + 1
    start, end = np.array(a) * 1e-3, np.array(b) * 1e-3
    points, powers = line_source_points(start, end, power, (h, h, h))
    assert powers.sum() == pytest.approx(power, rel=1e-12)
    assert np.linalg.norm(np.diff(points, axis=0), axis=1).max(initial=0.0) <= h / 4 + 1e-12
    s = deposit_points((n, n, n), (h, h, h), points, powers)
    assert float(s.sum(dtype=np.float64)) * h**3 == pytest.approx(power, rel=1e-5)


def test_source_outside_grid_and_into_air_are_refused():
    n, h = 9, 1e-3
    with pytest.raises(PhysicsError, match="outside the optical grid"):
        deposit_points((n, n, n), (h, h, h), np.array([[0.0, 0.0, 9e-3]]), np.array([1.0]))
    exterior = np.zeros((n, n, n), bool)
    exterior[4, 4, 4] = True
    source = deposit_points((n, n, n), (h, h, h), np.array([[4e-3] * 3]), np.array([1.0]))
    with pytest.raises(PhysicsError, match="into air"):
        LightField((n, n, n), (h, h, h), exterior=exterior).solve(45.0, 470.0, source)
    with pytest.raises(PhysicsError, match="μa ≤ 0"):
        LightField((n, n, n), (h, h, h)).solve(0.0, 470.0, source)
    with pytest.raises(PhysicsError, match="unknown box boundary"):
        LightField((n, n, n), (h, h, h), box_boundary="open")  # type: ignore[arg-type]


def test_tissue_air_face_is_a_partial_current_boundary():
    """A half space of air: light leaks out there (A = 3.25 for n = 1.4 from Groenhuis' R_eff), the exterior holds no
    light, and more escapes than with an insulating (zero-flux) face."""
    assert partial_current_a(1.0) == 1.0
    assert partial_current_a(1.4) == pytest.approx(3.25, abs=0.02)
    n, h = 21, 1e-3
    exterior = np.zeros((n, n, n), bool)
    exterior[:, :, :4] = True
    source = deposit_points((n, n, n), (h, h, h), np.array([[10e-3, 10e-3, 7e-3]]), np.array([1.0]))
    sol = LightField((n, n, n), (h, h, h), exterior=exterior, box_boundary="zero_flux").solve(45.0, 470.0, source)
    assert 0.02 < sol.escaped_w < 0.5
    assert sol.absorbed_w + sol.escaped_w == pytest.approx(1.0, rel=1e-5)
    assert float(np.abs(sol.absorbed_w_m3[exterior]).max()) == 0.0


@settings(max_examples=20, deadline=None)
@given(
    power=st.floats(1.0, 30.0),
    r1_mm=st.floats(0.5, 2.0),
    r2_mm=st.floats(10.0, 40.0),
    w=st.floats(3.6e3, 1.4e5),
    u0=st.floats(5.0, 37.0),
)
def test_cooled_shell_closed_form_meets_its_boundary_conditions(power, r1_mm, r2_mm, w, u0):
    """u(R₁) = u₀ and u'(R₂) = 0 for any inputs (thermal.md §5.4-4)."""
    args = (power, S22_MUA_PER_M, S22_MUSP_PER_M, 0.5, w, r1_mm * 1e-3, r2_mm * 1e-3, u0, 37.0)
    assert float(cooled_shell_temperature_c(r1_mm * 1e-3, *args)) == pytest.approx(u0, abs=1e-8)
    r2, eps = r2_mm * 1e-3, 1e-7
    slope = (cooled_shell_temperature_c(r2 + eps, *args) - cooled_shell_temperature_c(r2 - eps, *args)) / (2 * eps)
    scale = abs(float(cooled_shell_temperature_c(2 * r1_mm * 1e-3, *args)) - 37.0) / (r1_mm * 1e-3)
    assert abs(float(slope)) < 1e-6 * max(scale, 1.0)


def test_cooled_spherical_applicator_matches_closed_form():
    """IN-OPT-2 at 0.5 mm: optics solve → Q = μa·φ → steady Pennes with the cooled sphere; θ within 2 % (measured
    1.5 % at 3 mm, 0.95 % at 5 mm, 0.7 % at 8 mm; 1 mm grids are 8× worse: R₁ = 1 mm spans one voxel)."""
    errors = cooled_shell_errors(0.5)
    assert max(abs(e) for e in errors.values()) < 0.02
    assert SHELL["wall_temperature_c"] < SHELL["arterial_temperature_c"]


def test_optical_table():
    """Every tissue/wavelength has native and coagulated values; coagulation shortens the penetration depth
    (Ritz 2001: 3.1 → 1.7 mm at 830 nm); tumours take liver's values; unknown wavelengths are one-line errors."""
    table = load_optical_table()
    assert table.wavelengths_nm == (805, 980, 1064)
    for w in table.wavelengths_nm:
        native, coag = table.coefficients("liver", w)
        assert 1.5e-3 < coag.penetration_depth_m < native.penetration_depth_m < 4e-3
        assert table.coefficients("hcc", w) == (native, coag)
        assert native.reduced_scattering_per_m > 5 * native.absorption_per_m  # diffusion regime
    native, coag = table.coefficients("liver", 805)
    assert native.penetration_depth_m == pytest.approx(3.1e-3, rel=2e-3)
    assert coag.penetration_depth_m == pytest.approx(1.7e-3, rel=2e-3)
    with pytest.raises(TissueError, match="1320 nm"):
        table.check_wavelength(1320)
    with pytest.raises(TissueError, match="not a diffusing medium"):
        table.coefficients("air", 1064)
    names = ("air", "liver", "muscle", "water")
    tabs = table.tables(names, 980)
    assert tabs["exterior"].tolist() == [True, False, False, False]
    assert tabs["fallback"].tolist() == [False, False, True, False]
    assert tabs["mua_native"][0] == 0.0 and tabs["mua_native"][2] == tabs["mua_native"][1]
