"""Several RF electrodes per target so that their zones cover target + margin: a fast surrogate search, then the full
simulation to confirm.

Surrogate. One electrode's zone is a prolate ellipsoid centred half the exposed tip behind the tip, on the electrode's
axis, with the long and short axes of a *reference simulation*: the coupled RF model run once per device and protocol
(:func:`reference_zone`, cached for the session) in the validated liver block of :mod:`insitu.validation.rfa_cases`
(electrode through the centre of a homogeneous liver cube, all perfusion portal) at the tissue library's liver
perfusion, or at the perfusion the caller gives. A crude heat-sink rule is optional (``heat_sink_rim_mm``: no zone
within that distance of a vessel-role structure); it is off by default (placement.yaml says why).

Search. Approach directions are the best-ranked safe straight paths to the target's centroid
(:func:`insitu.planning.trajectory.plan_trajectories`, pairwise at least ``min_direction_angle_deg`` apart). For each
direction, zone centres are tried on a square lattice across it and a few steps along it; each centre becomes an
electrode only when ``plan_trajectories`` finds a safe path to it within ``axis_tolerance_deg`` of the direction (so
every electrode path is a safe trajectory: parallel electrodes from neighbouring skin entries, or paths converging from
different directions). A beam search adds electrodes one at a time (N = 1, 2, …, ``max_electrodes``), keeping paths at
least ``min_spacing_mm`` apart, and ranks sets by the surrogate coverage of target + margin and, among sets within
``coverage_tolerance`` of the best, by the healthy liver in the union of ellipsoids. It stops at the smallest N that
reaches ``required_coverage``, or returns the best set found. Every number lives in ``placement.yaml``.

Confirmation. The RF therapy takes one placement per step; the catalog's cluster device has a fixed 5 mm geometry and
its switching generator switches among that device's own terminals, so independently placed electrodes cannot be
driven simultaneously in one step. :func:`confirm` therefore runs the electrodes as sequential steps (each sees the
tissue the previous one left), which is not the same as simultaneous or switched multi-electrode ablation (those
zones merge more); say so when quoting it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage

from insitu.errors import PlanError, StructureError
from insitu.evaluation.coverage import margin_region, require_margin_mm
from insitu.geometry import orthonormal_basis, segment_segment_distances, unit
from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Role
from insitu.planning.trajectory import Trajectory, plan_trajectories, scene_for

_DATA = Path(__file__).with_name("placement.yaml")
THERAPY = "rfa"
DEFAULT_DEVICE = "rf-cooled-17g-30mm"
DEFAULT_PROTOCOL: dict[str, Any] = {"duration_s": 720.0}  # the standard 12-min Cool-tip run (as the demo)


@cache
def placement_data() -> dict[str, Any]:
    """The search's numbers from ``placement.yaml`` (each with its status and note)."""
    return yaml.safe_load(_DATA.read_text(encoding="utf-8"))


def _setting(section: str, key: str) -> float:
    return float(placement_data()[section][key]["value"])


# ---------------------------------------------------------------------------------------------- reference zone
@dataclass(frozen=True, eq=False)
class ReferenceZone:
    """One electrode's simulated zone in the liver block: axes (mm), where it sits, and the run that made it.

    ``centre_offset_mm`` is how far the simulated zone's centroid lies ahead (toward the tip) of the exposed part's
    centre, the point the surrogate centres its ellipsoid on; ``zone`` and ``grid`` are the block run's zone (the
    electrode along +z, the exposed part centred on the block's centre) for checks.
    """

    device: str
    protocol: dict[str, Any]
    perfusion_per_s: float
    spacing_mm: float
    exposed_tip_mm: float
    long_axis_mm: float
    short_axis_mm: float
    vertical_axis_mm: float
    zone_volume_ml: float
    centre_offset_mm: float
    zone: np.ndarray = field(repr=False)
    grid: Grid = field(repr=False)

    def centre_mm(self, tip_mm: Sequence[float], direction: Sequence[float]) -> np.ndarray:
        """The surrogate zone's centre: half the exposed tip behind ``tip_mm`` along the insertion ``direction``."""
        return np.asarray(tip_mm, dtype=float) - 0.5 * self.exposed_tip_mm * unit(direction)


_REFERENCES: dict[tuple, ReferenceZone] = {}


def _protocol(protocol: dict[str, Any] | None) -> dict[str, Any]:
    from pydantic import ValidationError

    from insitu.therapies.rfa import RFAProtocol

    merged = {**DEFAULT_PROTOCOL, **(protocol or {})}
    try:
        RFAProtocol.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "protocol"
        raise PlanError(
            f"RF protocol {where}: {first['msg']}", "give an rfa protocol, e.g. {duration_s: 720}"
        ) from None
    return merged


def _rf_single(device: str) -> Any:
    from insitu.therapies.rf_devices import rf_device

    chosen = rf_device(device)
    if chosen.parameters.get("layout") != "single" or not float(chosen.parameters.get("exposed_tip_mm", 0) or 0):
        raise PlanError(
            f"the placement search handles single straight RF electrodes; {device!r} is "
            f"{chosen.parameters.get('layout')!r}",
            f"use a single electrode such as {DEFAULT_DEVICE}",
        )
    return chosen


def reference_zone(
    device: str = DEFAULT_DEVICE,
    protocol: dict[str, Any] | None = None,
    *,
    perfusion_per_s: float | None = None,
    spacing_mm: float | None = None,
) -> ReferenceZone:
    """The simulated zone of one ``device`` electrode run with ``protocol`` in a homogeneous liver block (cached).

    The block is :func:`insitu.validation.rfa_cases.block_state` at 37 °C with ``perfusion_per_s`` (default: the tissue
    library's liver perfusion) on a ``spacing_mm`` grid (default placement.yaml, 1 mm); the run is the RF therapy
    itself (:func:`insitu.therapies.rfa.apply`), its zone axes those the therapy reports.
    """
    from insitu.plan import Plan
    from insitu.progress import ensure_progress
    from insitu.simulation import StepContext
    from insitu.therapies import rfa
    from insitu.tissue.library import load_library
    from insitu.validation.rfa_cases import BlockSetup, block_state, block_step, liver_perfusion_per_s

    chosen = _rf_single(device)
    protocol = _protocol(protocol)
    perfusion = liver_perfusion_per_s() if perfusion_per_s is None else float(perfusion_per_s)
    spacing = _setting("reference", "spacing_mm") if spacing_mm is None else float(spacing_mm)
    if not (math.isfinite(perfusion) and perfusion >= 0.0):
        raise PlanError(f"perfusion_per_s {perfusion_per_s!r} is not a non-negative number", "give ω in 1/s")
    if not (math.isfinite(spacing) and 0.4 <= spacing <= 4.0):
        raise PlanError(f"reference spacing_mm {spacing_mm!r} is outside 0.4–4 mm", "give a spacing in that range")
    key = (device, json.dumps(protocol, sort_keys=True), round(perfusion, 9), spacing)
    if key in _REFERENCES:
        return _REFERENCES[key]
    setup = BlockSetup(
        device,
        float(protocol["duration_s"]),
        37.0,
        perfusion,
        spacing_mm=spacing,
        half_size_mm=_setting("reference", "half_size_mm"),
    )
    block, state = block_state(setup)
    step = block_step(setup).model_copy(update={"protocol": protocol})
    context = StepContext(block, Plan(patient="block", steps=[step]), load_library(), ensure_progress(None))
    _, result = rfa.apply(state, step, context)
    zone = np.asarray(result.fields["ablation_zone"], dtype=bool)
    if not zone.any():
        raise PlanError(
            f"the reference run of {device} with {protocol} ablates nothing", "give a longer or stronger protocol"
        )
    k, j, i = np.nonzero(zone)
    centroid = block.grid.index_to_world(np.stack([i, j, k], axis=-1).astype(float)).mean(axis=0)
    reference = ReferenceZone(
        device=device,
        protocol=protocol,
        perfusion_per_s=perfusion,
        spacing_mm=spacing,
        exposed_tip_mm=float(chosen.parameters["exposed_tip_mm"]),
        long_axis_mm=float(result.metrics["long_axis_mm"]),
        short_axis_mm=float(result.metrics["short_axis_mm"]),
        vertical_axis_mm=float(result.metrics["vertical_axis_mm"]),
        zone_volume_ml=float(result.metrics["zone_volume_ml"]),
        centre_offset_mm=float(centroid[2]),  # the block's electrode points along +z, exposed part centred at 0
        zone=zone,
        grid=block.grid,
    )
    _REFERENCES[key] = reference
    return reference


# ---------------------------------------------------------------------------------------------- surrogate
def ellipsoid_contains(
    points_mm: np.ndarray, centre_mm: Sequence[float], axis: Sequence[float], long_mm: float, short_mm: float
) -> np.ndarray:
    """Which ``points_mm`` (n, 3) lie in the prolate ellipsoid of full axes ``long_mm`` (along ``axis``) and
    ``short_mm`` (across) centred at ``centre_mm``."""
    rel = np.asarray(points_mm, dtype=float) - np.asarray(centre_mm, dtype=float)
    along = rel @ unit(axis)
    across_sq = np.einsum("...i,...i", rel, rel) - along**2
    return (along / (0.5 * long_mm)) ** 2 + across_sq / (0.5 * short_mm) ** 2 <= 1.0


def surrogate_zone(
    grid: Grid, tip_mm: Sequence[float], direction: Sequence[float], reference: ReferenceZone
) -> np.ndarray:
    """One electrode's surrogate zone on ``grid`` (bool volume [k, j, i]): the reference ellipsoid placed on its
    axis, centred half the exposed tip behind ``tip_mm``."""
    centre = reference.centre_mm(tip_mm, direction)
    points = grid.world_coordinates_mm(np.float64).reshape(-1, 3)
    inside = ellipsoid_contains(points, centre, direction, reference.long_axis_mm, reference.short_axis_mm)
    return inside.reshape(grid.shape)


# ---------------------------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class Electrode:
    """One electrode of a placement: its tip and skin entry (LPS mm) and the safe path they come from."""

    tip_mm: np.ndarray
    entry_mm: np.ndarray
    trajectory: Trajectory

    @property
    def direction(self) -> np.ndarray:
        """Unit insertion direction, entry → tip."""
        return unit(self.tip_mm - self.entry_mm)


@dataclass(eq=False)
class PlacementResult:
    """The chosen electrodes and what the surrogate predicts for them (coverages 0–1, healthy liver in mL).

    ``history`` maps each N searched to the best set's surrogate coverage of target + margin (on the search's
    voxel sample); the other figures are counted on every voxel of the grid.
    """

    target: str
    device: str
    protocol: dict[str, Any]
    margin_mm: float
    required_coverage: float
    electrodes: list[Electrode]
    target_coverage: float
    margin_coverage: float
    healthy_ml: float
    reference: ReferenceZone
    history: dict[int, float]
    candidates: int

    @property
    def n(self) -> int:
        """Number of electrodes."""
        return len(self.electrodes)

    @property
    def reached(self) -> bool:
        """Whether the predicted target + margin coverage reaches the required coverage."""
        return self.margin_coverage >= self.required_coverage

    def steps(self, protocol: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Plan step dicts, one RF step per electrode (``protocol`` overrides the searched one)."""
        chosen = _protocol(protocol) if protocol is not None else self.protocol
        return [
            {
                "therapy": THERAPY,
                "device": self.device,
                "label": f"RFA {n + 1}/{self.n} of {self.target}, {e.trajectory.length_mm:.0f} mm path",
                "placement": {
                    "tip_mm": [round(float(v), 2) for v in e.tip_mm],
                    "entry_mm": [round(float(v), 2) for v in e.entry_mm],
                },
                "protocol": dict(chosen),
            }
            for n, e in enumerate(self.electrodes)
        ]

    def zone(self, grid: Grid) -> np.ndarray:
        """The union of the electrodes' surrogate zones on ``grid`` (bool volume)."""
        union = np.zeros(grid.shape, dtype=bool)
        for e in self.electrodes:
            union |= surrogate_zone(grid, e.tip_mm, e.direction, self.reference)
        return union


# ---------------------------------------------------------------------------------------------- search
def _target(patient: Patient, target: str) -> np.ndarray:
    structure = patient.structure(target)
    if structure.role is not Role.TARGET:
        raise PlanError(f"{target!r} has role {structure.role.value}, not target", "name a tumour or lymph node")
    if structure.is_empty:
        raise StructureError(f"target {target!r} is empty (0 voxels)", "check its mask or label value")
    return structure.mask


def _healthy(patient: Patient) -> np.ndarray:
    """Liver voxels outside every target: what an ablation should spare."""
    liver = np.zeros(patient.grid.shape, dtype=bool)
    for s in patient.structures.values():
        if s.role is Role.ORGAN and (s.tissue == "liver" or "liver" in s.name.lower()):
            liver |= s.mask
    for s in patient.targets:
        liver &= ~s.mask
    return liver


def _box(mask: np.ndarray, grid: Grid, pad_mm: float) -> tuple[slice, slice, slice]:
    where = np.argwhere(mask)
    pad = np.ceil(pad_mm / np.asarray(grid.spacing_kji_mm)).astype(int)
    lo = np.maximum(where.min(axis=0) - pad, 0)
    hi = np.minimum(where.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _world(grid: Grid, box: tuple[slice, slice, slice], local: np.ndarray) -> np.ndarray:
    kji = np.argwhere(local) + np.array([s.start for s in box])
    return grid.index_to_world(kji[:, ::-1].astype(float))


def _sample(points: np.ndarray, limit: int) -> np.ndarray:
    return points[:: max(1, math.ceil(len(points) / limit))]


def _sink_free(points: np.ndarray, patient: Patient, rim_mm: float) -> np.ndarray:
    """Points farther than ``rim_mm`` from every vessel-role structure (all True when the rule is off)."""
    if rim_mm <= 0.0 or len(points) == 0:
        return np.ones(len(points), dtype=bool)
    vessels = np.zeros(patient.grid.shape, dtype=bool)
    for s in patient.with_role(Role.VESSEL):
        vessels |= s.mask
    if not vessels.any():
        return np.ones(len(points), dtype=bool)
    distance = ndimage.distance_transform_edt(~vessels, sampling=patient.grid.spacing_kji_mm)
    k, j, i = patient.grid.world_to_kji(points)
    return distance[k, j, i] > rim_mm


def _directions(paths: list[Trajectory], count: int, min_angle_deg: float) -> list[np.ndarray]:
    chosen: list[np.ndarray] = []
    for path in paths:
        d = unit(path.direction)
        if all(math.degrees(math.acos(min(1.0, float(d @ c)))) >= min_angle_deg for c in chosen):
            chosen.append(d)
        if len(chosen) >= count:
            break
    return chosen


def _candidates(
    scene: Any,
    centroid: np.ndarray,
    directions: list[np.ndarray],
    lateral_mm: float,
    axial_mm: float,
    step_mm: float,
    tip_offset_mm: float,
    path_options: dict[str, Any],
) -> list[Trajectory]:
    """Safe paths whose zone centres lie on a lattice across and along each approach direction."""
    n_lat, n_ax = int(lateral_mm // step_mm), round(axial_mm / step_mm)
    options = {**path_options, "axis_tolerance_deg": _setting("search", "axis_tolerance_deg")}
    found: dict[tuple, Trajectory] = {}
    for d in directions:
        u, v, _ = orthonormal_basis(d)
        for a in range(-n_lat, n_lat + 1):
            for b in range(-n_lat, n_lat + 1):
                if math.hypot(a, b) * step_mm > lateral_mm + 1e-9:
                    continue
                for s in range(-n_ax, n_ax + 1):
                    aim = centroid + step_mm * (a * u + b * v + s * d)
                    try:
                        path = plan_trajectories(
                            scene, aim, tip_offset_mm=tip_offset_mm, n_best=1, preferred_axis=d, **options
                        )[0]
                    except PlanError:
                        continue
                    found.setdefault(tuple(np.round(np.r_[path.entry_mm, path.tip_mm], 2)), path)
    return list(found.values())


def _count(bits: np.ndarray) -> np.ndarray:
    """Set bits per row of a packed boolean array."""
    return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)


def _rank(coverage: np.ndarray, healthy: np.ndarray, tolerance: float) -> np.ndarray:
    """Order: coverage first (in steps of ``tolerance``), then least healthy tissue."""
    return np.lexsort((healthy, -np.floor(coverage / tolerance + 1e-9)))


def _beam_search(
    cover: np.ndarray,
    healthy: np.ndarray,
    n_points: int,
    compatible: np.ndarray,
    max_n: int,
    required: float,
) -> tuple[tuple[int, ...], dict[int, float]]:
    """Electrode sets grown one at a time from packed per-candidate masks (``cover``: target + margin sample,
    ``healthy``: healthy liver sample); returns the chosen set (candidate indices) and the best coverage per N."""
    width = int(_setting("search", "beam_width"))
    tolerance = _setting("search", "coverage_tolerance")
    beam: list[tuple[int, ...]] = [()]
    history: dict[int, float] = {}
    best: tuple[float, int, float, tuple[int, ...]] | None = None  # (coverage bucket, −N, −healthy, members)
    for n in range(1, max_n + 1):
        seen: set[frozenset[int]] = set()
        sets: list[tuple[int, ...]] = []
        coverage_parts: list[np.ndarray] = []
        lost_parts: list[np.ndarray] = []
        for members in beam:
            allowed = np.ones(len(cover), dtype=bool)
            for m in members:
                allowed &= compatible[m]
            allowed[list(members)] = False
            fresh = [int(j) for j in np.nonzero(allowed)[0] if frozenset((*members, int(j))) not in seen]
            if not fresh:
                continue
            seen.update(frozenset((*members, j)) for j in fresh)
            sets.extend((*members, j) for j in fresh)
            c_bits = np.bitwise_or.reduce(cover[list(members)], axis=0) if members else 0
            h_bits = np.bitwise_or.reduce(healthy[list(members)], axis=0) if members else 0
            coverage_parts.append(_count(cover[fresh] | c_bits) / max(n_points, 1))
            lost_parts.append(_count(healthy[fresh] | h_bits).astype(float))
        if not sets:
            break
        coverage, lost = np.concatenate(coverage_parts), np.concatenate(lost_parts)
        order = _rank(coverage, lost, tolerance)[:width]
        beam = [sets[o] for o in order]
        top = int(order[0])
        history[n] = float(coverage[top])
        candidate = (float(np.floor(coverage[top] / tolerance + 1e-9)), -n, -float(lost[top]), sets[top])
        if best is None or candidate[:3] > best[:3]:
            best = candidate
        if coverage[top] >= required:
            return sets[top], history
    if best is None:
        raise PlanError("no electrode could be placed (no candidate path)", "check the target and the paths to it")
    return best[3], history


def plan_placement(
    patient: Patient,
    target: str,
    *,
    device: str = DEFAULT_DEVICE,
    protocol: dict[str, Any] | None = None,
    margin_mm: float = 5.0,
    required_coverage: float | None = None,
    max_electrodes: int | None = None,
    guidance: str = "ct",
    reference: ReferenceZone | None = None,
    heat_sink_rim_mm: float | None = None,
    **path_options: Any,
) -> PlacementResult:
    """Electrodes of ``device`` whose surrogate zones cover ``target`` + ``margin_mm`` (see the module docstring).

    ``reference`` is the one-electrode zone to use (default :func:`reference_zone` for device and protocol);
    ``path_options`` go to :func:`insitu.planning.trajectory.plan_trajectories` (e.g. ``max_tilt_deg``, ``position``).
    """
    margin = require_margin_mm(margin_mm)
    required = _setting("search", "required_coverage") if required_coverage is None else float(required_coverage)
    if not (math.isfinite(required) and 0.0 < required <= 1.0):
        raise PlanError(f"required_coverage {required_coverage!r} is outside (0, 1]", "give a fraction, e.g. 0.95")
    max_n = int(_setting("search", "max_electrodes")) if max_electrodes is None else max_electrodes
    if isinstance(max_n, bool) or not isinstance(max_n, int) or not 1 <= max_n <= 6:
        raise PlanError(f"max_electrodes {max_electrodes!r} is not a whole number 1–6", "give 1 to 6 electrodes")
    rim = _setting("heat_sink", "rim_mm") if heat_sink_rim_mm is None else float(heat_sink_rim_mm)
    if not (math.isfinite(rim) and rim >= 0.0):
        raise PlanError(f"heat_sink_rim_mm {heat_sink_rim_mm!r} is negative or not a number", "give mm ≥ 0")
    for key in ("preferred_axis", "axis_tolerance_deg", "tip_offset_mm", "n_best", "device"):
        if key in path_options:
            raise PlanError(f"path option {key!r} is set by the placement search", f"leave {key} out")
    _rf_single(device)
    protocol = _protocol(protocol)
    reference = reference or reference_zone(device, protocol)
    grid = patient.grid
    tumour = _target(patient, target)
    region = margin_region(tumour, grid, margin)
    healthy = _healthy(patient)

    # geometry of the search: where zone centres go and the box every zone stays in
    step = _setting("search", "lattice_step_mm")
    long_mm, short_mm = reference.long_axis_mm, reference.short_axis_mm
    radius_mm = (3.0 * np.count_nonzero(region) * grid.voxel_volume_ml * 1e3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    lateral = max(step, radius_mm - 0.25 * short_mm)
    axial = step * max(1, math.ceil(max(0.0, radius_mm - 0.5 * long_mm) / step))
    box = _box(region, grid, 0.5 * long_mm + axial + step)
    limit = int(_setting("search", "max_points"))
    region_pts = _world(grid, box, region[box])
    healthy_pts = _world(grid, box, healthy[box])
    sample_r, sample_h = _sample(region_pts, limit), _sample(healthy_pts, limit)
    free_r = _sink_free(sample_r, patient, rim)

    # candidate electrodes: safe paths only
    scene = scene_for(patient)
    centroid = np.asarray(patient.structure(target).centroid_mm, dtype=float)
    options = {"guidance": guidance, "device": device, **path_options}
    tip_offset = 0.5 * reference.exposed_tip_mm
    pool = plan_trajectories(
        scene, centroid, tip_offset_mm=tip_offset, n_best=int(_setting("search", "direction_pool")), **options
    )
    directions = _directions(pool, int(_setting("search", "directions")), _setting("search", "min_direction_angle_deg"))
    paths = _candidates(scene, centroid, directions, lateral, axial, step, tip_offset, options)
    if not paths:
        paths = pool[:1]
    tips = np.array([p.tip_mm for p in paths])
    entries = np.array([p.entry_mm for p in paths])
    axes = (tips - entries) / np.linalg.norm(tips - entries, axis=1)[:, None]
    centres = tips - tip_offset * axes
    cover = np.array(
        [ellipsoid_contains(sample_r, c, a, long_mm, short_mm) & free_r for c, a in zip(centres, axes, strict=True)]
    )
    spare = np.array(
        [ellipsoid_contains(sample_h, c, a, long_mm, short_mm) for c, a in zip(centres, axes, strict=True)]
    )
    gaps = segment_segment_distances(entries[:, None], tips[:, None], entries[None, :], tips[None, :])
    compatible = gaps >= _setting("search", "min_spacing_mm")
    chosen, history = _beam_search(
        np.packbits(cover, axis=1), np.packbits(spare, axis=1), len(sample_r), compatible, max_n, required
    )

    # the chosen set counted on every voxel of the box
    electrodes = [Electrode(paths[c].tip_mm.copy(), paths[c].entry_mm.copy(), paths[c]) for c in chosen]
    box_pts = grid.index_to_world(
        (np.argwhere(np.ones(tuple(s.stop - s.start for s in box), bool)) + [s.start for s in box])[:, ::-1].astype(
            float
        )
    )
    union = np.zeros(len(box_pts), dtype=bool)
    for c in chosen:
        union |= ellipsoid_contains(box_pts, centres[c], axes[c], long_mm, short_mm)
    union &= _sink_free(box_pts, patient, rim)
    union = union.reshape(tuple(s.stop - s.start for s in box))
    return PlacementResult(
        target=target,
        device=device,
        protocol=protocol,
        margin_mm=margin,
        required_coverage=required,
        electrodes=electrodes,
        target_coverage=float(np.count_nonzero(union & tumour[box])) / float(np.count_nonzero(tumour)),
        margin_coverage=float(np.count_nonzero(union & region[box])) / float(np.count_nonzero(region)),
        healthy_ml=float(np.count_nonzero(union & healthy[box])) * grid.voxel_volume_ml,
        reference=reference,
        history=history,
        candidates=len(paths),
    )


# ---------------------------------------------------------------------------------------------- confirmation
@dataclass(eq=False)
class Confirmation:
    """The full simulation of a placement: the outcome, the union of the steps' zones and its measures."""

    outcome: Any
    zone: np.ndarray
    target_coverage: float
    margin_coverage: float
    healthy_ml: float
    simultaneous: bool = False
    note: str = (
        "electrodes run as sequential RF steps (the RF therapy takes one placement per step); simultaneous or "
        "switched multi-electrode ablation merges zones more"
    )


def confirm(
    patient: Patient,
    result: PlacementResult,
    protocol: dict[str, Any] | None = None,
    *,
    patient_ref: str = "patient",
    progress: Any = None,
) -> Confirmation:
    """Run the placement's steps through the real simulation (sequentially) and measure the union of their zones."""
    from insitu.plan import plan_from_dict
    from insitu.simulation import simulate

    plan = plan_from_dict(
        {
            "name": f"placement-{result.target}",
            "patient": patient_ref,
            "targets": [result.target],
            "margin_mm": result.margin_mm,
            "steps": result.steps(protocol),
        }
    )
    outcome = simulate(plan, patient, progress)
    zone = np.zeros(patient.grid.shape, dtype=bool)
    for step in outcome.steps:
        zone |= np.asarray(step.fields["ablation_zone"], dtype=bool)
    tumour = _target(patient, result.target)
    region = margin_region(tumour, patient.grid, result.margin_mm)
    return Confirmation(
        outcome=outcome,
        zone=zone,
        target_coverage=float(np.count_nonzero(zone & tumour)) / float(np.count_nonzero(tumour)),
        margin_coverage=float(np.count_nonzero(zone & region)) / float(np.count_nonzero(region)),
        healthy_ml=float(np.count_nonzero(zone & _healthy(patient))) * patient.grid.voxel_volume_ml,
    )
