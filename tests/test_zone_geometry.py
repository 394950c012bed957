"""Zone long/short axes and volume (therapies/zone_geometry.py) on shapes with known extents."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.grid import Grid
from insitu.therapies.zone_geometry import zone_axes_mm


def _grid(shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0)) -> Grid:
    return Grid(shape=shape, spacing_mm=spacing, origin_mm=(0.0, 0.0, 0.0))


def test_box_zone_axes_are_its_edges():
    grid = _grid(spacing=(0.5, 0.5, 1.0))
    zone = np.zeros(grid.shape, bool)
    zone[5:25, 10:20, 4:16] = True  # k: 20 voxels × 1 mm, j: 10 × 0.5 mm, i: 12 × 0.5 mm
    axes = zone_axes_mm(zone, grid, np.array([0.0, 0.0, 1.0]))  # along z (k)
    assert axes["long_axis_mm"] == pytest.approx(20.0)
    # widest perpendicular extent of a 6 × 5 mm rectangle is its diagonal
    assert axes["short_axis_mm"] == pytest.approx(np.hypot(6.0, 5.0), rel=2e-3)
    assert axes["zone_volume_ml"] == pytest.approx(20 * 10 * 12 * 0.25e-3)


@settings(max_examples=20, deadline=None)
@given(
    radius=st.floats(4.0, 12.0),
    half_length=st.floats(6.0, 16.0),
    theta=st.floats(0.0, np.pi),
    phi=st.floats(0.0, 2 * np.pi),
)
def test_spheroid_axes_match_its_semi_axes_in_any_direction(radius, half_length, theta, phi):
    grid = _grid(shape=(48, 48, 48), spacing=(1.0, 1.0, 1.0))
    d = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    centre = np.array([24.0, 24.0, 24.0])
    points = grid.world_coordinates_mm(np.float64) - centre
    along = points @ d
    across = np.linalg.norm(points - along[..., None] * d, axis=-1)
    zone = (along / half_length) ** 2 + (across / radius) ** 2 <= 1.0
    axes = zone_axes_mm(zone, grid, d)
    # voxelised: extents within about two voxels of the continuous shape
    assert axes["long_axis_mm"] == pytest.approx(2 * half_length, abs=2.2)
    assert axes["short_axis_mm"] == pytest.approx(2 * radius, abs=2.2)


def test_empty_zone_has_zero_axes():
    grid = _grid()
    axes = zone_axes_mm(np.zeros(grid.shape, bool), grid, np.array([1.0, 0.0, 0.0]))
    assert axes == {
        "long_axis_mm": 0.0,
        "short_axis_mm": 0.0,
        "vertical_axis_mm": 0.0,
        "zone_volume_ml": 0.0,
        "ellipsoid_volume_ml": 0.0,
    }


@settings(max_examples=20, deadline=None)
@given(
    radius=st.floats(4.0, 12.0),
    half_length=st.floats(6.0, 16.0),
    offset=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
)
def test_a_level_field_gives_sub_voxel_axes(radius, half_length, offset):
    """With the continuous level (here the spheroid's implicit function) the boundary is interpolated between voxel
    centres: the axes agree with the continuous shape to a small fraction of a voxel (the voxel set alone: ±1)."""
    grid = _grid(shape=(48, 48, 48), spacing=(1.0, 1.0, 1.0))
    centre = np.array([24.0, 24.0, 24.0]) + np.asarray(offset)
    p = grid.world_coordinates_mm(np.float64) - centre
    level = 1.0 - np.sqrt((p[..., 2] / half_length) ** 2 + (p[..., 0] / radius) ** 2 + (p[..., 1] / radius) ** 2)
    zone = level >= 0.0
    axes = zone_axes_mm(zone, grid, np.array([0.0, 0.0, 1.0]), level=level.astype(np.float32))
    # boundary points lie on grid lines: an end whose apex falls between them (≤ h/√2 off) is missed by at most
    # d²/(2R), R the surface's radius of curvature there (r²/L at the poles, L²/r ≥ r at the equator), h = 1 mm
    pole_mm = 0.5 / (2 * radius**2 / half_length)
    assert axes["long_axis_mm"] == pytest.approx(2 * half_length, abs=0.05 + 2 * pole_mm)
    assert axes["short_axis_mm"] == pytest.approx(2 * radius, abs=0.15)
    assert axes["zone_volume_ml"] == pytest.approx(np.count_nonzero(zone) * 1e-3)


@settings(max_examples=15, deadline=None)
@given(
    semi_axes=st.tuples(st.floats(9.0, 16.0), st.floats(7.5, 12.0), st.floats(4.0, 7.0)),
    offset=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
)
def test_three_diameters_and_the_ellipsoid_volume_of_a_triaxial_zone(semi_axes, offset):
    """A tri-axial ellipsoid along z (semi-axes c, a > b): Dl = 2c, Ds = 2a (the widest across), Dv = 2b (the narrowest
    across), and π/6·Dl·Ds·Dv is its volume 4/3·π·abc, as gross-pathology studies compute a zone's volume."""
    c, a, b = semi_axes
    grid = _grid(shape=(48, 48, 48), spacing=(1.0, 1.0, 1.0))
    centre = np.array([24.0, 24.0, 24.0]) + np.asarray(offset)
    p = grid.world_coordinates_mm(np.float64) - centre
    level = 1.0 - np.sqrt((p[..., 2] / c) ** 2 + (p[..., 0] / a) ** 2 + (p[..., 1] / b) ** 2)
    zone = level >= 0.0
    axes = zone_axes_mm(zone, grid, np.array([0.0, 0.0, 1.0]), level=level.astype(np.float32))
    # extents from boundary points on grid lines: ends are missed by at most d²/(2R) (see the test above)
    assert axes["long_axis_mm"] == pytest.approx(2 * c, abs=0.05 + c / (2 * b * b))
    assert axes["short_axis_mm"] == pytest.approx(2 * a, abs=0.15 + a / (2 * b * b))
    assert axes["vertical_axis_mm"] == pytest.approx(2 * b, abs=0.15)
    exact_ml = 4.0 / 3.0 * np.pi * a * b * c * 1e-3
    assert axes["ellipsoid_volume_ml"] == pytest.approx(exact_ml, rel=0.04)
    # the voxel count of a smooth convex zone agrees with the ellipsoid figure to its surface voxels
    assert axes["zone_volume_ml"] == pytest.approx(exact_ml, rel=0.1)


def test_a_zone_touching_the_grid_face_ends_half_a_voxel_out():
    grid = _grid(shape=(10, 10, 10))
    zone = np.zeros(grid.shape, bool)
    zone[0:4, 3:6, 3:6] = True
    level = np.where(zone, 1.0, -1.0).astype(np.float32)  # a jump: the boundary half-way between the centres
    axes = zone_axes_mm(zone, grid, np.array([0.0, 0.0, 1.0]), level=level)
    assert axes["long_axis_mm"] == pytest.approx(4.0)  # from the face (−0.5) to half-way past k = 3
