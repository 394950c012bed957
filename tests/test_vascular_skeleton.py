"""Vessel trees from masks (insitu.vascular.skeleton): rasterize a known tree, extract it back, compare.

Every tolerance is a fraction of the voxel size (the brief for issue 8): branch points within 1.5 voxels,
radii within half a voxel (one voxel on the anisotropic grid), total length within 5 %. No literature
numbers are involved; the reference is the hand-built tree itself. Measured errors when this file was
written (0.5 mm grid): branch points ≤ 0.25 mm, terminal ends ≤ 0.14 mm, radii ≤ 0.07 mm, length +0.7 %;
on 0.5 × 0.5 × 1.0 mm: branch points ≤ 0.56 mm, radii ≤ 0.07 mm, length +1.8 %.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from insitu.errors import PlanError, StructureError
from insitu.grid import Grid
from insitu.vascular.flow import solve_flow
from insitu.vascular.skeleton import SkeletonExtraction, extract_tree, tree_from_mask
from insitu.vascular.tree import VesselTree

# trunk r = 3 mm, two daughters r = 2 mm, four granddaughters r = 1.5 mm (LPS mm)
POINTS_MM = np.array(
    [[24, 24, 4], [24, 24, 18], [15, 24, 28], [33, 24, 28], [9, 17, 38], [12, 32, 40], [39, 17, 38], [36, 32, 40]],
    dtype=float,
)
PARENT = [-1, 0, 1, 1, 2, 2, 3, 3]
RADIUS_MM = [3.0, 3.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.5]
BRANCH_POINTS = [1, 2, 3]
TERMINALS = [4, 5, 6, 7]
ISO_MM = (0.5, 0.5, 0.5)
ANISO_MM = (0.5, 0.5, 1.0)


def truth() -> VesselTree:
    return VesselTree(POINTS_MM, PARENT, RADIUS_MM, name="synthetic", kind="hepatic_artery")


def grid_for(spacing_mm: tuple[float, float, float], origin_mm=(0.0, 0.0, 0.0)) -> Grid:
    """A 48 mm cube holding the synthetic tree (96³ voxels at 0.5 mm)."""
    return Grid(shape=(round(48 / spacing_mm[2]), 96, 96), spacing_mm=spacing_mm, origin_mm=origin_mm)


@cache
def extracted(spacing_mm: tuple[float, float, float]) -> tuple[SkeletonExtraction, Grid, np.ndarray]:
    grid = grid_for(spacing_mm)
    mask = truth().rasterize(grid)
    ex = extract_tree(mask, grid, kind="hepatic_artery", name="synthetic", min_branch_mm=1.0, segment_length_mm=4.0)
    return ex, grid, mask


def _distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    t = np.clip((p - a) @ d / (d @ d), 0.0, 1.0)
    return float(np.linalg.norm(p - a - t * d))


def radius_errors_mm(tree: VesselTree) -> np.ndarray:
    """Extracted minus true radius of every segment, matched to the true segment nearest its midpoint."""
    out = []
    for n in range(1, tree.n_nodes):
        mid = 0.5 * (tree.points_mm[n] + tree.points_mm[tree.parent[n]])
        dist = [_distance_to_segment(mid, POINTS_MM[PARENT[k]], POINTS_MM[k]) for k in range(1, len(PARENT))]
        out.append(tree.radius_mm[n] - RADIUS_MM[1 + int(np.argmin(dist))])
    return np.asarray(out)


def nearest_mm(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance from every target to its nearest point."""
    return np.min(np.linalg.norm(points[None, :, :] - targets[:, None, :], axis=2), axis=1)


# ---------------------------------------------------------------------- the synthetic tree, back again
@pytest.mark.parametrize(
    ("spacing_mm", "branch_tol_mm", "radius_tol_mm"),
    [(ISO_MM, 0.75, 0.25), (ANISO_MM, 1.5, 0.5)],  # 1.5 voxels; ½ voxel (iso) or 1 in-plane voxel (aniso)
)
def test_synthetic_tree_comes_back(spacing_mm, branch_tol_mm, radius_tol_mm):
    ex, _, _ = extracted(spacing_mm)
    tree, report = ex.tree, ex.report
    tree.validate()
    assert tree.terminals.size == 4
    assert tree.bifurcations.size == 3
    assert np.all(nearest_mm(tree.points_mm[tree.bifurcations], POINTS_MM[BRANCH_POINTS]) <= branch_tol_mm)
    assert np.all(nearest_mm(tree.points_mm[tree.terminals], POINTS_MM[TERMINALS]) <= branch_tol_mm)
    assert np.linalg.norm(tree.points_mm[0] - POINTS_MM[0]) <= branch_tol_mm  # thickest end = trunk inlet
    assert np.max(np.abs(radius_errors_mm(tree))) <= radius_tol_mm
    assert abs(tree.radius_mm[0] - 3.0) <= radius_tol_mm
    length = tree.statistics()["total_length_mm"]
    assert abs(length / truth().statistics()["total_length_mm"] - 1.0) <= 0.05
    assert report.connected and report.bridges == () and report.cycles_broken == 0
    assert report.n_branches == 7 and tree.name == "synthetic" and tree.kind == "hepatic_artery"


def test_iso_errors_are_well_inside_half_a_voxel():
    """The measured errors quoted in the module docstring (0.5 mm grid), with a margin."""
    ex, _, _ = extracted(ISO_MM)
    tree = ex.tree
    assert np.max(np.abs(radius_errors_mm(tree))) <= 0.1
    assert np.max(nearest_mm(tree.points_mm[tree.bifurcations], POINTS_MM[BRANCH_POINTS])) <= 0.35


def test_flow_solver_runs_on_the_extracted_tree():
    ex, _, _ = extracted(ISO_MM)
    sol = solve_flow(ex.tree, inlet_pressure_mmhg=100.0, outlet_pressure_mmhg=60.0)
    assert sol.inlet_flow_m3_s > 0.0
    assert sol.max_relative_imbalance() < 1e-12
    assert np.sum(sol.terminal_outflow_m3_s) == pytest.approx(sol.inlet_flow_m3_s, rel=1e-12)


def test_translating_the_grid_translates_the_tree_exactly():
    offset = np.array([10.0, -5.0, 3.0])
    grid = grid_for(ISO_MM, origin_mm=tuple(offset))
    mask = truth().translate(offset).rasterize(grid)
    ex0, _, mask0 = extracted(ISO_MM)
    assert np.array_equal(mask, mask0)
    moved = tree_from_mask(
        mask, grid, kind="hepatic_artery", name="synthetic", min_branch_mm=1.0, segment_length_mm=4.0
    )
    np.testing.assert_allclose(moved.points_mm - offset, ex0.tree.points_mm, atol=1e-9)
    np.testing.assert_array_equal(moved.parent, ex0.tree.parent)
    np.testing.assert_allclose(moved.radius_mm, ex0.tree.radius_mm, rtol=1e-12)


def test_integer_mask_gives_the_same_tree():
    ex0, grid, mask = extracted(ISO_MM)
    again = tree_from_mask(
        mask.astype(np.uint8), grid, kind="hepatic_artery", name="synthetic", min_branch_mm=1.0, segment_length_mm=4.0
    )
    assert again == ex0.tree


def test_given_root_reorients_the_tree():
    ex0, grid, mask = extracted(ISO_MM)
    tree = tree_from_mask(mask, grid, root_mm=POINTS_MM[4] + 0.3, min_branch_mm=1.0, segment_length_mm=4.0)
    tree.validate()
    assert np.linalg.norm(tree.points_mm[0] - POINTS_MM[4]) <= 0.75
    assert abs(tree.radius_mm[0] - 1.5) <= 0.25
    assert tree.terminals.size == 4 and tree.bifurcations.size == 3
    assert np.any(np.linalg.norm(tree.points_mm[tree.terminals] - POINTS_MM[0], axis=1) <= 0.75)  # old inlet
    assert tree.statistics()["total_length_mm"] == pytest.approx(ex0.tree.statistics()["total_length_mm"], rel=0.02)


# ---------------------------------------------------------------------- repairs
def cut_branch(mask: np.ndarray, grid: Grid, child: int, width_mm: float) -> np.ndarray:
    """The mask with a slab ``width_mm`` thick removed across the middle of segment ``child``."""
    a, b = POINTS_MM[PARENT[child]], POINTS_MM[child]
    axis = (b - a) / np.linalg.norm(b - a)
    xyz = grid.world_coordinates_mm(np.float64) - a
    t = xyz @ axis
    off = np.linalg.norm(xyz - t[..., None] * axis, axis=-1)
    start = 0.5 * np.linalg.norm(b - a)
    out = mask.copy()
    out[(t >= start) & (t < start + width_mm) & (off <= RADIUS_MM[child] + 1.0)] = False
    return out


@cache
def cut_mask() -> tuple[np.ndarray, Grid, np.ndarray]:
    _, grid, mask = extracted(ISO_MM)
    cut = cut_branch(mask, grid, child=4, width_mm=1.0)  # a 2-voxel gap in a granddaughter (r = 1.5 mm)
    labels, n = ndimage.label(cut, structure=np.ones((3, 3, 3)))
    assert n == 2  # the cut really separates the mask
    return cut, grid, labels


def test_two_voxel_gap_is_bridged_at_3_mm():
    cut, grid, _ = cut_mask()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not connected" warning
        ex = extract_tree(cut, grid, max_gap_mm=3.0, min_branch_mm=1.0, segment_length_mm=4.0)
    assert len(ex.report.bridges) == 1
    assert ex.report.bridges[0].gap_mm == pytest.approx(1.0, abs=0.5)  # the 1 mm slab, ± one voxel
    assert ex.report.connected and ex.report.left_out_volumes_mm3 == ()
    assert ex.tree.terminals.size == 4 and ex.tree.bifurcations.size == 3
    assert np.all(nearest_mm(ex.tree.points_mm[ex.tree.terminals], POINTS_MM[TERMINALS]) <= 0.75)
    length = ex.tree.statistics()["total_length_mm"]
    assert abs(length / truth().statistics()["total_length_mm"] - 1.0) <= 0.05


def test_two_voxel_gap_is_reported_at_half_a_mm():
    cut, grid, labels = cut_mask()
    with pytest.warns(UserWarning, match="not connected to the root"):
        ex = extract_tree(cut, grid, max_gap_mm=0.5, min_branch_mm=1.0, segment_length_mm=4.0)
    assert ex.report.bridges == () and len(ex.report.disconnected_lengths_mm) == 1
    # the piece left out is exactly the smaller mask piece (voxel count × voxel volume)
    small = int(np.min(np.bincount(labels.ravel())[1:]))
    assert ex.report.left_out_volumes_mm3 == pytest.approx((small * 0.125,), abs=1e-9)
    ex.tree.validate()
    with pytest.raises(StructureError, match="not connected to the root"):
        tree_from_mask(cut, grid, max_gap_mm=0.5, min_branch_mm=1.0, require_connected=True)


TRUNK = VesselTree([[3.0, 10.0, 10.0], [37.0, 10.0, 10.0]], [-1, 0], [2.5, 2.5])
SMALL_GRID = Grid(shape=(40, 40, 80), spacing_mm=ISO_MM)


@pytest.mark.parametrize(
    ("protrusion_mm", "min_branch_mm", "kept"), [(1.0, 2.0, False), (1.0, 0.0, True), (5.0, 2.0, True)]
)
def test_short_side_stub_is_pruned(protrusion_mm, min_branch_mm, kept):
    """A 1 mm-radius stub sticking ``protrusion_mm`` out of a 2.5 mm trunk is kept only when it protrudes enough."""
    stub = VesselTree([[20.0, 10.0, 10.0], [20.0, 12.5 + protrusion_mm, 10.0]], [-1, 0], [1.0, 1.0])
    mask = TRUNK.rasterize(SMALL_GRID) | stub.rasterize(SMALL_GRID)
    ex = extract_tree(mask, SMALL_GRID, min_branch_mm=min_branch_mm)
    assert ex.tree.bifurcations.size == (1 if kept else 0)
    assert ex.tree.terminals.size == (2 if kept else 1)
    assert ex.report.spurs_pruned == (0 if kept else 1)
    assert np.all(np.abs(ex.tree.radius_mm[ex.tree.radius_mm > 2.0] - 2.5) <= 0.25)


def test_loop_is_broken_at_its_thin_side():
    detour = VesselTree([[12, 10, 10], [16, 16, 10], [24, 16, 10], [28, 10, 10]], [-1, 0, 1, 2], [1.0] * 4)
    mask = TRUNK.rasterize(SMALL_GRID) | detour.rasterize(SMALL_GRID)
    ex = extract_tree(mask, SMALL_GRID)
    assert ex.report.cycles_broken == 1
    assert ex.tree.bifurcations.size == 0 and ex.tree.terminals.size == 1
    assert np.all(np.abs(ex.tree.radius_mm - 2.5) <= 0.25)  # the 1 mm detour went, the trunk stayed
    assert ex.tree.statistics()["total_length_mm"] == pytest.approx(34.0, rel=0.05)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    radius_mm=st.floats(1.0, 3.0),
    length_mm=st.floats(12.0, 20.0),
    theta=st.floats(0.0, np.pi),
    phi=st.floats(0.0, 2.0 * np.pi),
)
def test_straight_vessel_any_direction(radius_mm, length_mm, theta, phi):
    """One straight capsule: one branch, radius within half a voxel, ends within two voxels."""
    grid = Grid(shape=(64, 64, 64), spacing_mm=ISO_MM)
    d = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    a, b = 16.0 - 0.5 * length_mm * d, 16.0 + 0.5 * length_mm * d
    mask = VesselTree([a, b], [-1, 0], [radius_mm, radius_mm]).rasterize(grid)
    tree = tree_from_mask(mask, grid)
    assert tree.bifurcations.size == 0 and tree.terminals.size == 1
    assert np.max(np.abs(tree.radius_mm - radius_mm)) <= 0.25
    ends = tree.points_mm[[0, int(tree.terminals[0])]]
    assert np.all(nearest_mm(ends, np.array([a, b])) <= 1.0)


# ---------------------------------------------------------------------- bad input
def test_bad_input_gives_one_line_errors():
    _, grid, mask = extracted(ISO_MM)
    with pytest.raises(StructureError, match="empty"):
        tree_from_mask(np.zeros(grid.shape, dtype=bool), grid)
    with pytest.raises(StructureError, match="shape"):
        tree_from_mask(mask[:, :, :-1], grid)
    with pytest.raises(StructureError, match="root point"):
        tree_from_mask(mask, grid, root_mm=(1.0, 1.0, 46.0))
    with pytest.raises(StructureError, match="three"):
        tree_from_mask(mask, grid, root_mm=(1.0, 2.0))
    with pytest.raises(PlanError, match="max_gap_mm"):
        tree_from_mask(mask, grid, max_gap_mm=-1.0)
    with pytest.raises(PlanError, match="segment_length_mm"):
        tree_from_mask(mask, grid, segment_length_mm=0.0)
    with pytest.raises(PlanError, match="min_branch_mm"):
        tree_from_mask(mask, grid, min_branch_mm=float("nan"))
    with pytest.raises(StructureError, match="non-finite"):
        tree_from_mask(np.where(mask, np.nan, 0.0), grid)


@pytest.mark.parametrize("shape", ["sphere", "cube"])
def test_blob_without_tubes_is_refused(shape):
    grid = Grid(shape=(48, 48, 48), spacing_mm=ISO_MM)
    xyz = grid.world_coordinates_mm(np.float64) - 12.0
    blob = np.linalg.norm(xyz, axis=-1) <= 8.0 if shape == "sphere" else np.all(np.abs(xyz) <= 6.0, axis=-1)
    with pytest.raises(StructureError, match="no tubular structure") as info:
        tree_from_mask(blob, grid)
    assert "\n" not in str(info.value)
