"""RF device catalog entries and their metal: lengths, radii, terminals, layouts, placement and errors."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.devices.catalog import load_catalog
from insitu.errors import PlanError, RegistryError
from insitu.physics.rf_generator import make_generator
from insitu.therapies.rf_devices import rf_device, rf_metal_segments, rf_terminals

RF_NAMES = sorted(d.name for d in load_catalog() if d.therapy == "rfa")
TIP_M = np.array([0.02, -0.01, 0.03])
DOWN_X = np.array([0.0, 0.0, 1.0])


def endpoints(segments) -> np.ndarray:
    return np.array([p for s in segments for p in (s.start_m, s.end_m)])


def rotation(quaternion) -> np.ndarray:
    """Proper rotation matrix from a (non-zero) quaternion."""
    w, x, y, z = np.asarray(quaternion) / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation by ``angle`` about unit ``axis`` (array order, right-handed)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def radial_mm(point, axis=DOWN_X, tip=TIP_M) -> float:
    offset = np.asarray(point) - tip
    return 1e3 * float(np.linalg.norm(offset - np.dot(offset, axis) * axis))


def test_every_rf_entry_has_metal_geometry_generator_and_sources():
    required = ("layout", "outer_diameter_mm", "exposed_tip_mm", "shaft_length_mm", "cooled", "frequency_hz")
    for name in RF_NAMES:
        device = rf_device(name)
        assert all(key in device.parameters for key in (*required, "max_power_w", "generator")), name
        assert len(device.sources) >= 2, name
        if device.parameters["cooled"]:
            assert -5.0 <= device.parameters["coolant_temperature_c"] <= 25.0, name
        controller = make_generator(device.parameters["generator"], device_max_power_w=device.parameters["max_power_w"])
        assert controller.max_power_w <= device.parameters["max_power_w"]


@pytest.mark.parametrize(
    "name, tip_mm, radius_mm",
    [("rf-cooled-17g-30mm", 30, 0.735), ("rf-cooled-17g-20mm", 20, 0.735), ("rf-cooled-15g-30mm", 30, 0.915)],
)
def test_single_electrode_lengths_radii_and_flags_match_catalog(name, tip_mm, radius_mm):
    exposed, shaft = rf_metal_segments(rf_device(name), TIP_M, DOWN_X)
    assert np.allclose(exposed.end_m, TIP_M) and np.allclose(exposed.start_m, TIP_M - tip_mm * 1e-3 * DOWN_X)
    assert exposed.length_m == pytest.approx(tip_mm * 1e-3) and exposed.radius_m == pytest.approx(radius_mm * 1e-3)
    assert (exposed.conducting, exposed.electrode, exposed.cooled) == (True, 0, True)
    assert shaft.length_m == pytest.approx(0.150) and np.allclose(shaft.end_m, exposed.start_m)
    assert (shaft.conducting, shaft.cooled) == (False, True)
    assert rf_terminals(rf_device(name)) == 1


def test_cluster_electrodes_form_a_triangle_of_side_spacing_around_the_axis():
    segments = rf_metal_segments(rf_device("rf-cluster-3x17g"), TIP_M, DOWN_X, roll_rad=0.4)
    electrodes = [s for s in segments if s.conducting]
    assert [s.electrode for s in electrodes] == [0, 1, 2] and rf_terminals(rf_device("rf-cluster-3x17g")) == 3
    tips = np.array([s.end_m for s in electrodes])
    for a, b in itertools.combinations(tips, 2):
        assert 1e3 * np.linalg.norm(a - b) == pytest.approx(5.0)
    assert np.allclose(tips.mean(axis=0), TIP_M)
    assert all(s.length_m == pytest.approx(0.025) for s in electrodes)
    assert all(np.allclose(np.subtract(s.end_m, s.start_m) / s.length_m, DOWN_X) for s in segments)


@pytest.mark.parametrize(
    "name, tines, diameter_mm, tip_axial_mm",
    [("rf-umbrella-leveen-40mm", 12, 40.0, 0.0), ("rf-multitine-rita-50mm", 9, 50.0, 25.0)],
)
def test_umbrella_tine_tips_lie_on_the_deployed_diameter(name, tines, diameter_mm, tip_axial_mm):
    device = rf_device(name)
    segments = rf_metal_segments(device, TIP_M, DOWN_X)
    cannula, tine_pieces = segments[0], segments[1:]
    assert (cannula.conducting, cannula.length_m) == (False, pytest.approx(0.150))
    assert len(tine_pieces) == tines * 4 and all(s.conducting and s.electrode == 0 for s in tine_pieces)
    assert all(s.radius_m == pytest.approx(0.5e-3 * device.parameters["tine_diameter_mm"]) for s in tine_pieces)
    tine_tips = [tine_pieces[4 * k + 3].end_m for k in range(tines)]
    assert all(radial_mm(p) == pytest.approx(diameter_mm / 2) for p in tine_tips)
    assert all(1e3 * np.dot(np.subtract(p, TIP_M), DOWN_X) == pytest.approx(tip_axial_mm, abs=1e-9) for p in tine_tips)
    assert max(radial_mm(p) for p in endpoints(tine_pieces)) == pytest.approx(diameter_mm / 2)
    assert all(np.allclose(tine_pieces[4 * k].start_m, TIP_M) for k in range(tines))  # tines leave the cannula tip


def test_bipolar_rings_and_insulator_follow_the_catalog():
    distal, insulator, proximal, shaft = rf_metal_segments(rf_device("rf-bipolar-celon-t30"), TIP_M, DOWN_X)
    assert [(s.conducting, s.electrode) for s in (distal, proximal)] == [(True, 0), (True, 1)]
    assert np.allclose(distal.end_m, TIP_M)
    lengths_mm = [1e3 * s.length_m for s in (distal, insulator, proximal)]
    assert lengths_mm == pytest.approx([13.0, 4.0, 13.0]) and not insulator.conducting
    assert all(s.radius_m == pytest.approx(0.9e-3) and s.cooled for s in (distal, insulator, proximal, shaft))
    assert rf_terminals(rf_device("rf-bipolar-celon-t30")) == 2


def test_multipolar_applicators_sit_on_a_triangle_with_paired_terminals():
    device = rf_device("rf-multipolar-3x-celon-t30")
    segments = rf_metal_segments(device, TIP_M, DOWN_X)
    conducting = [s for s in segments if s.conducting]
    assert [s.electrode for s in conducting] == [0, 1, 2, 3, 4, 5] and rf_terminals(device) == 6
    distal_tips = [s.end_m for s in conducting if s.electrode % 2 == 0]
    for a, b in itertools.combinations(distal_tips, 2):
        assert 1e3 * np.linalg.norm(np.subtract(a, b)) == pytest.approx(30.0)


@pytest.mark.parametrize("name", RF_NAMES)
def test_roll_turns_the_layout_about_the_axis(name):
    direction = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    device = rf_device(name)
    base = endpoints(rf_metal_segments(device, TIP_M, direction)) - TIP_M
    rolled = endpoints(rf_metal_segments(device, TIP_M, direction, roll_rad=1.1)) - TIP_M
    assert np.allclose(rolled, base @ about_axis(direction, 1.1).T, atol=1e-12)


quaternions = st.tuples(*[st.floats(-1.0, 1.0) for _ in range(4)]).filter(lambda q: np.linalg.norm(q) > 0.1)


@settings(max_examples=40, deadline=None)
@given(quaternion=quaternions, name=st.sampled_from(RF_NAMES), roll=st.floats(-math.pi, math.pi))
def test_rotating_the_direction_moves_all_segments_rigidly(quaternion, name, roll):
    turn = rotation(quaternion)
    direction = np.array([0.2, 0.9, -0.4]) / np.linalg.norm([0.2, 0.9, -0.4])
    device = rf_device(name)
    before = rf_metal_segments(device, TIP_M, direction, roll)
    after = rf_metal_segments(device, TIP_M, turn @ direction, roll)
    p, q = endpoints(before) - TIP_M, endpoints(after) - TIP_M
    u, _, vt = np.linalg.svd(q.T @ p)  # Kabsch: the rotation that best maps p onto q
    fitted = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    assert np.allclose(p @ fitted.T, q, atol=1e-9)
    assert np.allclose(fitted @ direction, turn @ direction, atol=1e-9)
    assert [(s.radius_m, s.conducting, s.electrode, s.cooled) for s in before] == [
        (s.radius_m, s.conducting, s.electrode, s.cooled) for s in after
    ]
    if device.parameters["layout"] in ("single", "bipolar"):  # axisymmetric: exactly the turned copy
        assert np.allclose(q, p @ turn.T, atol=1e-12)


def test_unknown_device_suggests_close_names_on_one_line():
    with pytest.raises(RegistryError, match=r"unknown RF device 'rf-cooled-17g-25mm'; did you mean") as info:
        rf_device("rf-cooled-17g-25mm")
    assert "'rf-cooled-17g-20mm'" in str(info.value) and "\n" not in str(info.value)


def test_non_rf_device_and_bad_placements_are_refused():
    with pytest.raises(PlanError, match=re.escape("'cryoprobe-argon-2.4mm' is a cryo device, not an RF electrode")):
        rf_device("cryoprobe-argon-2.4mm")
    device = rf_device("rf-cooled-17g-30mm")
    with pytest.raises(PlanError, match="insertion direction"):
        rf_metal_segments(device, TIP_M, np.zeros(3))
    with pytest.raises(PlanError, match="tip point"):
        rf_metal_segments(device, np.array([0.0, np.nan, 0.0]), DOWN_X)
