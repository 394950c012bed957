"""Geometry: LPS ↔ RAS, rotations, segment distances and signed distance maps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import GridError
from insitu.geometry import (
    affine_lps_to_ras,
    distance_to_segment,
    grid_ras_affine,
    lps_to_ras,
    ras_to_lps,
    rotation_about_axis,
    rotation_between,
    segment_segment_distance,
    segment_segment_distances,
    signed_distance_mm,
)
from insitu.grid import Grid, isotropic_grid

vectors = st.tuples(*[st.floats(-100, 100)] * 3).filter(lambda v: np.linalg.norm(v) > 1e-3)


@given(st.lists(st.tuples(*[st.floats(-1e3, 1e3)] * 3), min_size=1, max_size=10))
def test_lps_ras_is_an_involution_flipping_x_and_y(points):
    p = np.asarray(points)
    np.testing.assert_array_equal(ras_to_lps(lps_to_ras(p)), p)
    np.testing.assert_array_equal(lps_to_ras(p)[:, 2], p[:, 2])
    np.testing.assert_array_equal(lps_to_ras(p)[:, :2], -p[:, :2])


def test_ras_affine_maps_index_to_ras():
    grid = Grid(shape=(4, 5, 6), spacing_mm=(0.5, 0.8, 2.0), origin_mm=(10.0, -20.0, 5.0))
    affine = grid_ras_affine(grid)
    ijk = np.array([3.0, 2.0, 1.0, 1.0])
    np.testing.assert_allclose((affine @ ijk)[:3], lps_to_ras(grid.index_to_world(ijk[:3])))
    np.testing.assert_allclose(affine_lps_to_ras(affine_lps_to_ras(np.eye(4))), np.eye(4))


@settings(deadline=None)
@given(vectors, vectors)
def test_rotation_between_aligns_directions(a, b):
    r = rotation_between(a, b)
    np.testing.assert_allclose(r @ (np.asarray(a) / np.linalg.norm(a)), np.asarray(b) / np.linalg.norm(b), atol=1e-9)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)


@given(vectors, st.floats(-np.pi, np.pi))
def test_rotation_about_axis_keeps_axis(axis, angle):
    r = rotation_about_axis(axis, angle)
    np.testing.assert_allclose(r @ np.asarray(axis), np.asarray(axis), atol=1e-9 * np.linalg.norm(axis) + 1e-12)


def test_zero_direction_is_an_error():
    with pytest.raises(GridError, match="zero"):
        rotation_between((0, 0, 0), (1, 0, 0))


def test_segment_distances():
    assert distance_to_segment(np.array([[0.0, 3.0, 0.0]]), (-1, 0, 0), (1, 0, 0))[0] == pytest.approx(3.0)
    assert distance_to_segment(np.array([[4.0, 0.0, 0.0]]), (-1, 0, 0), (1, 0, 0))[0] == pytest.approx(3.0)
    d = segment_segment_distance(
        np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.5, 2, -1]), np.array([0.5, 2, 1])
    )
    assert d == pytest.approx(2.0)
    parallel = segment_segment_distance(
        np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0]), np.array([1.0, 1, 0])
    )
    assert parallel == pytest.approx(1.0)


def test_signed_distance_of_a_sphere_converges():
    """Signed distance of a voxelised sphere matches |r| − R within half a voxel."""
    grid = isotropic_grid((60, 60, 60), 1.0)
    xyz = grid.world_coordinates_mm(np.float64)
    r = np.linalg.norm(xyz, axis=-1)
    mask = r <= 15.0
    sd = signed_distance_mm(mask, grid)
    band = np.abs(r - 15.0) < 10.0
    assert np.max(np.abs(sd[band] - (r[band] - 15.0))) < 0.9
    assert sd[mask].max() < 0 < sd[~mask].min()


def test_signed_distance_anisotropic_plane_is_exact():
    grid = Grid(shape=(30, 10, 10), spacing_mm=(1.0, 1.0, 0.5))
    mask = np.zeros(grid.shape, bool)
    mask[:12] = True  # plane between k=11 and k=12
    sd = signed_distance_mm(mask, grid)
    np.testing.assert_allclose(sd[11, 5, 5], -0.25)
    np.testing.assert_allclose(sd[12, 5, 5], 0.25)
    np.testing.assert_allclose(sd[20, 5, 5], 0.25 + 8 * 0.5)


@given(st.lists(st.floats(-20.0, 20.0), min_size=12, max_size=12))
@settings(max_examples=200, deadline=None)
def test_vectorised_segment_distance_matches_the_scalar_one(values):
    p0, p1, q0, q1 = (np.array(values[3 * n : 3 * n + 3]) for n in range(4))
    expected = segment_segment_distance(p0, p1, q0, q1)
    got = float(segment_segment_distances(p0[None], p1[None], q0[None], q1[None])[0])
    assert got == pytest.approx(expected, abs=1e-9 * (1.0 + expected))
