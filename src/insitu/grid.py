"""The voxel grid every volume of a patient lives on: shape, spacing, origin and direction (LPS).

Conventions (DESIGN.md): world coordinates are millimetres in LPS, as DICOM and ITK use them.
Arrays are indexed ``[k, j, i]`` (z, y, x), as SimpleITK returns them, so ``Grid.shape`` is the
array shape ``(nk, nj, ni)``; spacing, origin and the columns of ``direction`` follow ITK's
``(i, j, k)`` order. The world position of continuous index ``(i, j, k)`` is

    x = origin + direction @ diag(spacing) @ (i, j, k)

with ``origin`` the centre of voxel ``(0, 0, 0)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from insitu.errors import GridError

_DIRECTION_TOLERANCE = 1e-4
_MATCH_TOLERANCE_MM = 1e-3


def _as_triplet(values: Sequence[float], name: str) -> tuple[float, float, float]:
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise GridError(f"{name} {values!r} is not three numbers", f"give {name} as (x, y, z)") from exc
    if arr.shape != (3,):
        raise GridError(f"{name} {tuple(arr)} does not have three values", f"give {name} as (x, y, z)")
    if not np.all(np.isfinite(arr)):
        raise GridError(f"{name} {tuple(arr)} is not finite", f"give finite {name} values")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Grid:
    """A regular 3-D voxel grid in LPS millimetres.

    ``shape`` is the array shape ``(nk, nj, ni)``; ``spacing_mm`` and ``origin_mm`` are in
    ``(i, j, k)`` order; ``direction`` is a 3×3 matrix whose columns are the LPS unit vectors of
    the i, j and k axes.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(n) for n in self.shape)
        except (TypeError, ValueError) as exc:
            raise GridError(f"grid shape {self.shape!r} is not three integers", "give (nk, nj, ni)") from exc
        if len(shape) != 3 or min(shape) < 1:
            raise GridError(f"grid shape {shape} must be three positive integers", "give (nk, nj, ni) ≥ 1")
        spacing = _as_triplet(self.spacing_mm, "spacing_mm")
        if min(spacing) <= 0.0:
            raise GridError(
                f"spacing_mm {spacing} has a zero or negative value",
                "voxel spacing must be positive millimetres; check the image header",
            )
        origin = _as_triplet(self.origin_mm, "origin_mm")
        direction = np.asarray(self.direction, dtype=float)
        if direction.size != 9 or not np.all(np.isfinite(direction)):
            raise GridError(
                "direction is not a finite 3×3 matrix",
                "give a 3×3 rotation (columns = i, j, k axes)",
            )
        direction = direction.reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=_DIRECTION_TOLERANCE):
            raise GridError(
                "direction matrix is not orthonormal",
                "give unit, mutually perpendicular axis columns (sheared grids are not supported)",
            )
        direction = direction.copy()
        direction.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)
        object.__setattr__(self, "direction", direction)

    # ------------------------------------------------------------------ basic facts
    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (ITK's ``GetSize`` order)."""
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def spacing_kji_mm(self) -> tuple[float, float, float]:
        """Spacing in array axis order ``(k, j, i)``, e.g. for ``scipy.ndimage`` ``sampling``."""
        return (self.spacing_mm[2], self.spacing_mm[1], self.spacing_mm[0])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm³)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def is_axis_aligned(self) -> bool:
        return bool(np.allclose(self.direction, np.eye(3), atol=_DIRECTION_TOLERANCE))

    @property
    def index_to_world_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix mapping continuous (i, j, k, 1) to LPS (x, y, z, 1) in mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing_mm)
        m[:3, 3] = self.origin_mm
        return m

    # ------------------------------------------------------------------ conversions
    def index_to_world(self, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous index ``(..., 3)`` in (i, j, k) order → LPS millimetres ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=float)
        m = self.direction @ np.diag(self.spacing_mm)
        return ijk @ m.T + np.asarray(self.origin_mm)

    def world_to_index(self, points_mm: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS millimetres ``(..., 3)`` → continuous index ``(..., 3)`` in (i, j, k) order."""
        points = np.asarray(points_mm, dtype=float)
        inv = np.diag(1.0 / np.asarray(self.spacing_mm)) @ self.direction.T
        return (points - np.asarray(self.origin_mm)) @ inv.T

    def world_to_voxel(self, points_mm: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS millimetres → the integer (i, j, k) of the voxel containing each point (nearest centre)."""
        return np.floor(self.world_to_index(points_mm) + 0.5).astype(np.int64)

    def world_to_kji(self, point_mm: Sequence[float]) -> tuple[int, int, int]:
        """One LPS point → array index ``(k, j, i)``; raises when the point lies outside the grid."""
        i, j, k = (int(v) for v in self.world_to_voxel(point_mm))
        if not self.contains_kji((k, j, i)):
            lo, hi = self.bounds_mm()
            raise GridError(
                f"point {tuple(round(float(v), 2) for v in point_mm)} mm lies outside the grid "
                f"(bounds {tuple(round(float(v), 1) for v in lo)} to {tuple(round(float(v), 1) for v in hi)} mm)",
                "give a point inside the image (LPS millimetres)",
            )
        return (k, j, i)

    def contains_kji(self, kji: Sequence[int]) -> bool:
        return all(0 <= int(v) < n for v, n in zip(kji, self.shape, strict=True))

    def contains_world(self, points_mm: np.ndarray | Sequence[float]) -> np.ndarray:
        """Whether each point lies within the grid's physical extent (voxel edges included)."""
        ijk = self.world_to_index(points_mm)
        upper = np.asarray(self.size_ijk, dtype=float) - 0.5
        return np.all((ijk >= -0.5) & (ijk <= upper), axis=-1)

    def corners_mm(self) -> np.ndarray:
        """The 8 outer corners (voxel edges, not centres) in LPS millimetres, shape (8, 3)."""
        ni, nj, nk = self.size_ijk
        corners = np.array([[i, j, k] for i in (-0.5, ni - 0.5) for j in (-0.5, nj - 0.5) for k in (-0.5, nk - 0.5)])
        return self.index_to_world(corners)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box of the grid's physical extent (voxel edges)."""
        corners = self.corners_mm()
        return corners.min(axis=0), corners.max(axis=0)

    def axis_coordinates_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For axis-aligned grids: the LPS coordinate of every k, j and i voxel centre (1-D arrays)."""
        if not self.is_axis_aligned:
            raise GridError("axis coordinates need an axis-aligned grid", "use world_coordinates_mm()")
        z = self.origin_mm[2] + self.spacing_mm[2] * np.arange(self.shape[0])
        y = self.origin_mm[1] + self.spacing_mm[1] * np.arange(self.shape[1])
        x = self.origin_mm[0] + self.spacing_mm[0] * np.arange(self.shape[2])
        return z, y, x

    def world_coordinates_mm(self, dtype: type = np.float32) -> np.ndarray:
        """LPS coordinates of every voxel centre, shape ``shape + (3,)`` (x, y, z last)."""
        k, j, i = np.meshgrid(*(np.arange(n, dtype=dtype) for n in self.shape), indexing="ij")
        ijk = np.stack([i, j, k], axis=-1)
        return self.index_to_world(ijk).astype(dtype)

    # ------------------------------------------------------------------ comparison
    def matches(self, other: Grid, tolerance_mm: float = _MATCH_TOLERANCE_MM) -> bool:
        """Same shape, and spacing, origin and direction equal within ``tolerance_mm``."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tolerance_mm)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tolerance_mm)
            and np.allclose(self.direction, other.direction, atol=_DIRECTION_TOLERANCE)
        )

    def require_match(self, other: Grid, what: str) -> None:
        """Raise a GridError naming ``what`` when ``other`` is not this grid."""
        if not self.matches(other):
            raise GridError(
                f"{what} is on a different grid (shape {other.shape[::-1]}, spacing "
                f"{tuple(round(s, 4) for s in other.spacing_mm)}, origin "
                f"{tuple(round(o, 3) for o in other.origin_mm)}) from the image (shape {self.shape[::-1]}, "
                f"spacing {tuple(round(s, 4) for s in self.spacing_mm)}, origin "
                f"{tuple(round(o, 3) for o in self.origin_mm)})",
                "resample it onto the image grid or export it from the same series",
            )

    def require_array(self, array: np.ndarray, what: str) -> None:
        """Raise when ``array`` does not have this grid's shape."""
        if tuple(np.shape(array)) != self.shape:
            raise GridError(
                f"{what} has shape {tuple(np.shape(array))} but the grid is {self.shape} (k, j, i)",
                "give an array on the patient's grid",
            )

    # ------------------------------------------------------------------ sub-grids
    def crop(self, lower_kji: Sequence[int], upper_kji: Sequence[int]) -> tuple[Grid, tuple[slice, ...]]:
        """Sub-grid of voxels ``lower ≤ kji < upper`` (clipped to the grid) and the array slices."""
        lo = [max(0, int(v)) for v in lower_kji]
        hi = [min(n, int(v)) for v, n in zip(upper_kji, self.shape, strict=True)]
        if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
            raise GridError(
                f"crop box {lo}..{hi} is empty inside shape {self.shape}",
                "give a box that overlaps the grid",
            )
        origin = self.index_to_world([lo[2], lo[1], lo[0]])
        sub = Grid(
            shape=(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]),
            spacing_mm=self.spacing_mm,
            origin_mm=tuple(origin),
            direction=self.direction,
        )
        return sub, tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))

    def crop_to_box_mm(
        self, lower_mm: Sequence[float], upper_mm: Sequence[float], margin_mm: float = 0.0
    ) -> tuple[Grid, tuple[slice, ...]]:
        """Smallest sub-grid that holds the LPS box ``[lower, upper]`` grown by ``margin_mm``."""
        lo = np.minimum(np.asarray(lower_mm, float), np.asarray(upper_mm, float)) - margin_mm
        hi = np.maximum(np.asarray(lower_mm, float), np.asarray(upper_mm, float)) + margin_mm
        box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        ijk = self.world_to_index(box)
        lower = np.floor(ijk.min(axis=0) + 0.5).astype(int)
        upper = np.floor(ijk.max(axis=0) + 0.5).astype(int) + 1
        return self.crop(lower[::-1], upper[::-1])

    def crop_to_mask(self, mask: np.ndarray, margin_mm: float = 0.0) -> tuple[Grid, tuple[slice, ...]]:
        """Smallest sub-grid holding every true voxel of ``mask`` plus ``margin_mm`` on each side."""
        self.require_array(mask, "mask")
        nonzero = np.argwhere(mask)
        if nonzero.size == 0:
            raise GridError("cannot crop to an empty mask", "give a mask with at least one voxel")
        pad = np.ceil(margin_mm / np.asarray(self.spacing_kji_mm)).astype(int)
        return self.crop(nonzero.min(axis=0) - pad, nonzero.max(axis=0) + 1 + pad)

    def with_spacing(self, spacing_mm: Sequence[float]) -> Grid:
        """A grid over the same physical extent with a new spacing (voxel edges kept)."""
        new = np.asarray(_as_triplet(spacing_mm, "spacing_mm"))
        if min(new) <= 0:
            raise GridError(f"spacing_mm {tuple(new)} must be positive", "give positive millimetres")
        old = np.asarray(self.spacing_mm)
        extent = np.asarray(self.size_ijk) * old
        size = np.maximum(1, np.round(extent / new).astype(int))
        # keep the outer edge of voxel 0 fixed: new first centre = old edge + new/2
        edge = self.index_to_world([-0.5, -0.5, -0.5])
        origin = edge + self.direction @ (new / 2.0)
        return Grid(
            shape=(size[2], size[1], size[0]),
            spacing_mm=tuple(new),
            origin_mm=tuple(origin),
            direction=self.direction,
        )

    # ------------------------------------------------------------------ SimpleITK bridge
    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Grid:
        """The grid of a SimpleITK image (3-D only)."""
        if image.GetDimension() != 3:
            raise GridError(f"image has {image.GetDimension()} dimensions", "give a 3-D volume")
        size = image.GetSize()
        return cls(
            shape=(size[2], size[1], size[0]),
            spacing_mm=image.GetSpacing(),
            origin_mm=image.GetOrigin(),
            direction=np.asarray(image.GetDirection(), dtype=float).reshape(3, 3),
        )

    def to_sitk(self, array: np.ndarray) -> sitk.Image:
        """Wrap a ``[k, j, i]`` array on this grid as a SimpleITK image with this geometry."""
        self.require_array(array, "array")
        array = np.asarray(array)
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        self.stamp(image)
        return image

    def stamp(self, image: sitk.Image) -> None:
        """Copy this grid's spacing, origin and direction onto ``image``."""
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(tuple(float(v) for v in self.direction.reshape(-1)))

    def resample(
        self,
        array: np.ndarray,
        target: Grid,
        interpolation: str = "linear",
        default_value: float = 0.0,
    ) -> np.ndarray:
        """Resample ``array`` (on this grid) onto ``target`` with SimpleITK.

        ``interpolation`` is ``"linear"`` for images and fields, ``"nearest"`` for labels and masks,
        ``"bspline"`` for smooth images. Points outside this grid get ``default_value``.
        """
        methods = {
            "linear": sitk.sitkLinear,
            "nearest": sitk.sitkNearestNeighbor,
            "bspline": sitk.sitkBSpline,
        }
        if interpolation not in methods:
            raise GridError(f"unknown interpolation {interpolation!r}", f"use one of {sorted(methods)}")
        source = self.to_sitk(array)
        reference = sitk.Image(list(target.size_ijk), source.GetPixelID())
        target.stamp(reference)
        out = sitk.Resample(source, reference, sitk.Transform(), methods[interpolation], default_value)
        result = sitk.GetArrayFromImage(out)
        if np.asarray(array).dtype == np.bool_:
            result = result.astype(bool)
        return result

    def describe(self) -> str:
        """One line for logs and ``insitu info``."""
        ni, nj, nk = self.size_ijk
        sx, sy, sz = self.spacing_mm
        lo, hi = self.bounds_mm()
        ext = hi - lo
        return (
            f"{ni}×{nj}×{nk} voxels at {sx:g}×{sy:g}×{sz:g} mm "
            f"({ext[0]:.0f}×{ext[1]:.0f}×{ext[2]:.0f} mm), origin "
            f"({self.origin_mm[0]:.1f}, {self.origin_mm[1]:.1f}, {self.origin_mm[2]:.1f}) mm LPS"
            + ("" if self.is_axis_aligned else ", oblique")
        )

    def to_dict(self) -> dict:
        return {
            "shape_kji": list(self.shape),
            "size_ijk": list(self.size_ijk),
            "spacing_mm": list(self.spacing_mm),
            "origin_mm": list(self.origin_mm),
            "direction": [float(v) for v in self.direction.reshape(-1)],
        }

    def __eq__(self, other: object) -> bool:  # exact equality (use matches() for tolerance)
        if not isinstance(other, Grid):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.spacing_mm == other.spacing_mm
            and self.origin_mm == other.origin_mm
            and bool(np.array_equal(self.direction, other.direction))
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.spacing_mm, self.origin_mm, tuple(self.direction.reshape(-1))))


def isotropic_grid(extent_mm: Sequence[float], spacing_mm: float, center_mm: Sequence[float] = (0, 0, 0)) -> Grid:
    """An axis-aligned grid covering ``extent_mm`` (x, y, z) centred on ``center_mm``."""
    extent = np.asarray(_as_triplet(extent_mm, "extent_mm"))
    if not (math.isfinite(spacing_mm) and spacing_mm > 0):
        raise GridError(f"spacing_mm {spacing_mm} must be a positive number", "give e.g. 1.0")
    size = np.maximum(1, np.round(extent / spacing_mm).astype(int))
    center = np.asarray(_as_triplet(center_mm, "center_mm"))
    origin = center - (size - 1) * spacing_mm / 2.0
    return Grid(shape=(size[2], size[1], size[0]), spacing_mm=(spacing_mm,) * 3, origin_mm=tuple(origin))
