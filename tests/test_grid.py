"""Grid: world ↔ index round trips (oblique, anisotropic), crop, resample, validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from insitu.errors import GridError
from insitu.grid import Grid, isotropic_grid

spacings = st.tuples(*[st.floats(0.2, 5.0)] * 3)
origins = st.tuples(*[st.floats(-500.0, 500.0)] * 3)
rotations = st.tuples(*[st.floats(-1.0, 1.0)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)
shapes = st.tuples(*[st.integers(1, 60)] * 3)


def _grid(shape, spacing, origin, quaternion) -> Grid:
    direction = Rotation.from_quat(np.asarray(quaternion) / np.linalg.norm(quaternion)).as_matrix()
    return Grid(shape=shape, spacing_mm=spacing, origin_mm=origin, direction=direction)


@settings(max_examples=200, deadline=None)
@given(
    shapes,
    spacings,
    origins,
    rotations,
    st.lists(st.tuples(*[st.floats(-1.0, 80.0)] * 3), min_size=1, max_size=20),
)
def test_index_world_round_trip_oblique_anisotropic(shape, spacing, origin, quaternion, points):
    grid = _grid(shape, spacing, origin, quaternion)
    ijk = np.asarray(points)
    world = grid.index_to_world(ijk)
    back = grid.world_to_index(world)
    np.testing.assert_allclose(back, ijk, atol=1e-7 * (1 + np.abs(ijk).max()))


@settings(max_examples=200, deadline=None)
@given(shapes, spacings, origins, rotations, st.data())
def test_integer_voxel_round_trip(shape, spacing, origin, quaternion, data):
    grid = _grid(shape, spacing, origin, quaternion)
    kji = tuple(data.draw(st.integers(0, n - 1)) for n in grid.shape)
    center = grid.index_to_world([kji[2], kji[1], kji[0]])
    # any point within a third of a voxel of the centre maps back to the same voxel
    offset = np.asarray(data.draw(st.tuples(*[st.floats(-0.33, 0.33)] * 3)))
    point = grid.index_to_world(np.array([kji[2], kji[1], kji[0]]) + offset)
    assert grid.world_to_kji(center) == kji
    assert grid.world_to_kji(point) == kji


@settings(max_examples=100, deadline=None)
@given(shapes, spacings, origins, rotations)
def test_distances_scale_with_spacing(shape, spacing, origin, quaternion):
    grid = _grid(shape, spacing, origin, quaternion)
    a = grid.index_to_world([0, 0, 0])
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1.0
        assert np.linalg.norm(grid.index_to_world(step) - a) == pytest.approx(spacing[axis], rel=1e-9)


def test_affine_matches_itk_convention():

    direction = Rotation.from_euler("zyx", [20, -10, 5], degrees=True).as_matrix()
    grid = Grid(
        shape=(5, 6, 7),
        spacing_mm=(0.7, 1.1, 2.5),
        origin_mm=(-10.0, 4.0, 33.0),
        direction=direction,
    )
    image = grid.to_sitk(np.zeros(grid.shape, np.float32))
    for ijk in ([0, 0, 0], [6, 5, 4], [3, 1, 2]):
        expected = image.TransformIndexToPhysicalPoint([int(v) for v in ijk])
        np.testing.assert_allclose(grid.index_to_world(ijk), expected, atol=1e-9)
    assert Grid.from_sitk(image) == grid


def test_crop_to_mask_with_margin_keeps_world_positions():
    grid = Grid(shape=(40, 50, 60), spacing_mm=(0.5, 1.0, 2.0), origin_mm=(3.0, -2.0, 7.0))
    mask = np.zeros(grid.shape, bool)
    mask[10:15, 20:22, 30:31] = True
    sub, slices = grid.crop_to_mask(mask, margin_mm=4.0)
    # margins: 4 mm is 2 voxels in k (2 mm), 4 in j (1 mm), 8 in i (0.5 mm)
    assert sub.shape == (5 + 4, 2 + 8, 1 + 16)
    np.testing.assert_allclose(
        sub.index_to_world([0, 0, 0]),
        grid.index_to_world([slices[2].start, slices[1].start, slices[0].start]),
    )
    assert mask[slices].sum() == mask.sum()


def test_crop_clips_to_the_grid_and_rejects_empty():
    grid = isotropic_grid((20, 20, 20), 1.0)
    sub, _ = grid.crop((-5, -5, -5), (5, 30, 3))
    assert sub.shape == (5, 20, 3)
    with pytest.raises(GridError, match="empty"):
        grid.crop((5, 5, 5), (5, 6, 6))
    with pytest.raises(GridError, match="empty mask"):
        grid.crop_to_mask(np.zeros(grid.shape, bool))


def test_resample_preserves_a_linear_field_and_labels():
    grid = Grid(shape=(20, 24, 28), spacing_mm=(1.0, 1.0, 2.0), origin_mm=(0.0, 0.0, 0.0))
    xyz = grid.world_coordinates_mm(np.float64)
    field = (2.0 * xyz[..., 0] - 0.5 * xyz[..., 1] + 0.25 * xyz[..., 2]).astype(np.float32)
    target = Grid(shape=(16, 20, 22), spacing_mm=(1.3, 1.1, 1.7), origin_mm=(2.0, 1.5, 3.0))
    out = grid.resample(field, target, "linear")
    txyz = target.world_coordinates_mm(np.float64)
    expected = 2.0 * txyz[..., 0] - 0.5 * txyz[..., 1] + 0.25 * txyz[..., 2]
    inside = grid.contains_world(txyz) & np.all(grid.world_to_index(txyz) <= np.array(grid.size_ijk) - 1, axis=-1)
    inside &= np.all(grid.world_to_index(txyz) >= 0, axis=-1)
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-3)
    labels = np.zeros(grid.shape, np.uint8)
    labels[5:15, 5:15, 5:15] = 7
    resampled = grid.resample(labels, target, "nearest")
    assert set(np.unique(resampled)) <= {0, 7}


def test_with_spacing_keeps_extent():
    grid = Grid(shape=(10, 20, 30), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0))
    fine = grid.with_spacing((0.5, 0.5, 0.5))
    assert fine.shape == (20, 40, 60)
    np.testing.assert_allclose(fine.bounds_mm()[0], grid.bounds_mm()[0])
    np.testing.assert_allclose(fine.bounds_mm()[1], grid.bounds_mm()[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "zero or negative"),
        ({"spacing_mm": (1.0, float("nan"), 1.0)}, "not finite"),
        ({"spacing_mm": (1.0, 1.0)}, "three values"),
        ({"origin_mm": (0.0, float("inf"), 0.0)}, "not finite"),
        ({"direction": np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]])}, "orthonormal"),
        ({"shape": (0, 3, 3)}, "positive"),
    ],
)
def test_bad_grids_raise_one_line_errors(kwargs, message):
    args = {"shape": (3, 3, 3)} | kwargs
    with pytest.raises(GridError, match=message) as info:
        Grid(**args)
    assert "\n" not in str(info.value)


def test_world_to_kji_outside_names_bounds():
    grid = isotropic_grid((10, 10, 10), 1.0)
    with pytest.raises(GridError, match="outside the grid"):
        grid.world_to_kji((100.0, 0.0, 0.0))


def test_require_match_names_both_grids():
    a = isotropic_grid((10, 10, 10), 1.0)
    b = isotropic_grid((10, 10, 10), 2.0)
    with pytest.raises(GridError, match="different grid"):
        a.require_match(b, "label image")
