"""Applicator metal on the voxel grid, with the sub-voxel position of conducting surfaces.

A voxel belongs to a segment when its centre lies within the segment's radius of its axis (a capsule:
cylinder with hemispherical ends; a zero-length segment is a sphere). The physics frame puts voxel
(k, j, i) at (k·dz, j·dy, i·dx) metres; segments may reach outside the grid and are clipped.

For each face between a voxel outside all metal and a voxel inside conducting metal the raster also
stores θ: the distance from the outside voxel's centre to the conducting surface along the face
normal, in units of the spacing (exact ray–capsule intersection). A solver that holds the metal
voxels at the electrode potential multiplies that face's conductance by 1/θ (Shortley–Weller), so
the electrode's true radius, not its voxel staircase, sets the current.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from insitu.errors import PhysicsError
from insitu.physics.applicator import MetalSegment

__all__ = [
    "MetalRaster",
    "face_candidates",
    "metal_bounding_box",
    "rasterize_metal",
    "ray_capsule_entry",
    "wall_face_fractions",
]

Shape = tuple[int, int, int]
Spacing = tuple[float, float, float]
_NO_HIT = np.inf


@dataclass(frozen=True)
class MetalRaster:
    """Metal on one grid: voxel masks, terminal index per conducting voxel and conducting-face fractions θ.

    ``inside``: voxel centre inside any segment; ``terminal``: electrode index (int16) where the centre is
    inside conducting metal, −1 elsewhere (conducting wins over an insulated segment's round caps, insulated wins
    inside its cylinder: exposed metal ends flat where a coating begins); ``cooled``:
    inside a cooled segment; ``face_fraction``: (fz, fy, fx) float32 in the multigrid face layout, θ ∈
    [theta_min, 1] on faces between an outside voxel and a conducting one, 1 elsewhere.
    """

    shape: Shape
    spacing_m: Spacing
    inside: np.ndarray
    terminal: np.ndarray
    cooled: np.ndarray
    face_fraction: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def conducting(self) -> np.ndarray:
        """Voxels inside conducting metal (held at an electrode potential by the electric solver)."""
        return self.terminal >= 0

    @property
    def insulated(self) -> np.ndarray:
        """Voxels inside metal that carries no current (insulated shafts, catheters)."""
        return self.inside & (self.terminal < 0)

    def terminals(self) -> tuple[int, ...]:
        """Electrode indices that own at least one voxel, ascending."""
        owned = self.terminal[self.terminal >= 0]  # few voxels: cheaper than sorting the whole grid
        return tuple(int(t) for t in np.flatnonzero(np.bincount(owned.astype(np.intp))))


def _check_grid(shape: Sequence[int], spacing_m: Sequence[float]) -> tuple[Shape, Spacing]:
    """Shape as three positive ints and spacing as three positive finite metres, or PhysicsError."""
    try:
        n = tuple(int(s) for s in shape)
        h = tuple(float(s) for s in spacing_m)
    except (TypeError, ValueError):
        n, h = (), ()
    if len(n) != 3 or min(n, default=0) < 1:
        raise PhysicsError(f"grid shape {tuple(shape)!r} is not three positive sizes", "give (nk, nj, ni)")
    if len(h) != 3 or not all(math.isfinite(v) and v > 0 for v in h):
        raise PhysicsError(f"spacing_m {tuple(spacing_m)!r} is not three positive lengths", "give (dz, dy, dx) m")
    return n, h  # type: ignore[return-value]


def metal_bounding_box(segment: MetalSegment, shape: Shape, spacing_m: Spacing, pad: int = 0) -> tuple[slice, ...]:
    """Index slices (k, j, i) of the voxels whose centres may lie inside the capsule, widened by ``pad`` voxels and
    clipped to the grid; an empty slice on some axis when the capsule misses the grid."""
    a = np.asarray(segment.start_m, dtype=float)
    b = np.asarray(segment.end_m, dtype=float)
    lo = np.minimum(a, b) - segment.radius_m
    hi = np.maximum(a, b) + segment.radius_m
    out = []
    for d in range(3):
        first = max(math.ceil(lo[d] / spacing_m[d] - 1e-9) - pad, 0)
        last = min(math.floor(hi[d] / spacing_m[d] + 1e-9) + pad, shape[d] - 1)
        out.append(slice(first, max(last + 1, first)))
    return tuple(out)


def _box_centres(box: tuple[slice, ...], spacing_m: Spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable centre coordinates (z, y, x) in metres of the voxels in an index box."""
    axes = [np.arange(s.start, s.stop, dtype=np.float64) * spacing_m[d] for d, s in enumerate(box)]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def _distance_sq(points: tuple[np.ndarray, ...], segment: MetalSegment) -> np.ndarray:
    """Squared distance from points (broadcastable z, y, x arrays) to the segment's axis (its closest point)."""
    a = np.asarray(segment.start_m, dtype=float)
    ab = np.asarray(segment.end_m, dtype=float) - a
    rel = [points[d] - a[d] for d in range(3)]
    length_sq = float(ab @ ab)
    if length_sq == 0.0:
        return rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    s = np.clip((rel[0] * ab[0] + rel[1] * ab[1] + rel[2] * ab[2]) / length_sq, 0.0, 1.0)
    return (rel[0] - s * ab[0]) ** 2 + (rel[1] - s * ab[1]) ** 2 + (rel[2] - s * ab[2]) ** 2


def _first_root(b_half: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Smaller root t of t² + 2·b_half·t + c = 0 where it is real and ≥ 0, else +inf."""
    disc = b_half * b_half - c
    with np.errstate(invalid="ignore"):
        t = -b_half - np.sqrt(np.where(disc >= 0.0, disc, 0.0))
    return np.where((disc >= 0.0) & (t >= 0.0), t, _NO_HIT)


def ray_capsule_entry(origin: np.ndarray, axis: int, sign: int, segment: MetalSegment) -> np.ndarray:
    """Distance t ≥ 0 along the ray origin + t·sign·e_axis to its first entry into the capsule (+inf: no hit).

    ``origin`` is (N, 3) points (z, y, x metres) outside the capsule. The capsule is the union of two balls and a
    finite cylinder whose flat ends lie inside the balls, so its first entry is the earliest entry into any part.
    """
    a = np.asarray(segment.start_m, dtype=float)
    b = np.asarray(segment.end_m, dtype=float)
    r2 = segment.radius_m**2
    t = np.full(origin.shape[0], _NO_HIT)
    for centre in (a, b):
        rel = origin - centre
        t = np.minimum(t, _first_root(sign * rel[:, axis], np.einsum("ij,ij->i", rel, rel) - r2))
    ab = b - a
    length_sq = float(ab @ ab)
    if length_sq > 0.0:
        u = ab / math.sqrt(length_sq)
        d = np.zeros(3)
        d[axis] = sign
        rel = origin - a
        d_perp = d - (d @ u) * u
        rel_perp = rel - np.outer(rel @ u, u)
        qa = float(d_perp @ d_perp)
        if qa > 1e-24:  # the ray is not parallel to the axis; parallel rays enter through the balls
            qb = np.einsum("ij,j->i", rel_perp, d_perp) / qa
            qc = (np.einsum("ij,ij->i", rel_perp, rel_perp) - r2) / qa
            tc = _first_root(qb, qc)
            hit = np.isfinite(tc)
            s = (rel @ u + np.where(hit, tc, 0.0) * (d @ u)) / math.sqrt(length_sq)  # axial position of the hit
            t = np.minimum(t, np.where(hit & (s >= 0.0) & (s <= 1.0), tc, _NO_HIT))
    return t


def _mark_segment(seg: MetalSegment, shape: Shape, spacing_m: Spacing, out: dict[str, np.ndarray]) -> None:
    """Set inside, terminal and cooled for the voxels whose centres lie in one capsule."""
    box = metal_bounding_box(seg, shape, spacing_m)
    if any(s.stop <= s.start for s in box):
        return
    hit = _distance_sq(_box_centres(box, spacing_m), seg) <= seg.radius_m**2
    out["inside"][box] |= hit
    if seg.cooled:
        out["cooled"][box] |= hit
    if seg.conducting:
        term = out["terminal"][box]
        term[hit] = seg.electrode


def _insulate_body(seg: MetalSegment, shape: Shape, spacing_m: Spacing, out: dict[str, np.ndarray]) -> None:
    """Inside an insulated segment's cylinder (caps excluded) no metal conducts: a conducting capsule's round end
    does not reach into the insulated shaft it meets, so the exposed metal ends flat at the junction, as the
    coating does, on every grid (the overlap of a cap, up to a radius long, would otherwise conduct where voxel
    centres happen to fall in it)."""
    box = metal_bounding_box(seg, shape, spacing_m)
    if any(sl.stop <= sl.start for sl in box):
        return
    a = np.asarray(seg.start_m, dtype=float)
    ab = np.asarray(seg.end_m, dtype=float) - a
    length_sq = float(ab @ ab)
    if length_sq == 0.0:
        return
    points = _box_centres(box, spacing_m)
    rel = [points[d] - a[d] for d in range(3)]
    s = (rel[0] * ab[0] + rel[1] * ab[1] + rel[2] * ab[2]) / length_sq
    body = (s >= 0.0) & (s <= 1.0) & (_distance_sq(points, seg) <= seg.radius_m**2)
    term = out["terminal"][box]
    term[body] = -1


def face_candidates(outside: np.ndarray, target: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces along ``axis`` between an ``outside`` voxel and a ``target`` voxel: (outside voxel indices (N, 3),
    direction ±1 from it to the target)."""
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis] = slice(None, -1)
    hi[axis] = slice(1, None)
    up = np.argwhere(outside[tuple(lo)] & target[tuple(hi)])  # target above
    down = np.argwhere(target[tuple(lo)] & outside[tuple(hi)])  # target below
    down[:, axis] += 1
    idx = np.concatenate([up, down])
    sign = np.concatenate([np.ones(len(up), np.int64), -np.ones(len(down), np.int64)])
    return idx, sign


def _face_fractions(
    segments: Sequence[MetalSegment], raster: dict[str, np.ndarray], spacing_m: Spacing, theta_min: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """θ on faces between an outside voxel and a conducting voxel (within the conducting metal's bounding box)."""
    conducting = [s for s in segments if s.conducting]
    return _fractions_to(conducting, raster["inside"], raster["terminal"] >= 0, spacing_m, theta_min)


def wall_face_fractions(
    segments: Sequence[MetalSegment], raster: MetalRaster, theta_min: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """θ on faces between an outside voxel and a *cooled* metal voxel, against the cooled segments' surfaces (exact
    ray–capsule entry, as for the conducting faces): where a thermal solver places a cooled wall — the insulated
    shaft included, not only the exposed metal."""
    cooled = [s for s in segments if s.cooled]
    return _fractions_to(cooled, raster.inside, raster.cooled & raster.inside, raster.spacing_m, float(theta_min))


def _fractions_to(
    chosen: Sequence[MetalSegment], inside: np.ndarray, target_mask: np.ndarray, spacing_m: Spacing, theta_min: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """θ on faces between an outside (non-metal) voxel and a ``target_mask`` voxel, against ``chosen`` capsules."""
    nk, nj, ni = inside.shape
    fractions = (
        np.ones((nk + 1, nj, ni), np.float32),
        np.ones((nk, nj + 1, ni), np.float32),
        np.ones((nk, nj, ni + 1), np.float32),
    )
    conducting = list(chosen)
    boxes = [metal_bounding_box(s, inside.shape, spacing_m, pad=1) for s in conducting]
    boxes = [b for b in boxes if all(s.stop > s.start for s in b)]
    if not boxes:
        return fractions
    box = tuple(slice(min(b[d].start for b in boxes), max(b[d].stop for b in boxes)) for d in range(3))
    offset = np.array([s.start for s in box])
    outside = ~inside[box]
    target = target_mask[box]
    for axis in range(3):
        idx, sign = face_candidates(outside, target, axis)
        if not len(idx):
            continue
        origin = (idx + offset) * np.asarray(spacing_m)
        t = np.full(len(idx), _NO_HIT)
        for seg in conducting:
            t = np.minimum(t, _entry(origin, axis, sign, seg))
        theta = np.clip(np.where(np.isfinite(t), t / spacing_m[axis], 1.0), theta_min, 1.0)
        face = idx + offset
        face[:, axis] += (sign > 0).astype(np.int64)  # face index: the face below the voxel, or above it
        fractions[axis][face[:, 0], face[:, 1], face[:, 2]] = theta
    return fractions


def _entry(origin: np.ndarray, axis: int, sign: np.ndarray, seg: MetalSegment) -> np.ndarray:
    """:func:`ray_capsule_entry` for rays with per-ray direction sign ±1."""
    t = np.full(origin.shape[0], _NO_HIT)
    for s in (1, -1):
        pick = sign == s
        if pick.any():
            t[pick] = ray_capsule_entry(origin[pick], axis, s, seg)
    return t


def rasterize_metal(
    segments: Sequence[MetalSegment], shape: Sequence[int], spacing_m: Sequence[float], theta_min: float = 0.01
) -> MetalRaster:
    """Voxel masks, terminal indices and conducting-face fractions θ of applicator metal on a grid.

    θ is clamped below at ``theta_min`` so that a surface grazing a voxel centre does not make one face
    conductance (∝ 1/θ) arbitrarily large, which would slow the linear solver without changing the answer much.
    """
    n, h = _check_grid(shape, spacing_m)
    if not (0.0 < theta_min <= 1.0):
        raise PhysicsError(f"theta_min = {theta_min}", "give a minimum face fraction in (0, 1], e.g. 0.01")
    for seg in segments:
        if not isinstance(seg, MetalSegment):
            raise PhysicsError(f"{type(seg).__name__} is not a MetalSegment", "pass applicator metal segments")
        if seg.electrode > np.iinfo(np.int16).max:
            raise PhysicsError(f"electrode index {seg.electrode} is too large", "number electrodes from 0 up")
    raster = {
        "inside": np.zeros(n, dtype=np.bool_),
        "terminal": np.full(n, -1, dtype=np.int16),
        "cooled": np.zeros(n, dtype=np.bool_),
    }
    for seg in segments:
        _mark_segment(seg, n, h, raster)
    for seg in segments:
        if not seg.conducting:
            _insulate_body(seg, n, h, raster)
    fractions = _face_fractions(segments, raster, h, float(theta_min))
    return MetalRaster(n, h, raster["inside"], raster["terminal"], raster["cooled"], fractions)
