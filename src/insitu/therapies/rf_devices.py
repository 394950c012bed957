"""RF devices from the catalog turned into metal: an electrode's placement → straight capsule segments.

Frame: points are (z, y, x) metres in the physics frame (see :mod:`insitu.physics.applicator`).
``tip_m`` is the distal tip (for umbrella arrays the cannula tip the tines deploy from) and
``direction`` the insertion direction, from the skin entry toward the tip. Exposed metal is
conducting with its terminal number; the shaft behind it is insulated. Segment end points sit at the
catalog lengths; each capsule's hemispherical caps overhang its ends by its radius.

Device ``layout`` (a catalog parameter) decides the shape and the terminals:

- ``single``: one electrode, terminal 0.
- ``cluster``: ``electrode_count`` parallel electrodes at the corners of a regular polygon of side
  ``spacing_mm`` (an equilateral triangle for three) centred on the axis; terminals 0, 1, …
- ``umbrella``: an insulated cannula and ``tine_count`` tines that leave the cannula tip forward and
  curve outward on a circular arc swept by ``tine_sweep_deg`` (180: out and back like LeVeen, 90:
  forward and out), each ending on the deployed diameter; the arc is ``tine_pieces`` chords. All
  tines are terminal 0.
- ``bipolar``: distal ring (terminal 0), insulator, proximal ring (terminal 1) on one shaft.
- ``multipolar``: ``applicator_count`` bipolar applicators on a polygon of side ``spacing_mm``;
  applicator k has terminals 2k (distal) and 2k + 1 (proximal).

``roll_rad`` turns the layout about the axis. Roll 0 puts electrode, tine or applicator 0 along the
frame's first perpendicular axis: the world axis (z, y or x, first in that order) least aligned with
the shaft, made perpendicular to it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from insitu.devices.catalog import Device, device_for
from insitu.errors import PlanError
from insitu.physics.applicator import MetalSegment

RF_THERAPY = "rfa"
_MM = 1e-3


def rf_device(name: str | None) -> Device:
    """The RF device called ``name`` from the catalog; a one-line error suggests close names otherwise."""
    device = device_for(name, RF_THERAPY, "RF", "RF electrode")
    _layout(device)
    return device


def rf_terminals(device: Device) -> int:
    """How many electrical terminals the generator can drive separately on this device."""
    layout = _layout(device)
    if layout == "cluster":
        return _count(device, "electrode_count")
    if layout == "bipolar":
        return 2
    if layout == "multipolar":
        return 2 * _count(device, "applicator_count")
    return 1


def rf_metal_segments(
    device: Device, tip_m: np.ndarray, direction: np.ndarray, roll_rad: float = 0.0
) -> list[MetalSegment]:
    """Metal of ``device`` placed with its tip at ``tip_m`` pointing along ``direction`` (z, y, x metres)."""
    tip = _point(tip_m)
    axis = _unit(direction)
    if not math.isfinite(roll_rad):
        raise PlanError(f"roll {roll_rad} rad", "give a finite roll angle")
    u, v = _frame(axis)
    builder = _BUILDERS[_layout(device)]
    return builder(device, tip, axis, _rolled(u, v, roll_rad))


# ---------------------------------------------------------------------------- catalog parameters


def _layout(device: Device) -> str:
    """The device's ``layout`` parameter, checked against the shapes this module builds."""
    layout = device.parameters.get("layout")
    if layout not in _BUILDERS:
        raise PlanError(
            f"RF device {device.name!r} has layout {layout!r}",
            f"set parameters.layout to one of {', '.join(_BUILDERS)} in the catalog",
        )
    return layout


def _value(device: Device, key: str) -> float:
    """A numeric catalog parameter, present and finite."""
    value = device.parameters.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanError(f"RF device {device.name!r} has {key} = {value!r}", f"give {key} as a number in the catalog")
    return float(value)


def _length_m(device: Device, key: str, allow_zero: bool = False) -> float:
    """A catalog length in millimetres, returned in metres; positive (or zero where allowed)."""
    value_mm = _value(device, key)
    if value_mm < 0 or (value_mm == 0 and not allow_zero):
        raise PlanError(f"RF device {device.name!r} has {key} = {value_mm}", f"give a positive {key}")
    return value_mm * _MM


def _count(device: Device, key: str) -> int:
    """A positive whole-number catalog parameter (electrodes, tines, applicators, pieces)."""
    value = _value(device, key)
    if value < 1 or value != int(value):
        raise PlanError(f"RF device {device.name!r} has {key} = {value}", f"give {key} as a whole number ≥ 1")
    return int(value)


def _cooled(device: Device) -> bool:
    """Whether the device's metal is held at the coolant temperature."""
    cooled = device.parameters.get("cooled", False)
    if not isinstance(cooled, bool):
        raise PlanError(f"RF device {device.name!r} has cooled = {cooled!r}", "give cooled: true or false")
    return cooled


# ---------------------------------------------------------------------------- geometry helpers


def _point(tip_m: np.ndarray) -> np.ndarray:
    """The tip as a finite (z, y, x) point."""
    tip = np.asarray(tip_m, dtype=float)
    if tip.shape != (3,) or not np.all(np.isfinite(tip)):
        raise PlanError(f"RF tip point {tip_m!r}", "give a finite (z, y, x) point in metres")
    return tip


def _unit(direction: np.ndarray) -> np.ndarray:
    """The insertion direction normalised to unit length."""
    d = np.asarray(direction, dtype=float)
    norm = float(np.linalg.norm(d)) if d.shape == (3,) else 0.0
    if not (math.isfinite(norm) and norm > 0):
        raise PlanError(f"RF insertion direction {direction!r}", "give a non-zero, finite (z, y, x) vector")
    return d / norm


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``axis`` with (u, v, axis) right-handed in array order."""
    reference = np.eye(3)[int(np.argmin(np.abs(axis)))]
    u = reference - np.dot(reference, axis) * axis
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


def _rolled(u: np.ndarray, v: np.ndarray, roll_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """The perpendicular frame turned by ``roll_rad`` about the axis (from u toward v)."""
    c, s = math.cos(roll_rad), math.sin(roll_rad)
    return c * u + s * v, -s * u + c * v


def _spokes(count: int, frame: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """``count`` unit vectors perpendicular to the axis, evenly spaced, the first along the frame's u."""
    u, v = frame
    return [math.cos(a) * u + math.sin(a) * v for a in 2.0 * math.pi * np.arange(count) / count]


def _polygon_offsets(count: int, side_m: float, frame: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Offsets of ``count`` corners of a regular polygon of side ``side_m`` centred on the axis."""
    if count == 1:
        return [np.zeros(3)]
    radius_m = side_m / (2.0 * math.sin(math.pi / count))
    return [radius_m * spoke for spoke in _spokes(count, frame)]


def _segment(a: np.ndarray, b: np.ndarray, radius_m: float, conducting: bool, electrode: int, cooled: bool):
    """A capsule from ``a`` to ``b``."""
    return MetalSegment(tuple(map(float, a)), tuple(map(float, b)), radius_m, conducting, electrode, cooled)


def _straight_probe(
    device: Device, tip: np.ndarray, axis: np.ndarray, terminal: int, exposed_key: str = "exposed_tip_mm"
) -> list[MetalSegment]:
    """Exposed tip (if any) and the insulated shaft behind it, along one straight needle."""
    radius_m = 0.5 * _length_m(device, "outer_diameter_mm")
    exposed_m = _length_m(device, exposed_key, allow_zero=True)
    shaft_m = _length_m(device, "shaft_length_mm")
    cooled = _cooled(device)
    joint = tip - exposed_m * axis
    shaft = _segment(joint - shaft_m * axis, joint, radius_m, False, terminal, cooled)
    if exposed_m == 0:
        return [shaft]
    return [_segment(joint, tip, radius_m, True, terminal, cooled), shaft]


# ---------------------------------------------------------------------------- layouts


def _single(device: Device, tip: np.ndarray, axis: np.ndarray, frame) -> list[MetalSegment]:
    """One straight electrode on the axis, terminal 0."""
    return _straight_probe(device, tip, axis, 0)


def _cluster(device: Device, tip: np.ndarray, axis: np.ndarray, frame) -> list[MetalSegment]:
    """Parallel straight electrodes on a polygon of side ``spacing_mm``, terminals 0, 1, …"""
    count = _count(device, "electrode_count")
    spacing_m = _length_m(device, "spacing_mm")
    if count > 1 and spacing_m <= _length_m(device, "outer_diameter_mm"):
        raise PlanError(f"cluster {device.name!r} spacing is not wider than its electrodes", "raise spacing_mm")
    segments: list[MetalSegment] = []
    for k, offset in enumerate(_polygon_offsets(count, spacing_m, frame)):
        segments += _straight_probe(device, tip + offset, axis, k)
    return segments


def _tine_points(device: Device, tip: np.ndarray, axis: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Chord end points of one tine: a circular arc from the cannula tip out to the deployed radius."""
    sweep_deg = _value(device, "tine_sweep_deg")
    if not 0 < sweep_deg <= 180:
        raise PlanError(f"RF device {device.name!r} has tine_sweep_deg {sweep_deg}", "give a sweep in (0, 180]")
    sweep = math.radians(sweep_deg)
    arc_radius_m = 0.5 * _length_m(device, "deployed_diameter_mm") / (1.0 - math.cos(sweep))
    angles = np.linspace(0.0, sweep, _count(device, "tine_pieces") + 1)
    axial = arc_radius_m * np.sin(angles)
    radial = arc_radius_m * (1.0 - np.cos(angles))
    return tip + axial[:, None] * axis + radial[:, None] * direction


def _umbrella(device: Device, tip: np.ndarray, axis: np.ndarray, frame) -> list[MetalSegment]:
    """Insulated cannula plus ``tine_count`` curved tines deployed from its tip, all terminal 0."""
    segments = _straight_probe(device, tip, axis, 0)
    count = _count(device, "tine_count")
    tine_radius_m = 0.5 * _length_m(device, "tine_diameter_mm")
    for spoke in _spokes(count, frame):
        points = _tine_points(device, tip, axis, spoke)
        segments += [_segment(a, b, tine_radius_m, True, 0, False) for a, b in itertools.pairwise(points)]
    return segments


def _bipolar_probe(device: Device, tip: np.ndarray, axis: np.ndarray, first: int) -> list[MetalSegment]:
    """Distal ring (terminal ``first``), insulator, proximal ring (``first + 1``) and the insulated shaft."""
    distal_m, gap_m, proximal_m = (
        _length_m(device, key) for key in ("distal_electrode_mm", "insulator_mm", "proximal_electrode_mm")
    )
    if not math.isclose(distal_m + gap_m + proximal_m, _length_m(device, "exposed_tip_mm"), abs_tol=1e-9):
        raise PlanError(
            f"bipolar {device.name!r}: electrodes and insulator do not add up to exposed_tip_mm",
            "make distal_electrode_mm + insulator_mm + proximal_electrode_mm equal exposed_tip_mm",
        )
    radius_m = 0.5 * _length_m(device, "outer_diameter_mm")
    cooled = _cooled(device)
    a, b, c = (tip - length * axis for length in (distal_m, distal_m + gap_m, distal_m + gap_m + proximal_m))
    shaft_m = _length_m(device, "shaft_length_mm")
    return [
        _segment(a, tip, radius_m, True, first, cooled),
        _segment(b, a, radius_m, False, first, cooled),
        _segment(c, b, radius_m, True, first + 1, cooled),
        _segment(c - shaft_m * axis, c, radius_m, False, first + 1, cooled),
    ]


def _bipolar(device: Device, tip: np.ndarray, axis: np.ndarray, frame) -> list[MetalSegment]:
    """One bipolar applicator on the axis: terminals 0 (distal) and 1 (proximal)."""
    return _bipolar_probe(device, tip, axis, 0)


def _multipolar(device: Device, tip: np.ndarray, axis: np.ndarray, frame) -> list[MetalSegment]:
    """Parallel bipolar applicators on a polygon of side ``spacing_mm``; applicator k: terminals 2k, 2k + 1."""
    count = _count(device, "applicator_count")
    spacing_m = _length_m(device, "spacing_mm")
    if count > 1 and spacing_m <= _length_m(device, "outer_diameter_mm"):
        raise PlanError(f"multipolar {device.name!r} spacing is not wider than its shafts", "raise spacing_mm")
    segments: list[MetalSegment] = []
    for k, offset in enumerate(_polygon_offsets(count, spacing_m, frame)):
        segments += _bipolar_probe(device, tip + offset, axis, 2 * k)
    return segments


_BUILDERS: dict[str, Callable[..., list[MetalSegment]]] = {
    "single": _single,
    "cluster": _cluster,
    "umbrella": _umbrella,
    "bipolar": _bipolar,
    "multipolar": _multipolar,
}
