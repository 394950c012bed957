"""Size of an ablation zone as clinicians report it: long axis along the applicator, short axis across it.

Extents are Feret diameters of the voxel set (each voxel a box): along the applicator's direction,
and the largest over directions perpendicular to it; volume is the voxel count times the voxel volume.
"""

from __future__ import annotations

import numpy as np

from insitu.grid import Grid

PERPENDICULAR_DIRECTIONS = 36  # short axis: largest extent over this many directions (5° apart) in the cross plane


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


def _extent_mm(points_mm: np.ndarray, direction: np.ndarray, box_axes: np.ndarray) -> float:
    """Feret extent of voxel boxes along ``direction``: spread of the centres plus one box's projected width."""
    along = points_mm @ direction
    width = float(np.sum(np.abs(box_axes @ direction)))
    return float(along.max() - along.min()) + width


def zone_axes_mm(zone: np.ndarray, grid: Grid, axis_direction: np.ndarray) -> dict[str, float]:
    """Long axis (along ``axis_direction``, LPS), short axis (largest perpendicular extent) and volume (mL)."""
    grid.require_array(zone, "ablation zone")
    count = int(np.count_nonzero(zone))
    volume_ml = count * grid.voxel_volume_ml
    if count == 0:
        return {"long_axis_mm": 0.0, "short_axis_mm": 0.0, "zone_volume_ml": 0.0}
    k, j, i = np.nonzero(zone)
    points = grid.index_to_world(np.stack([i, j, k], axis=-1).astype(float))
    box_axes = (grid.direction @ np.diag(grid.spacing_mm)).T  # rows: the voxel's three edge vectors in LPS mm
    d = _unit(axis_direction)
    helper = np.eye(3)[int(np.argmin(np.abs(d)))]
    u = _unit(np.cross(d, helper))
    v = np.cross(d, u)
    angles = np.linspace(0.0, np.pi, PERPENDICULAR_DIRECTIONS, endpoint=False)
    short = max(_extent_mm(points, np.cos(a) * u + np.sin(a) * v, box_axes) for a in angles)
    return {"long_axis_mm": _extent_mm(points, d, box_axes), "short_axis_mm": short, "zone_volume_ml": volume_ml}
