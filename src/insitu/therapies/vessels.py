"""Large blood vessels as heat sinks: per-voxel vessel diameter from a segmentation, and the large ones.

DESIGN.md models large vessels (≥ ~3 mm) as blood at body temperature exchanging heat through a
flow-dependent wall coefficient (h = Nu·k_b/D, physics/bioheat.py) and small vessels through perfusion:
in vivo RF ablation shows a heat sink at hepatic veins > 3 mm and none < 2 mm, with a transition at
2–4 mm (Lu et al., AJR 2002;178:47; thermal.md §4.1). Smaller vessels stay tissue: their blood is in
the Pennes perfusion and they coagulate with the tissue.

The local diameter is that of the circle with the vessel's cross-section area at the centreline point a
voxel belongs to (vessel volume per centreline length around that point). It is bounded by the largest
inscribed ball there (the distance transform), which alone is quantised to ±1 voxel in diameter by the
rasterisation, where the area is good to about half a voxel (tests/test_heat_sink.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from insitu.errors import GridError, StructureError
from insitu.patient.structure import Role, Structure

# Heat-sink threshold: Lu et al. 2002 (AJR 178:47, thermal.md §4.1) saw perivascular sparing at veins > 3 mm,
# none < 2 mm, transition 2–4 mm; DESIGN.md: "large vessels (≥ ~3 mm)".
LARGE_VESSEL_DIAMETER_MM = 3.0
# Vessels cut by a crop are measured on the crop plus this margin: the radius of the widest abdominal vessel
# (aorta < 30 mm across, the aneurysm threshold; IVC ≈ 20–25 mm) — recalled anatomy, not re-read.
VESSEL_MARGIN_MM = 15.0
# The cross-section is averaged over ±2 centreline voxels: enough to smooth the staircase of a rasterised
# oblique vessel, short enough to keep the branches of a bifurcation apart (a design choice, tested).
CENTRELINE_WINDOW_VOXELS = 5


def local_vessel_diameter_mm(mask: np.ndarray, spacing_kji_mm: Sequence[float]) -> np.ndarray:
    """Per-voxel vessel diameter (mm, float32, 0 outside ``mask``): the equivalent circle of the local cross-section.

    The array's faces are not walls: a vessel cut by them keeps its width (crop with a margin to measure it).
    """
    mask = _check_mask(mask, spacing_kji_mm)
    out = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return out
    box = _bounding_box(mask)
    out[box] = _diameter_in_box(mask[box], np.asarray(spacing_kji_mm, dtype=float))
    return out


def large_vessels(
    structures: Iterable[Structure],
    slices: tuple[slice, ...],
    threshold_mm: float = LARGE_VESSEL_DIAMETER_MM,
    margin_mm: float = VESSEL_MARGIN_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """(mask, diameter mm) on the crop ``slices`` of the vessel structures whose local diameter ≥ ``threshold_mm``.

    Each vessel (role VESSEL) is measured on the crop plus ``margin_mm`` so that one cut by the crop keeps its width;
    where two overlap the wider wins. Other roles are ignored.
    """
    vessels = [s for s in structures if s.role is Role.VESSEL]
    shape = tuple(sl.stop - sl.start for sl in slices)
    mask = np.zeros(shape, dtype=bool)
    diameter = np.zeros(shape, dtype=np.float32)
    for vessel in vessels:
        if not vessel.mask[slices].any():
            continue
        wide, inner = _widened(slices, vessel.grid.shape, vessel.grid.spacing_kji_mm, margin_mm)
        local = local_vessel_diameter_mm(vessel.mask[wide], vessel.grid.spacing_kji_mm)[inner]
        np.maximum(diameter, np.where(local >= threshold_mm, local, 0.0), out=diameter)
    mask[...] = diameter > 0.0
    return mask, diameter


def _check_mask(mask: np.ndarray, spacing_kji_mm: Sequence[float]) -> np.ndarray:
    """A 3-D boolean mask and three positive spacings, or a one-line error."""
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.dtype != np.bool_:
        raise StructureError(
            f"a vessel mask must be a 3-D boolean array, got {mask.ndim}-D {mask.dtype}", "pass structure.mask"
        )
    spacing = np.asarray(spacing_kji_mm, dtype=float)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise GridError(f"voxel spacing {tuple(spacing.ravel())} mm is not three positive numbers", "use grid spacing")
    return mask


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The mask's voxels plus one voxel of background on each side (clipped to the array)."""
    where = np.argwhere(mask)
    lo = np.maximum(where.min(axis=0) - 1, 0)
    hi = np.minimum(where.max(axis=0) + 2, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _diameter_in_box(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Equivalent-circle diameter of the cross-section at each voxel's nearest centreline voxel, inscribed-bounded."""
    depth = _inscribed_depth_mm(mask, spacing)
    # the centreline: local maxima of the depth (ties kept: a vessel whose axis runs between voxel centres)
    ridge = mask & (depth >= ndimage.maximum_filter(depth, size=3) - 1e-6 * float(spacing.min()))
    _, nearest = ndimage.distance_transform_edt(~ridge, sampling=spacing, return_indices=True)
    owner = np.ravel_multi_index(tuple(n[mask] for n in nearest), mask.shape)
    volume = np.bincount(owner, minlength=mask.size).reshape(mask.shape) * float(np.prod(spacing))
    area = _cross_section_mm2(ridge, volume, spacing)
    # the inscribed ball brackets the circle: 2·depth (to the nearest background centre) is within a voxel of it
    inscribed = 2.0 * depth
    h = float(spacing.max())
    diameter = np.clip(2.0 * np.sqrt(area / math.pi), inscribed - h, inscribed + h)
    out = np.zeros(mask.shape, dtype=np.float32)
    out[mask] = diameter.ravel()[owner]
    return out


def _inscribed_depth_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each vessel voxel to the nearest background voxel centre; the array faces are open."""
    if mask.all():  # no background at all: the faces become the wall
        return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    return ndimage.distance_transform_edt(mask, sampling=spacing)


def _cross_section_mm2(ridge: np.ndarray, volume_mm3: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Vessel volume over centreline length (mm²) in a window around each centreline voxel (0 elsewhere).

    The volume is what the window's centreline voxels own; the length comes from the spread of those voxels along
    their principal axis (a line of n voxels of pitch s: variance s²(n² − 1)/12, so L = √(12 λ₁ + s²)).
    """
    size = CENTRELINE_WINDOW_VOXELS
    weight = ridge.astype(float)

    def window_mean(values: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(values, size=size, mode="constant")[ridge]

    count = window_mean(weight)
    coords = [
        np.arange(n, dtype=float)[tuple(slice(None) if a == b else None for b in range(3))] * spacing[a]
        for a, n in enumerate(ridge.shape)
    ]
    mean = [window_mean(weight * c) / count for c in coords]
    cov = np.empty((count.size, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = cov[:, b, a] = window_mean(weight * coords[a] * coords[b]) / count - mean[a] * mean[b]
    values, vectors = np.linalg.eigh(cov)
    pitch_sq = np.sum((vectors[:, :, -1] * spacing) ** 2, axis=1)
    length = np.sqrt(12.0 * np.maximum(values[:, -1], 0.0) + pitch_sq)
    area = np.zeros(ridge.shape)
    area[ridge] = window_mean(volume_mm3) * size**3 / length  # the window's sum over its length
    return area


def _widened(
    slices: tuple[slice, ...], shape: tuple[int, ...], spacing_kji_mm: Sequence[float], margin_mm: float
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """``slices`` widened by ``margin_mm`` (clipped to ``shape``) and the original crop inside the widened box."""
    pad = [math.ceil(margin_mm / s) for s in spacing_kji_mm]
    wide = tuple(slice(max(0, sl.start - p), min(n, sl.stop + p)) for sl, p, n in zip(slices, pad, shape, strict=True))
    inner = tuple(slice(sl.start - w.start, sl.stop - w.start) for sl, w in zip(slices, wide, strict=True))
    return wide, inner
