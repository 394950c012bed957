"""Where an applicator goes: its axis from a plan step, the track check (tissue at the tip, no bone on the way to
the skin), the crop box it needs, and the conversion to a cropped grid's physics frame. Shared by every needle-like
applicator (RF electrodes, MW antennas, later fibres and cryoprobes)."""

from __future__ import annotations

import numpy as np

from insitu.errors import PlanError
from insitu.grid import Grid
from insitu.plan import Step
from insitu.simulation import StepContext
from insitu.state import TissueState

PATH_SAMPLE_FRACTION = 0.5  # trajectory checked every half voxel
BONE_TISSUES = ("bone_cortical", "bone_cancellous")


def axis_from_placement(step: Step) -> tuple[np.ndarray, np.ndarray]:
    """(tip point, unit insertion direction) in LPS mm from the step's placement."""
    placement = step.placement
    tip = np.asarray(placement.point_mm, dtype=float)
    if placement.entry_mm is not None:
        direction = tip - np.asarray(placement.entry_mm, dtype=float)
    elif placement.direction is not None:
        direction = np.asarray(placement.direction, dtype=float)
    else:
        raise PlanError(
            "an applicator needs an axis", "give placement.direction (entry → tip) or entry_mm with target_mm"
        )
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        raise PlanError("the applicator's entry and tip coincide", "give an entry point away from the tip")
    return tip, direction / norm


def to_physics_frame(sub: Grid, points_mm: np.ndarray) -> np.ndarray:
    """LPS mm → (z, y, x) metres of the sub-grid's index frame (voxel (k, j, i) centre at (k·dz, j·dy, i·dx))."""
    ijk = sub.world_to_index(points_mm)
    return ijk[..., ::-1] * (np.asarray(sub.spacing_kji_mm) * 1e-3)


def check_path(state: TissueState, context: StepContext, tip_mm: np.ndarray, direction: np.ndarray, label: str) -> None:
    """The tip must be in tissue and the track from the tip back to the skin must not cross bone."""
    grid = state.grid
    library = context.library
    air = library.index_of("air")
    bone = {library.index_of(name) for name in BONE_TISSUES if name in library}
    step_mm = PATH_SAMPLE_FRACTION * min(grid.spacing_mm)
    if not bool(grid.contains_world(tip_mm)):
        raise PlanError(
            f"{label}: the applicator tip {tuple(np.round(tip_mm, 1))} mm lies outside the image", "move it"
        )
    k, j, i = grid.world_to_kji(tip_mm)
    if state.tissue_index[k, j, i] == air:
        raise PlanError(
            f"{label}: the applicator tip {tuple(np.round(tip_mm, 1))} mm lies outside the body (air)",
            "place the tip in tissue",
        )
    distance = 0.0
    while True:
        point = tip_mm - distance * direction
        if not bool(grid.contains_world(point)):
            return
        k, j, i = grid.world_to_kji(point)
        tissue = int(state.tissue_index[k, j, i])
        if tissue == air:
            return  # reached the skin
        if tissue in bone:
            raise PlanError(
                f"{label}: the track crosses bone ({library.names[tissue]}) at "
                f"{tuple(np.round(point, 1))} mm, {distance:.0f} mm behind the tip",
                "choose an entry point between the ribs or another angle",
            )
        distance += step_mm


def active_mask(grid: Grid, points_mm: np.ndarray) -> np.ndarray:
    """Voxels of the index box spanned by ``points_mm`` (clipped to the grid): what the crop must hold."""
    ijk = grid.world_to_index(points_mm)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, np.asarray(grid.shape[::-1]) - 1)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int), 0, np.asarray(grid.shape[::-1]) - 1)
    mask = np.zeros(grid.shape, dtype=bool)
    mask[lo[2] : hi[2] + 1, lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = True
    return mask


def mark_line_metal(raster, segments, spacing_m) -> int:
    """A conducting segment thinner than the voxels may cover no voxel centre: mark the voxels its axis passes
    through (a line electrode; its effective radius is then the grid's, ≈ 0.2 h, not the device's). Returns the
    number of segments so marked."""
    marked = 0
    h = np.asarray(spacing_m)
    shape = np.asarray(raster.shape)
    for seg in segments:
        if not seg.conducting:
            continue
        a, b = np.asarray(seg.start_m), np.asarray(seg.end_m)
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / (0.25 * h.min()))) + 1)
        points = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
        voxels = np.unique(np.round(points / h).astype(int), axis=0)
        voxels = voxels[np.all((voxels >= 0) & (voxels < shape), axis=1)]
        k, j, i = voxels.T
        if voxels.size == 0 or np.any(raster.terminal[k, j, i] == seg.electrode):
            continue
        raster.terminal[k, j, i] = seg.electrode
        raster.inside[k, j, i] = True
        raster.cooled[k, j, i] |= seg.cooled
        marked += 1
    return marked
