"""Geometry on the patient grid: the only place that converts LPS ↔ RAS; rays, rotations, distances.

LPS (DICOM/ITK) is used everywhere inside insitu. RAS appears only at NIfTI-affine and NiiVue
edges, and those edges call :func:`lps_to_ras` / :func:`affine_lps_to_ras` from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from insitu.errors import GridError
from insitu.grid import Grid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(points_mm: np.ndarray | Sequence[float]) -> np.ndarray:
    """LPS points ``(..., 3)`` → RAS (negate x and y)."""
    return np.asarray(points_mm, dtype=float) * np.array([-1.0, -1.0, 1.0])


def ras_to_lps(points_mm: np.ndarray | Sequence[float]) -> np.ndarray:
    """RAS points ``(..., 3)`` → LPS (the same flip; it is its own inverse)."""
    return lps_to_ras(points_mm)


def affine_lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """A 4×4 index→LPS affine → index→RAS affine (as NIfTI's sform/qform expects)."""
    flip = np.eye(4)
    flip[:3, :3] = LPS_TO_RAS
    return flip @ np.asarray(affine, dtype=float)


def affine_ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """A 4×4 index→RAS affine → index→LPS affine."""
    return affine_lps_to_ras(affine)


def grid_ras_affine(grid: Grid) -> np.ndarray:
    """The NIfTI-style affine of ``grid``: array index (i, j, k) → RAS millimetres."""
    return affine_lps_to_ras(grid.index_to_world_matrix)


# ---------------------------------------------------------------------- vectors and rotations
def unit(vector: np.ndarray | Sequence[float]) -> np.ndarray:
    """The unit vector along ``vector``; raises on a zero-length vector."""
    v = np.asarray(vector, dtype=float)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0.0:
        raise GridError(f"direction {tuple(v)} has zero or non-finite length", "give two distinct points")
    return v / n


def orthonormal_basis(
    axis: np.ndarray | Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``axis`` and to each other, plus the unit axis (u, v, w)."""
    w = unit(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(w[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = unit(np.cross(w, helper))
    v = np.cross(w, u)
    return u, v, w


def rotation_between(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """The 3×3 rotation that turns the direction of ``a`` into that of ``b`` (Rodrigues)."""
    ua, ub = unit(a), unit(b)
    v = np.cross(ua, ub)
    c = float(np.dot(ua, ub))
    if c < 0.0:
        # well-conditioned: a half turn about an axis ⟂ a (a → −a), then the small turn −a → b
        p, _, _ = orthonormal_basis(ua)
        return rotation_between(-ua, ub) @ (2.0 * np.outer(p, p) - np.eye(3))
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def rotation_about_axis(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    """The 3×3 rotation by ``angle_rad`` about ``axis`` (right-handed)."""
    k = unit(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * kx + (1.0 - np.cos(angle_rad)) * kx @ kx


# ---------------------------------------------------------------------- rays and segments
def points_along_segment(start_mm: Sequence[float], end_mm: Sequence[float], step_mm: float) -> np.ndarray:
    """Points from ``start`` to ``end`` (both included) no more than ``step_mm`` apart, shape (n, 3)."""
    a, b = np.asarray(start_mm, float), np.asarray(end_mm, float)
    length = float(np.linalg.norm(b - a))
    n = max(2, int(np.ceil(length / step_mm)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return a + t * (b - a)


def distance_to_segment(points_mm: np.ndarray, start_mm: Sequence[float], end_mm: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) from each point ``(..., 3)`` to the segment ``start``–``end``."""
    p = np.asarray(points_mm, dtype=float)
    a, b = np.asarray(start_mm, float), np.asarray(end_mm, float)
    ab = b - a
    denom = float(ab @ ab)
    t = np.zeros(p.shape[:-1]) if denom == 0.0 else np.clip(((p - a) @ ab) / denom, 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.linalg.norm(p - closest, axis=-1)


def segment_segment_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> float:
    """Shortest distance between segments p0–p1 and q0–q1 (mm), robust to parallel segments."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e, f = float(d1 @ d1), float(d2 @ d2), float(d2 @ r)
    eps = 1e-12
    if a <= eps and e <= eps:
        return float(np.linalg.norm(r))
    if a <= eps:
        s, t = 0.0, np.clip(f / e, 0.0, 1.0)
    else:
        c = float(d1 @ r)
        if e <= eps:
            t, s = 0.0, np.clip(-c / a, 0.0, 1.0)
        else:
            b = float(d1 @ d2)
            denom = a * e - b * b
            s = np.clip((b * f - c * e) / denom, 0.0, 1.0) if denom > eps else 0.0
            t = (b * s + f) / e
            if t < 0.0:
                t, s = 0.0, np.clip(-c / a, 0.0, 1.0)
            elif t > 1.0:
                t, s = 1.0, np.clip((b - c) / a, 0.0, 1.0)
    return float(np.linalg.norm(p0 + d1 * s - (q0 + d2 * t)))


def segment_segment_distances(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Vectorised :func:`segment_segment_distance` over broadcast ``(..., 3)`` end points (mm), the same cases:
    parallel segments and segments of zero length (points) included."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = np.einsum("...i,...i", d1, d1)
    e = np.einsum("...i,...i", d2, d2)
    f = np.einsum("...i,...i", d2, r)
    c = np.einsum("...i,...i", d1, r)
    b = np.einsum("...i,...i", d1, d2)
    eps = 1e-12
    a_ok, e_ok = a > eps, e > eps
    safe_a, safe_e = np.where(a_ok, a, 1.0), np.where(e_ok, e, 1.0)
    denom = a * e - b * b
    s = np.where(denom > eps, np.clip((b * f - c * e) / np.where(denom > eps, denom, 1.0), 0.0, 1.0), 0.0)
    t = (b * s + f) / safe_e
    s = np.where(t < 0.0, np.clip(-c / safe_a, 0.0, 1.0), np.where(t > 1.0, np.clip((b - c) / safe_a, 0.0, 1.0), s))
    t = np.clip(t, 0.0, 1.0)
    # a point against a segment, or two points
    s = np.where(a_ok & ~e_ok, np.clip(-c / safe_a, 0.0, 1.0), s)
    t = np.where(a_ok & ~e_ok, 0.0, t)
    s = np.where(~a_ok, 0.0, s)
    t = np.where(~a_ok, np.where(e_ok, np.clip(f / safe_e, 0.0, 1.0), 0.0), t)
    diff = r + d1 * s[..., None] - d2 * t[..., None]
    return np.sqrt(np.einsum("...i,...i", diff, diff))


# ---------------------------------------------------------------------- distance maps
def distance_map_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """Distance (mm, float32) from each voxel centre to the nearest true voxel centre of ``mask``."""
    grid.require_array(mask, "mask")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise GridError("distance map of an empty mask", "give a mask with at least one voxel")
    return ndimage.distance_transform_edt(~mask, sampling=grid.spacing_kji_mm).astype(np.float32)


def signed_distance_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """Signed distance (mm, float32) to the surface of ``mask``: negative inside, positive outside.

    The surface is taken half a voxel beyond the centres of the boundary voxels, so a voxel
    touching the surface from either side sits at ±½ spacing (exact for planes along an axis).
    """
    grid.require_array(mask, "mask")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise GridError("signed distance of an empty mask", "give a mask with at least one voxel")
    sampling = grid.spacing_kji_mm
    if mask.all():
        inside = ndimage.distance_transform_edt(np.pad(mask, 1, constant_values=False), sampling=sampling)
        inside = inside[1:-1, 1:-1, 1:-1]
        return (-(inside - 0.5 * min(sampling))).astype(np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    half = 0.5 * min(sampling)
    return np.where(mask, -(inside - half), outside - half).astype(np.float32)
