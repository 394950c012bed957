"""Straight percutaneous paths (insitu.planning.trajectory) on the coarse phantom and on hand-built scenes.

Every returned path is re-checked here independently of the planner's distance volumes: the axis is sampled every
0.1 mm against the structure masks, and its exact distance to every voxel centre of a hard structure is computed with
:func:`insitu.geometry.distance_to_segment`. The planner's guarantee (trajectory.py) is that this distance is at least
radius + margin + half a voxel (the structure's surface lies half a voxel beyond its voxel centres).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insitu.errors import PlanError
from insitu.geometry import distance_to_segment, points_along_segment
from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.phantom import PhantomSpec, make_phantom
from insitu.patient.structure import Role, Structure
from insitu.planning.trajectory import (
    OUTSIDE_BODY,
    TrajectoryScene,
    applicator_reach,
    load_rules,
    march_paths,
    plan_trajectories,
)

SPACING_MM = 3.0
RF = "rf-cooled-17g-30mm"  # 17G: radius 0.735 mm; modelled reach 150 + 30 mm
RF_RADIUS_MM = 0.735
TIP_OFFSET_MM = 15.0  # the electrode's tip 15 mm past the tumour centre
BEHIND_SPINE_MM = (0.0, 30.0, -9.0)  # prevertebral fat, just anterior to the vertebral body (y 36–99 mm)
HARD = {  # phantom structure → its category's margin in trajectory.yaml
    "ribs": "bone",
    "costal_cartilage": "bone",
    "spine": "bone",
    "lungs": "lung",
    "heart": "heart",
    "gallbladder": "gallbladder",
    "colon": "bowel",
    "stomach": "bowel",
    "bowel_gas": "gas",
    "stomach_gas": "gas",
}
SHADOW = ("ribs", "spine", "lungs", "bowel_gas", "stomach_gas")


@pytest.fixture(scope="module")
def phantom() -> Patient:
    return make_phantom(PhantomSpec(spacing_mm=SPACING_MM))


@pytest.fixture(scope="module")
def scene(phantom: Patient) -> TrajectoryScene:
    return TrajectoryScene.build(phantom)


@pytest.fixture(scope="module")
def tumour_mm(phantom: Patient) -> np.ndarray:
    return np.asarray(phantom.structures["tumor_1"].centroid_mm)


def voxels_on(patient: Patient, name: str, points_mm: np.ndarray) -> int:
    """How many sample points fall in a voxel of ``name`` (nearest voxel centre)."""
    grid = patient.grid
    ijk = grid.world_to_voxel(points_mm)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(grid.size_ijk)), axis=1)
    i, j, k = ijk[inside].T
    return int(patient.structures[name].mask[k, j, i].sum())


def exact_distance_mm(patient: Patient, name: str, start: np.ndarray, end: np.ndarray) -> float:
    """Shortest distance from the segment to any voxel centre of ``name``."""
    kji = np.argwhere(patient.structures[name].mask)
    centres = patient.grid.index_to_world(kji[:, ::-1])
    return float(distance_to_segment(centres, start, end).min())


def tilt_deg(entry: np.ndarray, tip: np.ndarray) -> float:
    d = tip - entry
    return math.degrees(math.asin(abs(d[2]) / float(np.linalg.norm(d))))


# ---------------------------------------------------------------------------------------------- CT, phantom
def test_ct_paths_to_the_segment_viii_tumour_cross_no_bone_lung_or_heart(phantom, scene, tumour_mm):
    paths = plan_trajectories(scene, tumour_mm, guidance="ct", device=RF, tip_offset_mm=TIP_OFFSET_MM)
    rules = load_rules()
    assert len(paths) == 5
    assert [p.score for p in paths] == sorted(p.score for p in paths)
    half_voxel = 0.5 * SPACING_MM
    for path in paths:
        axis = points_along_segment(path.entry_mm, path.tip_mm, 0.1)
        for name in HARD:
            assert voxels_on(phantom, name, axis) == 0, name
            # the whole applicator keeps the category's margin from the structure's surface
            need = RF_RADIUS_MM + rules.margin_of(HARD[name]) + half_voxel
            assert exact_distance_mm(phantom, name, path.entry_mm, path.tip_mm) >= need - 1e-6, name
            assert path.distances_mm[name] >= RF_RADIUS_MM + rules.margin_of(HARD[name]) - 1e-6, name
        # geometry: entry on the skin, tip 15 mm past the target along the axis, reach and tilt honoured
        assert voxels_on(phantom, "skin", path.entry_mm[None]) == 1
        np.testing.assert_allclose(path.tip_mm, tumour_mm + TIP_OFFSET_MM * path.direction, atol=1e-9)
        assert path.length_mm == pytest.approx(float(np.linalg.norm(path.tip_mm - path.entry_mm)))
        assert path.length_mm <= 180.0
        assert path.tilt_deg == pytest.approx(tilt_deg(path.entry_mm, path.tip_mm)) and path.tilt_deg <= 30.0
        # what it passes through: from the skin into the tumour, lengths adding up to the path
        names = [name for name, _ in path.passes_through]
        assert names[0] == "skin" and "tumor_1" in names and "liver" in names
        assert sum(length for _, length in path.passes_through) == pytest.approx(path.length_mm, abs=SPACING_MM)
    best = paths[0]
    assert best.placement_fields() == {"tip_mm": list(best.tip_mm), "entry_mm": list(best.entry_mm)}
    assert best.summary()["length_mm"] == round(best.length_mm, 1)
    # alternatives, not neighbours
    entries = np.array([p.entry_mm for p in paths])
    gaps = np.linalg.norm(entries[:, None] - entries[None], axis=2)[np.triu_indices(len(paths), 1)]
    assert gaps.min() >= rules.min_separation_mm


def test_in_plane_ct_paths_lie_in_the_targets_axial_plane(phantom, scene, tumour_mm):
    paths = plan_trajectories(scene, tumour_mm, device=RF, in_plane_only=True, n_best=3)
    assert paths
    for path in paths:
        assert path.tilt_deg == 0.0
        assert path.entry_mm[2] == path.tip_mm[2] == tumour_mm[2]
        axis = points_along_segment(path.entry_mm, path.tip_mm, 0.1)
        assert all(voxels_on(phantom, name, axis) == 0 for name in HARD)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(min_value=0, max_value=10**9), limit_deg=st.floats(min_value=2.0, max_value=45.0))
def test_ct_tilt_limit_holds_for_random_liver_targets(phantom, scene, pick, limit_deg):
    liver = np.argwhere(phantom.structures["liver"].mask)
    target = phantom.grid.index_to_world(liver[pick % len(liver)][::-1])
    try:
        paths = plan_trajectories(scene, target, device=RF, max_tilt_deg=limit_deg, n_best=4)
    except PlanError as error:  # a target with no path must say why, in one line
        assert "\n" not in str(error) and str(error).startswith("no ")
        return
    for path in paths:
        assert tilt_deg(path.entry_mm, path.tip_mm) <= limit_deg + 1e-9
        assert path.length_mm <= 180.0 + 1e-9
        axis = points_along_segment(path.entry_mm, path.tip_mm, 0.25)
        assert voxels_on(phantom, "ribs", axis) == voxels_on(phantom, "lungs", axis) == 0


def test_usable_length_limits_every_path_and_too_short_a_needle_is_explained(scene, tumour_mm):
    nearest_skin_mm = float(np.linalg.norm(scene.surface_mm - tumour_mm, axis=1).min())
    usable = nearest_skin_mm + 20.0
    paths = plan_trajectories(scene, tumour_mm, radius_mm=RF_RADIUS_MM, usable_length_mm=usable, n_best=5)
    assert paths and all(p.length_mm <= usable + 1e-9 for p in paths)
    with pytest.raises(PlanError, match=r"beyond the 20 mm reach 100 %") as info:
        plan_trajectories(scene, tumour_mm, radius_mm=RF_RADIUS_MM, usable_length_mm=20.0)
    assert "longer applicator" in str(info.value) and "\n" not in str(info.value)


def test_a_tumour_behind_the_spine_with_a_short_applicator_has_no_path_and_the_spine_is_named(scene):
    with pytest.raises(PlanError) as info:
        plan_trajectories(scene, BEHIND_SPINE_MM, radius_mm=RF_RADIUS_MM, usable_length_mm=70.0, position="prone")
    message = str(info.value)
    assert "\n" not in message and message.startswith("no safe CT-guided path to (0.0, 30.0, -9.0) mm")
    shares = {name: int(share) for name, share in __import__("re").findall(r"(\w+) (\d+) %", message)}
    assert max(shares, key=shares.get) == "spine" and shares["spine"] >= 90
    assert sum(shares.values()) == pytest.approx(100, abs=2)
    # lying supine the back faces the table: nothing within reach, said so
    with pytest.raises(PlanError, match=r"none is a candidate \(beyond the 70 mm reach"):
        plan_trajectories(scene, BEHIND_SPINE_MM, radius_mm=RF_RADIUS_MM, usable_length_mm=70.0)


def test_supine_entries_never_face_the_table_and_the_axis_preference_holds(scene, tumour_mm):
    axis = np.array([1.0, 0.0, 0.0])  # a left–right electrode
    paths = plan_trajectories(scene, tumour_mm, device=RF, preferred_axis=axis, axis_tolerance_deg=25.0)
    rules = load_rules()
    for path in paths:
        assert math.degrees(math.acos(abs(path.direction @ axis))) <= 25.0 + 1e-9
        s = int(np.argmin(np.linalg.norm(scene.surface_mm - path.entry_mm, axis=1)))
        assert scene.normals[s] @ np.array([0.0, 1.0, 0.0]) < math.cos(math.radians(rules.table_cone_deg))
        assert path.skin_angle_deg <= rules.max_skin_angle_deg


# ---------------------------------------------------------------------------------------------- ultrasound
def test_us_paths_have_a_clear_acoustic_window_in_the_imaging_plane(phantom, scene, tumour_mm):
    rules = load_rules()
    paths = plan_trajectories(scene, tumour_mm, guidance="us", device=RF, tip_offset_mm=TIP_OFFSET_MM, n_best=3)
    assert len(paths) == 3
    low, high = rules.us_probe_offset_mm
    for path in paths:
        probe, beam, normal = path.probe_mm, path.beam_direction, path.plane_normal
        assert voxels_on(phantom, "skin", probe[None]) == 1
        assert low <= float(np.linalg.norm(probe - path.entry_mm)) <= high
        # the imaging plane holds the path and the probe
        assert abs(normal @ path.direction) < 1e-9 and abs(normal @ (probe - path.entry_mm)) < 1e-9
        assert abs(normal @ beam) < 1e-9
        # the approach to the tip lies inside the sector
        visible = points_along_segment(path.tip_mm - rules.us_visible_length_mm * path.direction, path.tip_mm, 1.0)
        rays = (visible - probe) / np.linalg.norm(visible - probe, axis=1, keepdims=True)
        assert np.degrees(np.arccos(np.clip(rays @ beam, -1, 1))).max() <= rules.us_sector_half_angle_deg + 1e-6
        # no bone, gas or lung between the probe and the path (beyond the probe's own voxel)
        depth = np.arange(rules.us_skin_skip_mm, path.length_mm, 2.0)
        for point in path.entry_mm + depth[:, None] * path.direction:
            ray = points_along_segment(probe, point, 0.25)
            ray = ray[np.linalg.norm(ray - probe, axis=1) > 1.5 * SPACING_MM]
            assert all(voxels_on(phantom, name, ray) == 0 for name in SHADOW)


def test_us_without_a_possible_window_says_so(phantom, tumour_mm):
    narrow = load_rules(us_sector_half_angle_deg=0.5)
    with pytest.raises(PlanError, match=r"no US-guided path .* but none has an acoustic window \(.*sector \d+ %"):
        plan_trajectories(phantom, tumour_mm, guidance="us", device=RF, rules=narrow)


# ---------------------------------------------------------------------------------------------- hand-built scenes
def _box_patient(spacing_mm=(1.0, 1.0, 1.0), shape=(30, 30, 30), structures=()) -> Patient:
    grid = Grid(shape=shape, spacing_mm=spacing_mm, origin_mm=(0.0, 0.0, 0.0))
    built = {}
    for name, role, tissue, mask_of in structures:
        built[name] = Structure(name, role, mask_of(grid), grid, tissue)
    image = np.zeros(grid.shape, dtype=np.int16)  # soft tissue everywhere: the whole box is body
    return Patient(grid=grid, image=image, structures=built)


def _ball(centre_mm, radius_mm):
    def mask(grid: Grid) -> np.ndarray:
        return np.linalg.norm(grid.world_coordinates_mm(np.float64) - np.asarray(centre_mm), axis=-1) <= radius_mm

    return mask


def _tube_along_x(y_mm, z_mm, radius_mm):
    def mask(grid: Grid) -> np.ndarray:
        xyz = grid.world_coordinates_mm(np.float64)
        return np.hypot(xyz[..., 1] - y_mm, xyz[..., 2] - z_mm) <= radius_mm

    return mask


SPACINGS = ((1.0, 1.0, 1.0), (0.8, 1.1, 1.6))


@pytest.fixture(scope="module", params=SPACINGS, ids=["iso", "aniso"])
def bone_scene(request) -> TrajectoryScene:
    spacing = request.param
    shape = tuple(round(30.0 / s) for s in spacing[::-1])
    patient = _box_patient(spacing, shape, [("bone", Role.OBSTACLE, "bone_cortical", _ball((15.0, 15.0, 15.0), 5.0))])
    return TrajectoryScene.build(patient)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.tuples(*[st.floats(1.0, 28.0)] * 3),
    b=st.tuples(*[st.floats(1.0, 28.0)] * 3),
    radius=st.floats(0.0, 2.0),
)
def test_march_is_safe_and_at_most_a_voxel_conservative(bone_scene, a, b, radius):
    """Safe ⇒ the segment keeps radius + margin + half a voxel from every bone voxel centre; blocked ⇒ it came
    within that plus the sampling allowance (a voxel diagonal + half a step: the distance is read at voxel centres)."""
    start, end = np.asarray(a), np.asarray(b)
    if np.linalg.norm(end - start) < 1e-3:
        return
    spacing = np.asarray(bone_scene.grid.spacing_mm)
    need = max(radius + 0.5 * spacing.min(), 0.5 * np.linalg.norm(spacing) + 1e-6)  # bone margin 0 (yaml)
    result = march_paths(bone_scene, start[None], end[None], radius)
    exact = exact_distance_mm(bone_scene.patient, "bone", start, end)
    if result.blocker[0] == -1:
        assert exact >= need - 1e-6
        assert result.hard_slack_mm[0] >= 0.0
    else:
        assert bone_scene.names[result.blocker[0]] == "bone"
        assert exact < need + np.linalg.norm(spacing) + 0.5 * bone_scene.step_mm + 1e-6


def test_only_vessels_wider_than_the_threshold_are_hard():
    rules = load_rules()
    assert rules.large_vessel_min_radius_mm == 2.5
    patient = _box_patient(
        structures=[
            ("thick_vein", Role.VESSEL, "blood", _tube_along_x(8.0, 15.0, 4.0)),
            ("thin_artery", Role.VESSEL, "blood", _tube_along_x(22.0, 15.0, 1.0)),
        ]
    )
    scene = TrajectoryScene.build(patient)
    across_thick = (np.array([[15.0, 8.0, 2.0]]), np.array([[15.0, 8.0, 28.0]]))
    across_thin = (np.array([[15.0, 22.0, 2.0]]), np.array([[15.0, 22.0, 28.0]]))
    thick = march_paths(scene, *across_thick, radius_mm=0.7)
    thin = march_paths(scene, *across_thin, radius_mm=0.7)
    assert scene.names[thick.blocker[0]] == "thick_vein"
    assert thin.blocker[0] == -1
    # a path 5 mm beside the thick vein's wall is safe only while radius + 2 mm margin + half a voxel fit
    beside = (np.array([[15.0, 17.0, 2.0]]), np.array([[15.0, 17.0, 28.0]]))  # wall at y = 12 mm
    assert march_paths(scene, *beside, radius_mm=0.7).blocker[0] == -1
    assert scene.names[march_paths(scene, *beside, radius_mm=3.0).blocker[0]] == "thick_vein"


def test_a_path_that_leaves_the_body_is_blocked():
    grid = Grid(shape=(20, 20, 40), spacing_mm=(1.0, 1.0, 1.0))
    image = np.full(grid.shape, -1000, dtype=np.int16)
    image[:, :, :15] = 0  # two blocks of tissue with air between them (x 15–24 mm)
    image[:, :, 25:] = 0
    scene = TrajectoryScene.build(Patient(grid=grid, image=image))
    result = march_paths(scene, np.array([[2.0, 10.0, 10.0]]), np.array([[37.0, 10.0, 10.0]]), 0.5)
    assert result.blocker[0] == -2
    assert OUTSIDE_BODY in scene.names


# ---------------------------------------------------------------------------------------------- inputs
def test_applicator_reach_from_the_catalog():
    rf = applicator_reach(RF)
    assert rf.radius_mm == pytest.approx(RF_RADIUS_MM) and rf.usable_length_mm == pytest.approx(180.0)
    assert applicator_reach("cryoprobe-argon-2.4mm", usable_length_mm=175.0).radius_mm == pytest.approx(1.2)
    with pytest.raises(PlanError, match="gives no usable length"):
        applicator_reach("cryoprobe-argon-2.4mm")


@pytest.mark.parametrize(
    ("target", "kwargs", "pattern"),
    [
        ((500.0, 0.0, 0.0), {}, r"lies outside the image"),
        ((0.0, 64.0, -25.0), {}, r"lies inside spine, which no path may enter"),
        ("tumor_1", {"guidance": "mri"}, r"unknown guidance 'mri'"),
        ("tumor_1", {"position": "standing"}, r"unknown patient position"),
        ("tumor_1", {"radius_mm": -1.0}, r"radius_mm -1.0 is out of range"),
        ("tumor_1", {"max_tilt_deg": 95.0}, r"max_tilt_deg 95.0 is out of range"),
        ("tumor_1", {"device": None, "radius_mm": None}, r"radius is unknown"),
        ("no_such", {}, r"no structure named 'no_such'"),
    ],
)
def test_bad_input_gives_one_line_errors(scene, target, kwargs, pattern):
    args = {"device": RF} | kwargs
    with pytest.raises(PlanError, match=pattern) as info:
        plan_trajectories(scene, target, **args)
    assert "\n" not in str(info.value)


def test_unknown_rule_is_refused():
    with pytest.raises(PlanError, match="unknown trajectory rule"):
        load_rules(ct_tilt=10)
