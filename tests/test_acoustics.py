"""Focused-ultrasound fields (physics/acoustics.py): Rayleigh quadrature against O'Neil, the angular-spectrum march
against exact plane-wave and bowl solutions, electronic steering, power bookkeeping and the power-conserving deposit
onto the patient grid. Coarse grids: the whole file runs in a few seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError
from insitu.grid import Grid
from insitu.physics import acoustics as ac
from insitu.validation import hifu_cases

C, RHO, F = 1500.0, 1000.0, 1.0e6
KW_BOWL = ac.SphericalBowl(0.030, 0.030)


def test_oneil_reference_numbers():
    """hifu.md §4.1: peak 17.135 MPa at 28.9 mm, kh = 16.836, −6 dB width 2.12 mm (per MPa of source pressure)."""
    z = np.linspace(0.02, 0.04, 20001)
    p = ac.oneil_axial_pa(z, 0.03, 0.015, F, C, 1.0e6)
    assert p.max() == pytest.approx(17.135e6, rel=2e-4)
    assert z[np.argmax(p)] == pytest.approx(0.0289, abs=1e-4)
    assert ac.oneil_axial_pa(np.array([0.03]), 0.03, 0.015, F, C)[0] == pytest.approx(16.836, rel=1e-4)
    assert ac.oneil_width_6db_m(0.03, 0.015, F, C) == pytest.approx(2.12e-3, rel=3e-3)
    assert ac.oneil_width_6db_m(0.15, 0.06, 0.8e6, C) == pytest.approx(3.31e-3, rel=3e-3)
    assert ac.oneil_focal_plane_pa(np.array([0.0]), 0.03, 0.015, F, C)[0] == pytest.approx(16.836, rel=1e-4)


def test_rayleigh_quadrature_matches_oneil_on_axis():
    """The bowl quadrature is the Rayleigh integral O'Neil solved: agreement to 1e-5 from near the rim to beyond."""
    z = np.array([0.006, 0.01, 0.02, 0.029, 0.03, 0.045])
    points = np.stack([0 * z, 0 * z, z], axis=1)
    direct = np.abs(ac.rayleigh_points(KW_BOWL, points, F, C))
    assert direct == pytest.approx(ac.oneil_axial_pa(z, 0.03, 0.015, F, C), rel=1e-5)


def test_annulus_is_the_difference_of_two_bowls():
    """A bowl with a hole (HITU annulus: 10/30 mm radii, R 50 mm, 2 MHz) against O'Neil's inner-cap subtraction."""
    annulus = ac.SphericalBowl(0.05, 0.06, 0.02)
    z = np.array([0.03, 0.045, 0.05, 0.06])
    direct = np.abs(ac.rayleigh_points(annulus, np.stack([0 * z, 0 * z, z], axis=1), 2e6, C))
    assert direct == pytest.approx(ac.oneil_axial_pa(z, 0.05, 0.03, 2e6, C, inner_radius_m=0.01), rel=1e-4)


def test_march_reproduces_oneil_axis():
    """HIFU-1 at λ/3 on a 128² window (coarse): peak within 0.5 %, axial L2 within 1 %."""
    rows = hifu_cases.case1_rows(dx_fraction=3, n=128)
    failed = [(r.quantity, r.simulated) for r in rows if not r.passed]
    assert not failed


def test_plane_power_is_the_radiated_power():
    """The plane carries what a uniform bowl radiates, p₀²·S/(2ρc), to 0.1 %."""
    plane = ac.source_plane(KW_BOWL, F, C, KW_BOWL.depth_m + 2e-3, C / F / 3, 128)
    power = ac.plane_power_w(plane.field(np.array([1.0e5])), plane.dx_m, F, C, RHO)
    assert power == pytest.approx(1.0e10 * KW_BOWL.area_m2 / (2 * RHO * C), rel=1e-3)


def test_layered_plane_wave_transmission_and_attenuation():
    """HIFU-5 rows (exact closed forms) all pass."""
    assert all(row.passed for row in hifu_cases.case5_rows())


@settings(max_examples=20, deadline=None)
@given(z1=st.floats(1e5, 1e7), z2=st.floats(1e5, 1e7))
def test_interface_conserves_energy(z1, z2):
    """R² + (Z₁/Z₂)·T² = 1 for any impedances."""
    t = ac.pressure_transmission(z1, z2)
    r = ac.pressure_reflection(z1, z2)
    assert r**2 + t**2 * z1 / z2 == pytest.approx(1.0, rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(alpha=st.floats(0.0, 20.0), y=st.floats(0.5, 2.0), f=st.floats(0.2e6, 3e6))
def test_attenuation_units(alpha, y, f):
    """α₀ dB/cm/MHz^y → Np/m: 1 dB/cm = 11.513 Np/m at 1 MHz; power law in f."""
    np_m = float(ac.attenuation_np_m(alpha, y, f))
    assert np_m == pytest.approx(alpha * (f / 1e6) ** y * 100 * math.log(10) / 20, rel=1e-12)
    assert float(ac.attenuation_np_m(1.0, 1.0, 1e6)) == pytest.approx(11.513, rel=1e-4)


def test_phased_array_steers_to_its_focus():
    """A 64-element spiral array steered 4 mm off axis: the march's peak lands there and agrees with the direct
    Rayleigh sum at the focus within 1 %."""
    array = ac.PhasedArray.spiral(64, 0.06, 0.05, 0.004)
    f = 1.0e6
    dx = C / f / 2
    n = 96
    z0 = array.depth_m + 5e-3
    plane = ac.source_plane(array, f, C, z0, dx, n)
    focus = np.array([4 * dx, 0.0, 0.06])
    weights = array.focusing_weights(focus, f, C)
    field = np.abs(ac.march_water(plane.field(weights), dx, [focus[2] - z0], f, C)[0])
    j, i = np.unravel_index(np.argmax(field), field.shape)
    assert (i - n // 2, j - n // 2) == (4, 0)
    direct = abs(ac.rayleigh_points(array, focus[None, :], f, C, weights=weights)[0])
    assert field[j, i] == pytest.approx(direct, rel=0.01)


def test_annular_array_moves_the_focus_along_the_axis():
    """Four rings focused 10 mm short of the geometric focus: the axial peak moves towards the array."""
    array = ac.AnnularArray(0.05, 0.04, ring_edges=(0.0, 0.01, 0.014, 0.017, 0.02))
    z = np.linspace(0.03, 0.06, 301)
    points = np.stack([0 * z, 0 * z, z], axis=1)
    geometric = np.abs(ac.rayleigh_points(array, points, F, C))
    shifted = np.abs(ac.rayleigh_points(array, points, F, C, weights=array.focusing_weights([0, 0, 0.04], F, C)))
    assert z[np.argmax(shifted)] < z[np.argmax(geometric)] - 5e-3


def test_bad_transducers_are_refused():
    with pytest.raises(PhysicsError, match="spherical cap"):
        ac.SphericalBowl(0.03, 0.07)
    with pytest.raises(PhysicsError, match="overlap"):
        ac.PhasedArray.spiral(256, 0.05, 0.05, 0.008)
    with pytest.raises(PhysicsError, match="inside the bowl"):
        ac.source_plane(KW_BOWL, F, C, 0.001, 0.5e-3, 32)


@settings(max_examples=10, deadline=None)
@given(
    tilt=st.floats(0.0, 1.2),
    spin=st.floats(0.0, 6.28),
    spacing=st.sampled_from([(1.0, 1.0, 1.0), (0.8, 1.2, 2.0)]),
)
def test_deposit_conserves_power_on_any_grid(tilt, spin, spacing):
    """A beam in any direction on an anisotropic grid: the voxel heat sums to the beam grid's (trilinear splat)."""
    grid = Grid(shape=(40, 40, 40), spacing_mm=spacing, origin_mm=(-20.0, -20.0, -20.0), direction=np.eye(3))
    labels = np.ones(grid.shape, np.uint8)
    tables = ac.MediumTables.layers([C, 1580.0], [RHO, 1060.0], [0.0, 6.0])
    axis = np.array([math.sin(tilt) * math.cos(spin), math.sin(tilt) * math.sin(spin), math.cos(tilt)])
    n, dx = 16, 0.5e-3
    placement = ac.BeamPlacement.along(-10.0 * axis, axis, dx, dx, n, 20, 0.0)
    heat = np.zeros(grid.shape, np.float32)
    p0 = np.zeros((n, n), np.complex64)
    p0[6:10, 6:10] = 1e5
    field = ac.patient_field(p0, placement, 1e6, tables, grid, labels, 0, heat_out=heat)
    voxel_m3 = float(np.prod(grid.spacing_mm)) * 1e-9
    assert float(heat.sum(dtype=np.float64)) * voxel_m3 == pytest.approx(field.absorbed_power_w, rel=1e-4)
