"""Straight percutaneous paths from the skin to a target, under CT or ultrasound guidance.

A path runs from a skin entry to the applicator's tip: the target point, or beyond it along the axis by
``tip_offset_mm`` (an RF electrode's tip sits past the centre of its zone). It is *safe* when the applicator, its axis
widened by its radius, keeps every hard structure's margin along its whole length: bone and cartilage, lung and
pleura, heart, gallbladder, bowel, stomach and their gas, and vessels at least ``min_radius_mm`` wide
(``trajectory.yaml`` holds every rule and number with its source). Safe paths within the applicator's usable length are
ranked by soft costs (closeness to the other organs at risk, little room beyond a hard margin, length, CT tilt, skin
angle). CT guidance limits the craniocaudal tilt (or keeps the path in the axial plane); ultrasound guidance needs an
acoustic window: a probe on the skin beside the entry whose imaging plane holds the path, with no bone, gas or lung
between the probe and the path. When no path is safe, :class:`~insitu.errors.PlanError` says what blocks them.

How: a :class:`TrajectoryScene` (once per patient) holds, per margin group of hard structures, the distance from every
voxel centre to the nearest structure voxel and which structure that is (one exact Euclidean distance transform with
indices per group), the same for the soft organs at risk, the body's skin voxels with outward normals, and an
ultrasound shadow map. :func:`plan_trajectories` then marches thousands of candidate paths through those volumes at
half-voxel steps in numpy, a gather per group and sample. The test is conservative: a sample's distance is read at the
nearest voxel centre and lowered by the sample's offset from it and by half a step (distances are 1-Lipschitz; where
that bound fails narrowly, the best bound of the eight surrounding centres is taken), so the whole continuous segment,
widened by radius and margin, stays clear of the structure's surface (half a voxel beyond its voxel centres, as
:func:`insitu.geometry.signed_distance_mm`), and its axis never enters a structure voxel. A path is refused at most
a voxel diagonal plus half a step before it would truly come too close.

Coordinates are LPS millimetres (z superior); the axial plane is the world x–y plane.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage
from scipy.spatial import cKDTree

from insitu.errors import PlanError
from insitu.grid import Grid
from insitu.patient.patient import ROLE_PAINT_ORDER, Patient
from insitu.patient.structure import Role, Structure

_DATA = Path(__file__).with_name("trajectory.yaml")
GUIDANCES = ("ct", "us")
POSITIONS = ("supine", "prone", "any")
_TABLE_DIRECTION = {"supine": np.array([0.0, 1.0, 0.0]), "prone": np.array([0.0, -1.0, 0.0])}  # LPS: +y posterior
OUTSIDE_BODY = "outside the body"
_SAMPLES_PER_CHUNK = 1_500_000
REPORT_DISTANCE_MM = 60.0  # reported distances beyond this are inf ("far"): the KD-tree queries stop there


# ---------------------------------------------------------------------------------------------- rules
@cache
def trajectory_data() -> dict[str, Any]:
    """The planner's rules and numbers from ``trajectory.yaml`` (each number with its source and status)."""
    return yaml.safe_load(_DATA.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class HardCategory:
    """Structures a path must not approach closer than ``margin_mm`` (matched by tissue type or name key)."""

    name: str
    tissues: tuple[str, ...]
    names: tuple[str, ...]
    margin_mm: float

    def matches(self, structure: Structure) -> bool:
        name = structure.name.lower()
        return structure.tissue in self.tissues or any(key in name for key in self.names)


@dataclass(frozen=True)
class TrajectoryRules:
    """Every number the planner uses; :func:`load_rules` fills it from ``trajectory.yaml``."""

    categories: tuple[HardCategory, ...]
    obstacle_margin_mm: float
    large_vessel_min_radius_mm: float
    large_vessel_margin_mm: float
    comfort_distance_mm: float
    weight_oar: float
    weight_hard_clearance: float
    weight_length: float
    weight_angle: float
    weight_skin_angle: float
    min_separation_mm: float
    max_candidates: int
    max_skin_angle_deg: float
    table_cone_deg: float
    normal_radius_mm: float
    gas_hu: float
    axis_tolerance_deg: float
    ct_max_tilt_deg: float
    us_probe_offset_mm: tuple[float, float]
    us_max_probe_tilt_deg: float
    us_sector_half_angle_deg: float
    us_max_depth_mm: float
    us_visible_length_mm: float
    us_skin_skip_mm: float
    us_fan_step_mm: float
    us_max_probes_per_path: int
    us_max_paths_checked: int
    us_shadow_tissues: tuple[str, ...]

    def margin_of(self, category: str) -> float:
        """The hard margin (mm) of a category by name (``bone``, ``lung``, …)."""
        for cat in self.categories:
            if cat.name == category:
                return cat.margin_mm
        raise PlanError(f"no hard category {category!r}", f"known: {', '.join(c.name for c in self.categories)}")

    def with_margin(self, category: str, margin_mm: float) -> TrajectoryRules:
        """A copy with one hard category's margin changed."""
        _check_finite(margin_mm, f"{category} margin_mm", minimum=0.0)
        self.margin_of(category)
        cats = tuple(replace(c, margin_mm=float(margin_mm)) if c.name == category else c for c in self.categories)
        return replace(self, categories=cats)


def load_rules(**overrides: Any) -> TrajectoryRules:
    """The rules of ``trajectory.yaml``; keyword arguments replace single fields (e.g. ``ct_max_tilt_deg=20``)."""
    data = trajectory_data()

    def v(section: str, key: str) -> Any:
        return data[section][key]["value"]

    hard = data["hard"]
    categories = tuple(
        HardCategory(
            name=name,
            tissues=tuple(entry.get("tissues", ())),
            names=tuple(str(n).lower() for n in entry.get("names", ())),
            margin_mm=float(entry["margin_mm"]["value"]),
        )
        for name, entry in hard.items()
        if name != "obstacle"
    )
    rules = TrajectoryRules(
        categories=categories,
        obstacle_margin_mm=float(hard["obstacle"]["margin_mm"]["value"]),
        large_vessel_min_radius_mm=float(v("large_vessels", "min_radius_mm")),
        large_vessel_margin_mm=float(v("large_vessels", "margin_mm")),
        comfort_distance_mm=float(v("soft", "comfort_distance_mm")),
        weight_oar=float(v("soft", "weight_oar")),
        weight_hard_clearance=float(v("soft", "weight_hard_clearance")),
        weight_length=float(v("soft", "weight_length")),
        weight_angle=float(v("soft", "weight_angle")),
        weight_skin_angle=float(v("soft", "weight_skin_angle")),
        min_separation_mm=float(v("soft", "min_separation_mm")),
        max_candidates=int(v("entry", "max_candidates")),
        max_skin_angle_deg=float(v("entry", "max_skin_angle_deg")),
        table_cone_deg=float(v("entry", "table_cone_deg")),
        normal_radius_mm=float(v("entry", "normal_radius_mm")),
        gas_hu=float(v("entry", "gas_hu")),
        axis_tolerance_deg=float(v("entry", "axis_tolerance_deg")),
        ct_max_tilt_deg=float(v("ct", "max_tilt_deg")),
        us_probe_offset_mm=tuple(float(x) for x in v("us", "probe_offset_mm")),  # type: ignore[arg-type]
        us_max_probe_tilt_deg=float(v("us", "max_probe_tilt_deg")),
        us_sector_half_angle_deg=float(v("us", "sector_half_angle_deg")),
        us_max_depth_mm=float(v("us", "max_depth_mm")),
        us_visible_length_mm=float(v("us", "visible_length_mm")),
        us_skin_skip_mm=float(v("us", "skin_skip_mm")),
        us_fan_step_mm=float(v("us", "fan_step_mm")),
        us_max_probes_per_path=int(v("us", "max_probes_per_path")),
        us_max_paths_checked=int(v("us", "max_paths_checked")),
        us_shadow_tissues=tuple(data["us"]["shadow"]["tissues"]),
    )
    unknown = sorted(set(overrides) - set(TrajectoryRules.__dataclass_fields__))
    if unknown:
        raise PlanError(
            f"unknown trajectory rule(s) {', '.join(unknown)}",
            f"use fields of TrajectoryRules, e.g. {', '.join(list(TrajectoryRules.__dataclass_fields__)[2:6])}",
        )
    return replace(rules, **overrides) if overrides else rules


def _check_finite(value: float, what: str, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{what} {value!r} is not a number", f"give {what} as a number") from None
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        raise PlanError(f"{what} {value!r} is out of range", f"give a finite {what} ≥ {minimum}")
    if maximum is not None and number > maximum:
        raise PlanError(f"{what} {value!r} is out of range", f"give {what} ≤ {maximum}")
    return number


# ---------------------------------------------------------------------------------------------- applicators
@dataclass(frozen=True)
class ApplicatorReach:
    """What the planner needs of an applicator: its radius and the length it can be inserted (mm)."""

    name: str
    radius_mm: float
    usable_length_mm: float


def applicator_reach(device: Any, usable_length_mm: float | None = None) -> ApplicatorReach:
    """Radius and usable length of a catalog device (name or :class:`~insitu.devices.catalog.Device`).

    The radius is half ``outer_diameter_mm``. The length is ``usable_length_mm`` when given, else the catalog's
    ``usable_length_mm``, else ``shaft_length_mm + exposed_tip_mm`` (the modelled shaft; trajectory.yaml).
    """
    from insitu.devices.catalog import load_catalog

    if isinstance(device, str):
        known = {d.name: d for d in load_catalog()}
        if device not in known:
            raise PlanError(f"unknown device {device!r}", "give a catalog name (insitu devices)")
        device = known[device]
    params = dict(device.parameters)
    if "outer_diameter_mm" not in params:
        raise PlanError(f"device {device.name!r} has no outer_diameter_mm", "pass radius_mm to the planner")
    radius = 0.5 * float(params["outer_diameter_mm"])
    if usable_length_mm is None:
        if "usable_length_mm" in params:
            usable_length_mm = float(params["usable_length_mm"])
        elif "shaft_length_mm" in params:
            usable_length_mm = float(params["shaft_length_mm"]) + float(params.get("exposed_tip_mm", 0.0))
        else:
            raise PlanError(
                f"device {device.name!r} gives no usable length (no usable_length_mm or shaft_length_mm)",
                "pass usable_length_mm",
            )
    length = _check_finite(usable_length_mm, "usable_length_mm", minimum=0.0)
    return ApplicatorReach(name=device.name, radius_mm=radius, usable_length_mm=length)


# ---------------------------------------------------------------------------------------------- scene
@dataclass(eq=False)
class _DistanceGroup:
    """Distance (mm, voxel centre → nearest voxel centre of any member) and the nearest member's name index."""

    margin_mm: float
    distance_mm: np.ndarray  # float32, flat
    nearest: np.ndarray  # uint16, flat: index into TrajectoryScene.names


@dataclass(eq=False)
class TrajectoryScene:
    """What planning needs of one patient, computed once: obstacle distances, skin, shadows, labels.

    Build it with :meth:`build` (or let :func:`plan_trajectories` take it from its per-patient cache).
    """

    patient: Patient
    rules: TrajectoryRules
    names: list[str]
    hard_groups: list[_DistanceGroup]
    soft_group: _DistanceGroup | None
    body: np.ndarray  # bool, flat
    shadow: np.ndarray  # uint16, flat: 0 = clear, else 1 + index into names
    labels: np.ndarray  # uint16, flat: 0 = none, else 1 + index into label_names
    label_names: list[str]
    surface_kji: np.ndarray  # (S, 3) int
    surface_mm: np.ndarray  # (S, 3) float
    normals: np.ndarray  # (S, 3) outward unit normals
    reported: list[str]  # structures whose distance each trajectory reports
    _trees: dict[str, cKDTree | None] = field(default_factory=dict)
    _surface_tree: cKDTree | None = None

    @property
    def grid(self) -> Grid:
        return self.patient.grid

    @property
    def step_mm(self) -> float:
        """Sampling step along paths: half the smallest voxel spacing."""
        return 0.5 * min(self.grid.spacing_mm)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, patient: Patient, rules: TrajectoryRules | None = None) -> TrajectoryScene:
        """Classify the patient's structures into hard and soft ones and compute their distance volumes."""
        rules = load_rules() if rules is None else rules
        grid = patient.grid
        names: list[str] = []

        def name_index(name: str) -> int:
            if name not in names:
                names.append(name)
            return names.index(name)

        body = _body_mask(patient, rules)
        gas = _unlabelled_gas(patient, body, rules)
        hard_members: dict[float, list[tuple[int, np.ndarray]]] = {}
        for structure in patient.structures.values():
            if structure.is_empty or structure.role not in (Role.OAR, Role.OBSTACLE):
                continue
            margin = _hard_margin(structure, rules)
            if margin is not None:
                hard_members.setdefault(margin, []).append((name_index(structure.name), structure.mask))
        if gas is not None:
            hard_members.setdefault(rules.margin_of("gas"), []).append((name_index(gas[0]), gas[1]))
        for vessel_name, large in _large_vessels(patient, rules):
            hard_members.setdefault(rules.large_vessel_margin_mm, []).append((name_index(vessel_name), large))
        hard_groups = [_distance_group(grid, margin, members) for margin, members in sorted(hard_members.items())]

        soft_members = [
            (name_index(s.name), s.mask)
            for s in patient.structures.values()
            if s.role is Role.OAR and not s.is_empty and _hard_margin(s, rules) is None and not _is_skin(s)
        ]
        soft_group = _distance_group(grid, 0.0, soft_members) if soft_members else None

        shadow = np.zeros(grid.shape, dtype=np.uint16)
        for structure in patient.structures.values():
            if structure.tissue in rules.us_shadow_tissues and not structure.is_empty:
                shadow[structure.mask] = name_index(structure.name) + 1
        if gas is not None:
            shadow[gas[1]] = name_index(gas[0]) + 1
        shadow[~body] = name_index(OUTSIDE_BODY) + 1

        labels, label_names = _paint_labels(patient)
        surface_kji, surface_mm, normals = _skin(grid, body, rules.normal_radius_mm)
        reported = [
            s.name
            for s in patient.structures.values()
            if s.role in (Role.OAR, Role.VESSEL, Role.OBSTACLE) and not s.is_empty and not _is_skin(s)
        ]
        if len(names) >= np.iinfo(np.uint16).max:
            raise PlanError(f"{len(names)} structures to plan around", "give fewer than 65535 structures")
        return cls(
            patient=patient,
            rules=rules,
            names=names,
            hard_groups=hard_groups,
            soft_group=soft_group,
            body=body.ravel(),
            shadow=shadow.ravel(),
            labels=labels.ravel(),
            label_names=label_names,
            surface_kji=surface_kji,
            surface_mm=surface_mm,
            normals=normals,
            reported=reported,
        )

    # ------------------------------------------------------------------ sampling helpers
    def flat_index(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat index of each point's nearest voxel, the point's offset from that centre (mm), and whether the
        point lies inside the grid."""
        grid = self.grid
        ijk = grid.world_to_index(points_mm)
        nearest = np.rint(ijk)
        offset = np.linalg.norm((ijk - nearest) * np.asarray(grid.spacing_mm), axis=-1)
        size = np.asarray(grid.size_ijk)
        inside = np.all((nearest >= 0) & (nearest <= size - 1), axis=-1)
        n = np.clip(nearest, 0, size - 1).astype(np.int64)
        flat = (n[..., 2] * grid.shape[1] + n[..., 1]) * grid.shape[2] + n[..., 0]
        return flat, offset, inside

    def surface_tree(self) -> cKDTree:
        if self._surface_tree is None:
            self._surface_tree = cKDTree(self.surface_mm)
        return self._surface_tree

    def structure_tree(self, name: str) -> cKDTree | None:
        """KD-tree of the boundary voxel centres of a structure (for exact reported distances)."""
        if name not in self._trees:
            structure = self.patient.structures[name]
            if structure.is_empty:
                self._trees[name] = None
                return None
            lo, hi = structure.bounding_box_kji
            box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
            mask = structure.mask[box]
            kji = np.argwhere(mask & ~ndimage.binary_erosion(mask, border_value=0)) + lo
            self._trees[name] = cKDTree(self.grid.index_to_world(kji[:, ::-1]))
        return self._trees[name]


def _is_skin(structure: Structure) -> bool:
    return structure.tissue == "skin" or "skin" in structure.name.lower()


def _hard_margin(structure: Structure, rules: TrajectoryRules) -> float | None:
    """The hard margin of a structure, or None when it is not a hard obstacle (vessels are handled apart)."""
    for category in rules.categories:
        if category.matches(structure):
            return category.margin_mm
    return rules.obstacle_margin_mm if structure.role is Role.OBSTACLE else None


def _body_mask(patient: Patient, rules: TrajectoryRules) -> np.ndarray:
    """Inside the body: any structure, or CT above ``gas_hu``; enclosed holes filled slice by slice."""
    body = np.zeros(patient.grid.shape, dtype=bool)
    for structure in patient.structures.values():
        body |= structure.mask
    if patient.modality.upper() == "CT":
        body |= np.asarray(patient.image) > rules.gas_hu
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body


def _unlabelled_gas(patient: Patient, body: np.ndarray, rules: TrajectoryRules) -> tuple[str, np.ndarray] | None:
    """CT voxels below ``gas_hu`` inside the body that no structure claims (unsegmented bowel gas)."""
    if patient.modality.upper() != "CT":
        return None
    gas = body & (np.asarray(patient.image) < rules.gas_hu)
    for structure in patient.structures.values():
        gas &= ~structure.mask
    return (f"gas (CT < {rules.gas_hu:g} HU)", gas) if gas.any() else None


def _large_vessels(patient: Patient, rules: TrajectoryRules) -> list[tuple[str, np.ndarray]]:
    """The parts of each vessel structure where a ball of ``min_radius_mm`` fits (a morphological opening by
    Euclidean distance transforms inside the vessels' bounding box)."""
    vessels = [s for s in patient.structures.values() if s.role is Role.VESSEL and not s.is_empty]
    if not vessels:
        return []
    grid = patient.grid
    union = np.zeros(grid.shape, dtype=bool)
    for vessel in vessels:
        union |= vessel.mask
    radius = rules.large_vessel_min_radius_mm + 0.5 * min(grid.spacing_mm)
    sub, sl = grid.crop_to_mask(union, margin_mm=radius + max(grid.spacing_mm))
    crop = union[sl]
    inside, _ = _edt(crop, sub.spacing_kji_mm)
    core = inside >= radius
    if not core.any():
        return []
    large = crop & (_edt(~core, sub.spacing_kji_mm)[0] <= radius)
    result = []
    for vessel in vessels:
        part = np.zeros(grid.shape, dtype=bool)
        part[sl] = large & vessel.mask[sl]
        if part.any():
            result.append((vessel.name, part))
    return result


def _edt(free: np.ndarray, spacing_kji_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distance (mm, float32) from each voxel centre to the nearest centre where ``free`` is false,
    and that voxel's index (int32, shape (3, ...)): scipy's feature transform, distances in float32 slice by slice
    (scipy's own float64 distances cost three times as long at 1 mm)."""
    ft = ndimage.distance_transform_edt(free, sampling=spacing_kji_mm, return_distances=False, return_indices=True)
    sk, sj, si = (float(s) for s in spacing_kji_mm)
    jj = np.arange(free.shape[1], dtype=np.float32)[:, None]
    ii = np.arange(free.shape[2], dtype=np.float32)[None, :]
    distance = np.empty(free.shape, dtype=np.float32)
    for k in range(free.shape[0]):
        dz = (ft[0, k].astype(np.float32) - np.float32(k)) * np.float32(sk)
        dy = (ft[1, k].astype(np.float32) - jj) * np.float32(sj)
        dx = (ft[2, k].astype(np.float32) - ii) * np.float32(si)
        distance[k] = np.sqrt(dz * dz + dy * dy + dx * dx)
    return distance, ft


def _distance_group(grid: Grid, margin_mm: float, members: list[tuple[int, np.ndarray]]) -> _DistanceGroup:
    """One exact EDT over the union of ``members``: distance and nearest member per voxel."""
    owner = np.zeros(grid.shape, dtype=np.uint16)
    for index, mask in members:
        owner[mask] = index + 1
    distance, ft = _edt(owner == 0, grid.spacing_kji_mm)
    nearest = owner[ft[0], ft[1], ft[2]]
    del ft
    nearest -= 1  # uint16: every voxel's nearest is a member (owner ≥ 1)
    return _DistanceGroup(margin_mm=float(margin_mm), distance_mm=distance.ravel(), nearest=nearest.ravel())


def _paint_labels(patient: Patient) -> tuple[np.ndarray, list[str]]:
    """One label per voxel (roles painted as the tissue volume paints them: the most specific wins)."""
    labels = np.zeros(patient.grid.shape, dtype=np.uint16)
    names: list[str] = []
    for role in ROLE_PAINT_ORDER:
        for structure in patient.with_role(role):
            names.append(structure.name)
            labels[structure.mask] = len(names)
    return labels, names


def _skin(grid: Grid, body: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-surface voxels (not where the body leaves the image), their centres (mm) and outward unit normals.

    The normal points away from the centre of mass of the body voxels in a ball of ``radius_mm`` around the voxel.
    """
    surface = body & ~ndimage.binary_erosion(body, border_value=1)
    kji = np.argwhere(surface)
    if len(kji) == 0:
        return np.zeros((0, 3), int), np.zeros((0, 3)), np.zeros((0, 3))
    reach = np.maximum(1, np.floor(radius_mm / np.asarray(grid.spacing_kji_mm))).astype(int)
    stride = np.maximum(1, reach // 3)
    axes = [np.arange(-r, r + 1, s) for r, s in zip(reach, stride, strict=True)]
    dk, dj, di = (a.ravel() for a in np.meshgrid(*axes, indexing="ij"))
    offsets_kji = np.stack([dk, dj, di], axis=1)
    offsets_mm = grid.index_to_world(offsets_kji[:, ::-1]) - np.asarray(grid.origin_mm)
    keep = np.linalg.norm(offsets_mm, axis=1) <= radius_mm + 1e-9
    offsets_kji, offsets_mm = offsets_kji[keep], offsets_mm[keep]
    # the body continues beyond the image's edges (edge padding), so an image border adds no false slope
    padded = np.pad(body, [(r, r) for r in reach], mode="edge").ravel()
    strides = np.array(
        [(body.shape[1] + 2 * reach[1]) * (body.shape[2] + 2 * reach[2]), body.shape[2] + 2 * reach[2], 1]
    )
    centre = (kji + reach) @ strides
    shift = offsets_kji @ strides
    normals = np.zeros((len(kji), 3))
    chunk = max(1, 4_000_000 // len(offsets_kji))
    for a in range(0, len(kji), chunk):
        inside = padded[centre[a : a + chunk, None] + shift[None, :]].astype(np.float64)
        normals[a : a + chunk] = -(inside @ offsets_mm)
    length = np.linalg.norm(normals, axis=1)
    ok = length > 0
    normals[ok] /= length[ok, None]
    normals[~ok] = np.nan
    return kji, grid.index_to_world(kji[:, ::-1]), normals


_SCENES: weakref.WeakKeyDictionary[Patient, tuple[TrajectoryRules, tuple[str, ...], TrajectoryScene]] = (
    weakref.WeakKeyDictionary()
)


def scene_for(patient: Patient, rules: TrajectoryRules | None = None) -> TrajectoryScene:
    """The cached scene of ``patient`` (rebuilt when the rules or the structure names change)."""
    rules = load_rules() if rules is None else rules
    key = tuple(patient.structures)
    cached = _SCENES.get(patient)
    if cached is not None and cached[0] == rules and cached[1] == key:
        return cached[2]
    scene = TrajectoryScene.build(patient, rules)
    _SCENES[patient] = (rules, key, scene)
    return scene


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Trajectory:
    """One straight path, entry → tip, with the numbers that ranked it.

    ``tilt_deg`` is the angle to the axial plane; ``skin_angle_deg`` the angle to the skin's inward normal;
    ``hard_clearance_mm`` the smallest room left beyond any hard margin (a conservative bound); ``distances_mm`` the
    shortest distance from the applicator's axis to each organ at risk, vessel and obstacle surface (0 = crossed,
    inf = farther than ``REPORT_DISTANCE_MM``);
    ``passes_through`` the structures along the axis with the length in each, from the skin. For ultrasound,
    ``probe_mm`` is the probe's skin contact point, ``beam_direction`` its beam axis and ``plane_normal`` the
    normal of the imaging plane that holds the path.
    """

    guidance: str
    entry_mm: np.ndarray
    target_mm: np.ndarray
    tip_mm: np.ndarray
    direction: np.ndarray
    length_mm: float
    tilt_deg: float
    skin_angle_deg: float
    hard_clearance_mm: float
    nearest_oar: str | None
    nearest_oar_mm: float
    score: float
    cost_terms: dict[str, float]
    distances_mm: dict[str, float]
    passes_through: tuple[tuple[str, float], ...]
    radius_mm: float
    probe_mm: np.ndarray | None = None
    beam_direction: np.ndarray | None = None
    plane_normal: np.ndarray | None = None

    def points(self, step_mm: float = 0.5) -> np.ndarray:
        """Points along the axis from entry to tip, at most ``step_mm`` apart, shape (n, 3)."""
        from insitu.geometry import points_along_segment

        return points_along_segment(self.entry_mm, self.tip_mm, step_mm)

    def placement_fields(self) -> dict[str, list[float]]:
        """The step placement this path gives (``insitu.plan.Placement``: the tip and the entry, LPS mm)."""
        return {"tip_mm": [float(v) for v in self.tip_mm], "entry_mm": [float(v) for v in self.entry_mm]}

    def summary(self) -> dict[str, Any]:
        """JSON-friendly numbers for plans and reports."""

        def r(values: np.ndarray | None) -> list[float] | None:
            return None if values is None else [round(float(x), 2) for x in values]

        return {
            "guidance": self.guidance,
            "entry_mm": r(self.entry_mm),
            "target_mm": r(self.target_mm),
            "tip_mm": r(self.tip_mm),
            "direction": [round(float(x), 4) for x in self.direction],
            "length_mm": round(self.length_mm, 1),
            "tilt_deg": round(self.tilt_deg, 1),
            "skin_angle_deg": round(self.skin_angle_deg, 1),
            "hard_clearance_mm": round(self.hard_clearance_mm, 1),
            "nearest_oar": self.nearest_oar,
            "nearest_oar_mm": round(self.nearest_oar_mm, 1),
            "score": round(self.score, 4),
            "cost_terms": {k: round(v, 4) for k, v in self.cost_terms.items()},
            "distances_mm": {k: round(v, 1) if math.isfinite(v) else None for k, v in self.distances_mm.items()},
            "passes_through": [[name, round(length, 1)] for name, length in self.passes_through],
            "probe_mm": r(self.probe_mm),
            "beam_direction": r(self.beam_direction),
            "plane_normal": r(self.plane_normal),
        }


# ---------------------------------------------------------------------------------------------- marching
@dataclass(frozen=True, eq=False)
class MarchResult:
    """Per path: the first hard structure met from the skin, the room left beyond the hard margins, and the closest
    soft organ at risk."""

    blocker: np.ndarray  # int: −1 safe, else index into scene.names (or −2: leaves the body)
    hard_slack_mm: np.ndarray  # smallest room beyond a hard margin (conservative)
    soft_mm: np.ndarray  # smallest distance to a soft organ at risk's surface (inf when none)
    soft_nearest: np.ndarray  # index into scene.names (−1 when none)


def _required_mm(scene: TrajectoryScene, radius_mm: float, margin_mm: float) -> float:
    """Distance (voxel centre to voxel centre) a sample must keep: radius + margin + the half voxel between the
    structure's centres and its surface, and never less than half a voxel diagonal (the axis stays out of its
    voxels)."""
    spacing = np.asarray(scene.grid.spacing_mm)
    return max(radius_mm + margin_mm + 0.5 * float(spacing.min()), 0.5 * float(np.linalg.norm(spacing)) + 1e-6)


def _corner_bound(scene: TrajectoryScene, distance_mm: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """A lower bound on the distance at each point from the eight voxel centres around it: max over the corners q of
    D(q) − |x − q| (D is 1-Lipschitz, so each term is a bound; the best of eight is tighter than the nearest's)."""
    grid = scene.grid
    ijk = grid.world_to_index(points_mm)
    base = np.floor(ijk)
    size = np.asarray(grid.size_ijk)
    spacing = np.asarray(grid.spacing_mm)
    best = np.full(len(points_mm), -np.inf)
    for corner in itertools.product((0.0, 1.0), repeat=3):
        q = np.clip(base + np.asarray(corner), 0, size - 1)
        gap = np.linalg.norm((ijk - q) * spacing, axis=1)
        n = q.astype(np.int64)
        flat = (n[:, 2] * grid.shape[1] + n[:, 1]) * grid.shape[2] + n[:, 0]
        best = np.maximum(best, distance_mm[flat] - gap)
    return best


def march_paths(scene: TrajectoryScene, entries_mm: np.ndarray, tips_mm: np.ndarray, radius_mm: float) -> MarchResult:
    """March every path entry → tip at half-voxel steps; the first hard structure met from the skin blocks it."""
    entries = np.asarray(entries_mm, dtype=float).reshape(-1, 3)
    tips = np.asarray(tips_mm, dtype=float).reshape(-1, 3)
    count = len(entries)
    blocker = np.full(count, -1, dtype=np.int64)
    slack = np.full(count, np.inf)
    soft = np.full(count, np.inf)
    soft_nearest = np.full(count, -1, dtype=np.int64)
    if count == 0:
        return MarchResult(blocker, slack, soft, soft_nearest)
    step = scene.step_mm
    spacing_min = min(scene.grid.spacing_mm)
    lengths = np.linalg.norm(tips - entries, axis=1)
    directions = (tips - entries) / np.maximum(lengths, 1e-12)[:, None]
    n_samples = int(np.ceil(lengths.max() / step)) + 1
    along = np.arange(n_samples) * step
    needs = [_required_mm(scene, radius_mm, g.margin_mm) for g in scene.hard_groups]
    chunk = max(1, _SAMPLES_PER_CHUNK // n_samples)
    for a in range(0, count, chunk):
        b = min(count, a + chunk)
        s = np.minimum(along[None, :], lengths[a:b, None])
        points = entries[a:b, None, :] + s[..., None] * directions[a:b, None, :]
        flat, offset, _ = scene.flat_index(points)
        first = np.full(b - a, n_samples, dtype=np.int64)
        first_who = np.full(b - a, -1, dtype=np.int64)
        for group, need in zip(scene.hard_groups, needs, strict=True):
            near = group.distance_mm[flat]
            room = near - offset - (0.5 * step + need)
            # where the nearest centre's bound fails but the point may still be clear, take the best bound of the
            # eight surrounding centres (a band around each structure: few samples)
            unsure = (room < 0.0) & (near + offset >= need)
            if unsure.any():
                better = _corner_bound(scene, group.distance_mm, points[unsure]) - (0.5 * step + need)
                room[unsure] = np.maximum(room[unsure], better)
            slack[a:b] = np.minimum(slack[a:b], room.min(axis=1))
            blocked = room < 0.0
            hit = blocked.any(axis=1)
            where = np.where(hit, blocked.argmax(axis=1), n_samples)
            better = where < first
            rows = np.nonzero(better)[0]
            first[rows] = where[rows]
            first_who[rows] = group.nearest[flat[rows, where[rows]]]
        # leaving the body after the first voxel (a concave flank, a tip beyond the skin)
        outside = ~scene.body[flat] & (s > 1.5 * spacing_min)
        out_hit = outside.any(axis=1)
        out_where = np.where(out_hit, outside.argmax(axis=1), n_samples)
        rows = np.nonzero(out_where < first)[0]
        first[rows] = out_where[rows]
        first_who[rows] = -2
        blocker[a:b] = np.where(first < n_samples, first_who, -1)
        if scene.soft_group is not None:
            d = scene.soft_group.distance_mm[flat]
            arg = d.argmin(axis=1)
            rows = np.arange(b - a)
            soft[a:b] = np.maximum(d[rows, arg] - 0.5 * spacing_min, 0.0)
            soft_nearest[a:b] = scene.soft_group.nearest[flat[rows, arg]]
    return MarchResult(blocker, slack, soft, soft_nearest)


# ---------------------------------------------------------------------------------------------- ultrasound
@dataclass(frozen=True)
class _Window:
    probe_mm: np.ndarray
    beam: np.ndarray
    plane_normal: np.ndarray


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between unit vectors (broadcast over leading axes), degrees."""
    return np.degrees(np.arccos(np.clip(np.sum(u * v, axis=-1), -1.0, 1.0)))


def acoustic_window(
    scene: TrajectoryScene, entry_mm: np.ndarray, tip_mm: np.ndarray
) -> tuple[_Window | None, str | None]:
    """A probe position beside the entry whose imaging plane holds the path, with the approach to the tip inside
    its sector and no bone, gas or lung between the probe and the path; else (None, the commonest reason)."""
    rules = scene.rules
    entry, tip = np.asarray(entry_mm, float), np.asarray(tip_mm, float)
    length = float(np.linalg.norm(tip - entry))
    direction = (tip - entry) / length
    low, high = rules.us_probe_offset_mm
    near = np.asarray(scene.surface_tree().query_ball_point(entry, high), dtype=np.int64)
    if near.size == 0:
        return None, "no skin beside the entry"
    gap = np.linalg.norm(scene.surface_mm[near] - entry, axis=1)
    keep = gap >= low
    near, gap = near[keep], gap[keep]
    order = np.argsort(np.abs(gap - 0.5 * (low + high)), kind="stable")[: rules.us_max_probes_per_path]
    near = near[order]
    probes = scene.surface_mm[near]
    inward = -scene.normals[near]
    # the part of the path the operator watches, and the rays that sample the plane between probe and path
    visible = np.linspace(max(0.0, length - rules.us_visible_length_mm), length, 9)
    fan = np.arange(min(rules.us_skin_skip_mm, length), length, rules.us_fan_step_mm)
    fan = np.unique(np.concatenate([fan, [length]]))
    visible_pts = entry + visible[:, None] * direction
    fan_pts = entry + fan[:, None] * direction
    centre = visible_pts.mean(axis=0)
    beam = centre - probes
    beam /= np.linalg.norm(beam, axis=1, keepdims=True)
    reasons: Counter[str] = Counter()
    tilt_ok = np.nan_to_num(_angle_deg(beam, inward), nan=180.0) <= rules.us_max_probe_tilt_deg
    depth_ok = np.linalg.norm(tip - probes, axis=1) <= rules.us_max_depth_mm
    off_line = np.linalg.norm(np.cross(probes - entry, direction), axis=1) >= min(scene.grid.spacing_mm)
    to_visible = visible_pts[None, :, :] - probes[:, None, :]
    to_visible /= np.linalg.norm(to_visible, axis=2, keepdims=True)
    sector_ok = np.all(_angle_deg(to_visible, beam[:, None, :]) <= rules.us_sector_half_angle_deg, axis=1)
    reasons["probe tilt"] += int(np.sum(~tilt_ok))
    reasons["depth"] += int(np.sum(tilt_ok & ~depth_ok))
    reasons["sector"] += int(np.sum(tilt_ok & depth_ok & ~sector_ok))
    geometric = tilt_ok & depth_ok & off_line & sector_ok
    step = scene.step_mm
    skip = 1.5 * min(scene.grid.spacing_mm)  # the probe's own contact voxel
    for p in np.nonzero(geometric)[0]:
        rays = fan_pts - probes[p]
        ray_len = np.linalg.norm(rays, axis=1)
        n = int(np.ceil(ray_len.max() / step)) + 1
        t = np.minimum(np.arange(n)[None, :] * step, ray_len[:, None])
        points = probes[p] + t[..., None] * (rays / ray_len[:, None])[:, None, :]
        flat, _, _ = scene.flat_index(points)
        hits = scene.shadow[flat].astype(np.int64)
        hits[t <= skip] = 0
        if not hits.any():
            normal = np.cross(direction, probes[p] - entry)
            return _Window(probes[p], beam[p], normal / np.linalg.norm(normal)), None
        blockers = hits[hits > 0]
        reasons[f"{scene.names[int(np.bincount(blockers).argmax()) - 1]} shadow"] += 1
    return None, (reasons.most_common(1)[0][0] if reasons else "no probe position")


# ---------------------------------------------------------------------------------------------- planning
def _target_point(scene: TrajectoryScene, target: Sequence[float] | str) -> np.ndarray:
    patient, grid = scene.patient, scene.grid
    if isinstance(target, str):
        if target not in patient.structures:
            raise PlanError(f"no structure named {target!r} to aim at", f"known: {', '.join(patient.structures)}")
        point = np.asarray(patient.structures[target].centroid_mm, dtype=float)
    else:
        try:
            point = np.asarray(target, dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise PlanError(f"target {target!r} is not three numbers", "give target_mm as (x, y, z) in mm") from None
        if not np.all(np.isfinite(point)):
            raise PlanError(f"target {point.tolist()} is not finite", "give finite millimetres")
    if not bool(grid.contains_world(point)):
        lo, hi = grid.bounds_mm()
        raise PlanError(
            f"target {_point(point)} mm lies outside the image ({_point(lo)} to {_point(hi)} mm)",
            "give a target inside the patient (LPS millimetres)",
        )
    flat, _, _ = scene.flat_index(point[None])
    if not scene.body[flat[0]]:
        raise PlanError(f"target {_point(point)} mm lies outside the body", "give a point in tissue")
    for group in scene.hard_groups:
        if group.distance_mm[flat[0]] == 0.0:
            name = scene.names[int(group.nearest[flat[0]])]
            raise PlanError(
                f"target {_point(point)} mm lies inside {name}, which no path may enter",
                "give a target in the organ to treat",
            )
    return point


def _thin(points: np.ndarray, limit: int, start_mm: float) -> np.ndarray:
    """Indices of at most ``limit`` points, one per cell of a regular grid grown until few enough remain."""
    if len(points) <= limit:
        return np.arange(len(points))
    cell = start_mm
    while True:
        cells = np.floor((points - points.min(axis=0)) / cell).astype(np.int64)
        span = cells.max(axis=0) + 1
        keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
        _, first = np.unique(keys, return_index=True)
        if len(first) <= limit:
            return np.sort(first)
        cell *= 1.2


def _percentages(counts: Counter[str], total: int) -> str:
    """``ribs 62 %, lungs 30 %, …`` for the non-zero counts, largest first."""

    def share(n: int) -> str:
        percent = 100.0 * n / max(total, 1)
        return "<1 %" if percent < 0.5 else f"{percent:.0f} %"

    return ", ".join(f"{name} {share(n)}" for name, n in counts.most_common() if n > 0)


def _point(point: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in point) + ")"


def plan_trajectories(
    patient: Patient | TrajectoryScene,
    target_mm: Sequence[float] | str,
    *,
    guidance: str = "ct",
    device: Any = None,
    radius_mm: float | None = None,
    usable_length_mm: float | None = None,
    tip_offset_mm: float = 0.0,
    n_best: int = 5,
    max_tilt_deg: float | None = None,
    in_plane_only: bool = False,
    preferred_axis: Sequence[float] | None = None,
    axis_tolerance_deg: float | None = None,
    position: str = "supine",
    rules: TrajectoryRules | None = None,
) -> list[Trajectory]:
    """The best ``n_best`` safe straight paths to ``target_mm`` (a point in mm, or a structure name: its centroid).

    ``device`` (a catalog name) gives the radius and usable length; ``radius_mm`` and ``usable_length_mm`` override
    it. The tip lies ``tip_offset_mm`` beyond the target along the path. CT guidance keeps the tilt to the axial
    plane within ``max_tilt_deg`` (trajectory.yaml by default), or at 0 with ``in_plane_only``; US guidance needs an
    acoustic window. ``preferred_axis`` keeps paths within ``axis_tolerance_deg`` of that line (either sense);
    ``position`` (supine, prone, any) removes skin facing the table. Raises PlanError saying why when none is safe.
    """
    scene = patient if isinstance(patient, TrajectoryScene) else scene_for(patient, rules)
    rules = scene.rules
    if guidance not in GUIDANCES:
        raise PlanError(f"unknown guidance {guidance!r}", f"use one of {', '.join(GUIDANCES)}")
    if position not in POSITIONS:
        raise PlanError(f"unknown patient position {position!r}", f"use one of {', '.join(POSITIONS)}")
    reach = applicator_reach(device, usable_length_mm) if device is not None else None
    if radius_mm is None:
        if reach is None:
            raise PlanError("the applicator's radius is unknown", "give device= (a catalog name) or radius_mm")
        radius_mm = reach.radius_mm
    if usable_length_mm is None:
        if reach is None:
            raise PlanError("the applicator's usable length is unknown", "give device= or usable_length_mm")
        usable_length_mm = reach.usable_length_mm
    radius = _check_finite(radius_mm, "radius_mm", minimum=0.0)
    usable = _check_finite(usable_length_mm, "usable_length_mm", minimum=0.0)
    offset = _check_finite(tip_offset_mm, "tip_offset_mm", minimum=0.0)
    if int(n_best) < 1:
        raise PlanError(f"n_best {n_best} asks for no path", "give n_best ≥ 1")
    tilt_limit = 0.0 if in_plane_only else rules.ct_max_tilt_deg if max_tilt_deg is None else max_tilt_deg
    tilt_limit = _check_finite(tilt_limit, "max_tilt_deg", minimum=0.0, maximum=90.0)
    target = _target_point(scene, target_mm)
    grid = scene.grid
    mode = "in-plane CT" if guidance == "ct" and in_plane_only else guidance.upper()

    # ---- skin entries and the filters that need no marching
    entries = scene.surface_mm.copy()
    normals = scene.normals
    excluded: Counter[str] = Counter()
    keep = np.all(np.isfinite(normals), axis=1)
    if guidance == "ct" and in_plane_only:
        half_z = 0.5 * float(np.sum(np.abs(grid.direction[2, :]) * np.asarray(grid.spacing_mm)))
        in_plane = np.abs(entries[:, 2] - target[2]) <= half_z + 1e-9
        excluded["outside the target's axial slice"] += int(np.sum(keep & ~in_plane))
        keep &= in_plane
        entries[:, 2] = target[2]
    to_target = target - entries
    distance = np.linalg.norm(to_target, axis=1)
    direction = to_target / np.maximum(distance, 1e-9)[:, None]
    length = distance + offset
    tilt = np.degrees(np.arcsin(np.clip(np.abs(direction[:, 2]), 0.0, 1.0)))
    skin_angle = np.nan_to_num(_angle_deg(direction, -normals), nan=180.0)

    def drop(condition: np.ndarray, reason: str) -> None:
        nonlocal keep
        excluded[reason] += int(np.sum(keep & ~condition))
        keep &= condition

    drop((length <= usable) & (distance > 0.0), f"beyond the {usable:g} mm reach")
    if position != "any":
        table = _TABLE_DIRECTION[position]
        drop(np.nan_to_num(normals @ table, nan=1.0) < math.cos(math.radians(rules.table_cone_deg)), "facing the table")
    if guidance == "ct":
        drop(tilt <= tilt_limit + 1e-9, f"tilted beyond {tilt_limit:g}°")
    drop(skin_angle <= rules.max_skin_angle_deg, "too oblique to the skin")
    if preferred_axis is not None:
        axis = np.asarray(preferred_axis, dtype=float).reshape(3)
        if not np.all(np.isfinite(axis)) or np.linalg.norm(axis) == 0:
            raise PlanError(f"preferred_axis {axis.tolist()} has no direction", "give a non-zero (x, y, z) vector")
        axis = axis / np.linalg.norm(axis)
        tolerance = rules.axis_tolerance_deg if axis_tolerance_deg is None else axis_tolerance_deg
        tolerance = _check_finite(tolerance, "axis_tolerance_deg", minimum=0.0, maximum=90.0)
        off_axis = np.degrees(np.arccos(np.clip(np.abs(direction @ axis), 0.0, 1.0)))
        drop(off_axis <= tolerance + 1e-9, f"more than {tolerance:g}° off the preferred axis")
    tips = target + offset * direction
    drop(grid.contains_world(tips), "tip outside the image")
    candidates = np.nonzero(keep)[0]
    where = f"to {_point(target)} mm"
    if len(candidates) == 0:
        raise PlanError(
            f"no {mode}-guided path {where}: of {len(entries)} skin points none is a candidate "
            f"({_percentages(excluded, max(1, sum(excluded.values())))})",
            _fix(guidance, in_plane_only, position),
        )
    candidates = candidates[_thin(entries[candidates], rules.max_candidates, min(grid.spacing_mm))]

    # ---- hard constraints along the whole path
    march = march_paths(scene, entries[candidates], tips[candidates], radius)
    safe = march.blocker == -1
    if not safe.any():
        blocked: Counter[str] = Counter(
            OUTSIDE_BODY if b == -2 else scene.names[int(b)] for b in march.blocker.tolist()
        )
        raise PlanError(
            f"no safe {mode}-guided path {where}: every one of {len(candidates)} candidate paths crosses "
            f"{_percentages(blocked, len(candidates))} (first blocker from the skin, radius {radius:g} mm with "
            f"margins){_excluded_note(excluded)}",
            _fix(guidance, in_plane_only, position),
        )

    # ---- soft costs and ranking
    safe_rows = np.nonzero(safe)[0]
    idx = candidates[safe_rows]
    comfort = rules.comfort_distance_mm
    terms = {
        "oar": rules.weight_oar * np.clip(1.0 - march.soft_mm[safe] / comfort, 0.0, 1.0),
        "hard_clearance": rules.weight_hard_clearance * np.clip(1.0 - march.hard_slack_mm[safe] / comfort, 0.0, 1.0),
        "length": rules.weight_length * length[idx] / max(usable, 1e-9),
        "angle": (
            rules.weight_angle * tilt[idx] / tilt_limit if guidance == "ct" and tilt_limit > 0 else 0 * tilt[idx]
        ),
        "skin_angle": rules.weight_skin_angle * skin_angle[idx] / 90.0,
    }
    score = sum(terms.values())
    order = np.argsort(score, kind="stable")
    chosen: list[Trajectory] = []
    window_reasons: Counter[str] = Counter()
    tried = 0
    for o in order:
        c = idx[o]
        if any(np.linalg.norm(entries[c] - t.entry_mm) < rules.min_separation_mm for t in chosen):
            continue
        window = None
        if guidance == "us":
            if tried >= rules.us_max_paths_checked:
                break
            tried += 1
            window, reason = acoustic_window(scene, entries[c], tips[c])
            if window is None:
                window_reasons[reason or "no probe position"] += 1
                continue
        soft_pos = int(safe_rows[o])
        nearest = int(march.soft_nearest[soft_pos])
        chosen.append(
            _trajectory(
                scene,
                guidance,
                entries[c],
                target,
                tips[c],
                direction[c],
                radius,
                float(length[c]),
                float(tilt[c]),
                float(skin_angle[c]),
                float(march.hard_slack_mm[soft_pos]),
                scene.names[nearest] if nearest >= 0 else None,
                float(march.soft_mm[soft_pos]),
                float(score[o]),
                {k: float(v[o]) for k, v in terms.items()},
                window,
            )
        )
        if len(chosen) >= int(n_best):
            break
    if not chosen:
        raise PlanError(
            f"no US-guided path {where}: {tried} of {len(idx)} safe paths were tried but none has an acoustic window "
            f"({_percentages(window_reasons, max(1, tried))})",
            "try CT guidance, another patient position, or move the probe constraints in trajectory.yaml",
        )
    return chosen


def _excluded_note(excluded: Counter[str]) -> str:
    rest = [(k, n) for k, n in excluded.most_common() if n]
    if not rest:
        return ""
    return "; further skin points were " + ", ".join(f"{k} ({n})" for k, n in rest)


def _fix(guidance: str, in_plane_only: bool, position: str) -> str:
    options = ["a longer applicator", "another target point"]
    if guidance == "ct":
        options.insert(0, "a larger tilt limit" if not in_plane_only else "tilted (out-of-plane) CT paths")
        options.append("US guidance")
    else:
        options.append("CT guidance")
    if position != "any":
        options.append("another patient position")
    return "try " + ", ".join(options[:-1]) + " or " + options[-1]


def _trajectory(
    scene: TrajectoryScene,
    guidance: str,
    entry: np.ndarray,
    target: np.ndarray,
    tip: np.ndarray,
    direction: np.ndarray,
    radius: float,
    length: float,
    tilt: float,
    skin_angle: float,
    slack: float,
    nearest_oar: str | None,
    nearest_oar_mm: float,
    score: float,
    terms: dict[str, float],
    window: _Window | None,
) -> Trajectory:
    """Assemble a result with exact reported distances and the structures along the axis."""
    from insitu.geometry import points_along_segment

    step = scene.step_mm
    points = points_along_segment(entry, tip, step)
    flat, _, _ = scene.flat_index(points)
    kji = np.unravel_index(flat, scene.grid.shape)
    half = 0.5 * min(scene.grid.spacing_mm)
    distances: dict[str, float] = {}
    for name in scene.reported:
        if scene.patient.structures[name].mask[kji].any():
            distances[name] = 0.0
            continue
        tree = scene.structure_tree(name)
        if tree is not None:
            d, _ = tree.query(points, distance_upper_bound=REPORT_DISTANCE_MM + half)
            distances[name] = max(float(d.min()) - half, 0.0)
    labels = scene.labels[flat]
    segment = float(np.linalg.norm(points[1] - points[0])) if len(points) > 1 else 0.0
    runs: list[tuple[str, float]] = []
    for value in labels.tolist():
        name = scene.label_names[value - 1] if value else "unlabelled"
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + segment)
        else:
            runs.append((name, segment))
    return Trajectory(
        guidance=guidance,
        entry_mm=entry.copy(),
        target_mm=target.copy(),
        tip_mm=tip.copy(),
        direction=direction.copy(),
        length_mm=length,
        tilt_deg=tilt,
        skin_angle_deg=skin_angle,
        hard_clearance_mm=slack,
        nearest_oar=nearest_oar,
        nearest_oar_mm=nearest_oar_mm,
        score=score,
        cost_terms=terms,
        distances_mm=distances,
        passes_through=tuple(runs),
        radius_mm=radius,
        probe_mm=None if window is None else window.probe_mm.copy(),
        beam_direction=None if window is None else window.beam.copy(),
        plane_normal=None if window is None else window.plane_normal.copy(),
    )
