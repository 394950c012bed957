"""A mask's sub-voxel surface as points (LPS mm), and distances to it: the ruler of the target + margin region.

A mask says only which voxel centres lie inside; its true surface lies somewhere between inside and outside
centres. Measuring from voxel centres puts the surface up to half a voxel off: the region within 5 mm of a sphere's
centres comes out 0.2–0.5 voxel too small in radius, and with the usual half-voxel allowance 0.15–0.4 too large.
The estimator here is a partial-volume one:

1. smooth the mask's indicator with a Gaussian of ``SMOOTHING_VOXELS`` voxels per axis: the voxel staircase averages
   out, and a curved surface moves inward by only about σ²/r (0.07 voxel for a sphere of radius 5 voxels);
2. on every grid edge where the smoothed indicator crosses 0.5, a surface point by linear interpolation.

The distance of a point outside the mask to its surface is the Euclidean distance to the nearest surface point.
Measured on analytic spheres (radius 4–20 mm, margin 2–8 mm, 0.5–2 mm voxels, anisotropic 0.9 × 1.1 × 2 mm; see
tests/test_evaluation.py), the region within a margin of the surface has the exact sphere's radius within
±0.12 voxel (of the coarsest axis). Individual surface points scatter by up to ±0.5 voxel (worst where the sphere is
tangent to a voxel plane, which a mask cannot place closer than a voxel); volumes average that out, a minimum over
the surface does not (margin.py uses distance maps instead). Parts of a mask thinner than about one and a half voxels
fade under the smoothing; a mask made only of such parts (a single voxel, a one-voxel line) falls back to the
unsmoothed midpoints between inside and outside centres.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from insitu.errors import StructureError
from insitu.grid import Grid

SMOOTHING_VOXELS = 0.6  # Gaussian σ per axis, in voxels of that axis
LEVEL = 0.5  # the smoothed indicator's value on the surface


def padded_box(mask: np.ndarray, pad: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """The mask's bounding box widened by ``pad`` voxels (per axis or one number; it may reach beyond the array):
    lower and upper (k, j, i), upper exclusive."""
    where = np.argwhere(mask)
    pad = np.broadcast_to(np.asarray(pad, dtype=int), (3,))
    return where.min(axis=0) - pad, where.max(axis=0) + 1 + pad


def crop_padded(volume: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``volume[lower:upper]``, zero (False) where the box leaves the array: nothing lies beyond the image."""
    shape = np.asarray(volume.shape)
    lo_in, hi_in = np.maximum(lower, 0), np.minimum(upper, shape)
    out = np.zeros(tuple(int(n) for n in upper - lower), dtype=volume.dtype)
    src = tuple(slice(int(a), int(b)) for a, b in zip(lo_in, hi_in, strict=True))
    dst = tuple(slice(int(a - lo), int(b - lo)) for a, b, lo in zip(lo_in, hi_in, lower, strict=True))
    out[dst] = volume[src]
    return out


def _level_crossings(level: np.ndarray) -> np.ndarray:
    """(k, j, i) index coordinates where the linear interpolant of ``level`` along a grid edge is zero."""
    points = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        a, b = level[tuple(lo)], level[tuple(hi)]
        crossing = (a >= 0.0) != (b >= 0.0)
        start = np.argwhere(crossing).astype(float)
        va, vb = a[crossing].astype(float), b[crossing].astype(float)
        start[:, axis] += va / (va - vb)
        points.append(start)
    return np.concatenate(points)


def surface_points_mm(mask: np.ndarray, grid: Grid, smoothing_voxels: float = SMOOTHING_VOXELS) -> np.ndarray:
    """Points ``(n, 3)`` (LPS mm) on the sub-voxel surface of ``mask`` on ``grid`` (module docstring)."""
    grid.require_array(mask, "mask")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise StructureError("the surface of an empty mask was asked for", "give a mask with at least one voxel")
    for sigma in (float(smoothing_voxels), 0.0):
        pad = math.ceil(4.0 * sigma) + 2
        lower, upper = padded_box(mask, pad)
        indicator = crop_padded(mask, lower, upper).astype(np.float32)
        smooth = ndimage.gaussian_filter(indicator, sigma=sigma, mode="constant") if sigma > 0 else indicator
        kji = _level_crossings(smooth - LEVEL)
        if len(kji):
            break
    return grid.index_to_world((kji + lower)[:, ::-1])


def distance_to_points_mm(points_mm: np.ndarray, surface_mm: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) from each of ``points_mm`` ``(..., 3)`` to the nearest of ``surface_mm`` ``(n, 3)``."""
    points = np.asarray(points_mm, dtype=float)
    distance, _ = cKDTree(np.asarray(surface_mm, dtype=float)).query(points.reshape(-1, 3))
    return np.asarray(distance).reshape(points.shape[:-1])
