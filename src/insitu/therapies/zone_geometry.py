"""Size of an ablation zone as clinicians report it: long axis along the applicator, short axis across it.

Extents are Feret diameters: along the applicator's direction (long axis, Dl), and the largest and the smallest over
directions perpendicular to it (short axis Ds, vertical axis Dv: for an elliptic cross-section these are its two
principal diameters, found without first locating the widest direction, whose error would leak into Dv); volume is
the voxel count times the voxel volume. Gross-pathology studies report a zone's volume from its three diameters as
the ellipsoid π/6·Dl·Ds·Dv, so that figure is given too (``ellipsoid_volume_ml``): compare like with like.

Without more information the zone is its voxel set (each voxel a box: extents good to ±1 voxel). With a continuous
``level`` field (positive inside, zero on the boundary: e.g. ln Ω for an Arrhenius zone) the boundary is located
between each zone voxel and its outside neighbours by linear interpolation, and the extents are those of these
boundary points: second-order accurate for a smooth field, so they can be compared across grids (a 1 mm grid's axes
are not quantised to whole millimetres).
"""

from __future__ import annotations

import numpy as np

from insitu.grid import Grid

PERPENDICULAR_DIRECTIONS = 36  # short axis: largest extent over this many directions (5° apart) in the cross plane
AXES_KEYS = ("long_axis_mm", "short_axis_mm", "vertical_axis_mm", "zone_volume_ml", "ellipsoid_volume_ml")


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


def _extent_mm(points_mm: np.ndarray, direction: np.ndarray, box_axes: np.ndarray) -> float:
    """Feret extent of voxel boxes along ``direction``: spread of the centres plus one box's projected width."""
    along = points_mm @ direction
    width = float(np.sum(np.abs(box_axes @ direction)))
    return float(along.max() - along.min()) + width


def _boundary_points_kji(zone: np.ndarray, level: np.ndarray) -> np.ndarray:
    """(k, j, i) index coordinates of the zone's boundary: on each grid edge from a zone voxel to an outside one, the
    zero of the linearly interpolated ``level``; half a voxel out where the zone touches the array's face."""
    points = []
    for axis in range(3):
        for step in (1, -1):
            inside = zone
            neighbour = np.roll(zone, -step, axis=axis)
            level_next = np.roll(level, -step, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = -1 if step == 1 else 0
            face = np.zeros(zone.shape, bool)
            face[tuple(edge)] = True
            crossing = inside & ~neighbour & ~face
            at_face = inside & face
            k, j, i = np.nonzero(crossing)
            a = level[k, j, i].astype(float)
            b = level_next[k, j, i].astype(float)
            t = np.clip(a / np.where(a - b > 0, a - b, 1.0), 0.0, 1.0)
            p = np.stack([k, j, i], axis=-1).astype(float)
            p[:, axis] += step * t
            points.append(p)
            q = np.argwhere(at_face).astype(float)
            q[:, axis] += 0.5 * step
            points.append(q)
    return np.concatenate(points)


def zone_axes_mm(
    zone: np.ndarray, grid: Grid, axis_direction: np.ndarray, level: np.ndarray | None = None
) -> dict[str, float]:
    """Long axis (along ``axis_direction``, LPS), short and vertical axes (largest and smallest perpendicular extent),
    voxel volume and ellipsoid volume π/6·Dl·Ds·Dv (mL); with ``level`` (positive inside the zone, on the grid) the
    extents are sub-voxel (module docstring)."""
    grid.require_array(zone, "ablation zone")
    count = int(np.count_nonzero(zone))
    volume_ml = count * grid.voxel_volume_ml
    if count == 0:
        return {name: 0.0 for name in AXES_KEYS}
    d = _unit(axis_direction)
    helper = np.eye(3)[int(np.argmin(np.abs(d)))]
    u = _unit(np.cross(d, helper))
    v = np.cross(d, u)
    angles = np.linspace(0.0, np.pi, PERPENDICULAR_DIRECTIONS, endpoint=False)
    across = [np.cos(a) * u + np.sin(a) * v for a in angles]
    if level is not None:
        grid.require_array(level, "zone level")
        lo = np.maximum(np.argwhere(zone).min(axis=0) - 1, 0)
        hi = np.minimum(np.argwhere(zone).max(axis=0) + 2, zone.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        kji = _boundary_points_kji(zone[box], np.nan_to_num(level[box], nan=-1.0, neginf=-1.0)) + lo
        points = grid.index_to_world(kji[:, ::-1])
        box_axes = np.zeros((3, 3))
    else:
        k, j, i = np.nonzero(zone)
        points = grid.index_to_world(np.stack([i, j, k], axis=-1).astype(float))
        box_axes = (grid.direction @ np.diag(grid.spacing_mm)).T  # rows: the voxel's three edge vectors in LPS mm
    widths = [_extent_mm(points, direction, box_axes) for direction in across]
    long_mm, short_mm, vertical_mm = _extent_mm(points, d, box_axes), max(widths), min(widths)
    return {
        "long_axis_mm": long_mm,
        "short_axis_mm": short_mm,
        "vertical_axis_mm": vertical_mm,
        "zone_volume_ml": volume_ml,
        "ellipsoid_volume_ml": np.pi / 6.0 * long_mm * short_mm * vertical_mm * 1e-3,
    }
