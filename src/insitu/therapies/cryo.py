"""``cryo``: argon–helium cryoablation — one or many cryoprobes, freeze–thaw–freeze protocols, iceball and lethal
isotherms.

A step names a catalog cryoprobe (devices/cryoprobes.yaml), a placement (the tip and axis of the probe; with
``protocol.probes`` the placement is the cluster's reference point and axis and the probes are listed explicitly,
each parallel to the axis unless it gives its own direction) and a protocol: a list of phases — ``freeze``,
``thaw`` (``passive``: the gas stops and the probe floats at the temperature of the tissue touching it; ``active``:
helium warms the wall) — with durations.

Each probe's freezing segment is a held wall of the thermal grid on the probe's outer radius (sub-voxel wall
faces, as RFA's cooled electrode; never voxels of metal, which would cut the explicit step). During a freeze the wall
follows the device's curve T_min + (T_start − T_min)·e^(−t/τ) (argon Joule–Thomson cooling) as long as the heat the
tissue gives it stays within the probe's cooling capacity (catalog ``cooling_capacity_w``, per probe: a J–T probe's
refrigeration is finite, argon flow × the expansion's enthalpy drop); when it would take more, the wall warms to
where the heat equals the capacity (:class:`WallLoad`: the solver's own face fluxes on the Kirchhoff variable of the
freezing model, from the temperatures at the start of each step). One probe in warm perfused tissue is held above
the plateau; probes that share the load reach it. An infinite capacity is the fixed wall. During an active thaw the
wall follows the same curve towards the helium temperature (no limit). A free voxel within a quarter voxel of the
wall (a probe thinner than the grid) is held with it, so a 1.7 mm probe on a 1 mm grid keeps its radius to a quarter
voxel instead of shrinking to half a voxel. The tissue freezes through :class:`insitu.physics.bioheat.Freezing`
(physics/phase_change.py: latent heat over the freezing band, frozen k and ρc, perfusion stopping in ice); tissue
that froze stays unperfused in later phases and steps (vascular stasis).

Outcome: the running minimum temperature is the cryo dose. The iceball is where the tissue reached 0 °C, the
lethal zone where it reached the tissue's lethal temperature (tissue library ``cryo_lethal_temperature_c``: −30 °C
in liver, Littrup 2009) unless the protocol or a plan ``damage_model: cryo:<°C>`` names one; the −20 and −40 °C
planning isotherms are reported too (physics/damage_models.yaml ``cryo_c``). Each isotherm has its volume, its
equivalent diameter in the mid-plane across the probes (the area of the isotherm in that plane as a circle: what a
CT section shows), and its long and short axes. The new state carries the temperature, ``frozen`` (any ice), the
minimum temperature and the lethal zone (``damage``), and the stopped perfusion. The metrics add the heat each probe
took (``probe_heat_w`` at the end of the last freeze, ``probe_peak_heat_w``, ``probe_energy_kj`` per probe) and how
long a wall was held above its curve by the capacity (``wall_capacity_limited_s``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from insitu.devices.catalog import Device, device_for
from insitu.errors import PlanError
from insitu.plan import Point3, Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.placement import active_mask, axis_from_placement, check_path, to_physics_frame
from insitu.therapies.thermal import (
    ABLATION_FIELD,
    CROP_DIFFUSION_LENGTHS,
    CROP_MIN_MARGIN_MM,
    GAS_FILM_W_M2K,
    _medium,
    _vessel_boundary,
    _zone_metrics,
    wall_face_factors,
)
from insitu.therapies.zone_geometry import zone_axes_mm

CRYO_THERAPY = "cryo"
MAX_PROBES = 25  # the largest argon systems drive up to 25 probes (recalled); more is a plan error, not physics
# the crop: 4 unfrozen diffusion lengths of the whole protocol (therapies/thermal.py), plus how far an iceball can
# reach beyond the outermost probe (a 2.4 mm probe's 0 °C isotherm is ≈ 15–20 mm from its axis after 10–15 min;
# Hinshaw 2010 porcine lung: 0 °C diameter 3.1 cm after 2 × 10 min) — a choice with room to spare
ICE_REACH_MM = 25.0
# free voxels closer to the wall than this many spacings are held with it (a thin probe keeps its radius; module
# docstring); those between this and thermal.THERMAL_THETA_MIN get the clamped face factor
SNAP_THETA = 0.25
ICEBALL_C = 0.0  # the iceball edge (damage_models.yaml cryo_c, Littrup 2009)
PLANNING_ISOTHERMS_C = (-20.0, -40.0)  # vendor and conservative planning isotherms (damage_models.yaml cryo_c)
DEFAULT_LETHAL_C = -40.0  # tissues without a cryo_lethal_temperature_c: the conservative isotherm (a choice)
PLANE_SUBSAMPLE = 4  # mid-plane samples per voxel spacing (equivalent diameters to a fraction of a voxel)
MIN_PERFUSION_STASIS = 0.0  # perfusion factor where the tissue froze (vascular stasis, phase_change.yaml)


class CryoPhase(BaseModel):
    """One phase of a cryo protocol."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["freeze", "thaw"]
    duration_s: float = Field(gt=0.0, le=7200.0, description="phase length")
    thaw: Literal["passive", "active"] = Field(
        default="passive", description="thaw phases: passive (gas off, the probe floats) or active (helium)"
    )


class CryoProbe(BaseModel):
    """One probe of a multi-probe placement (LPS mm); its axis is the step's unless it gives a direction."""

    model_config = ConfigDict(extra="forbid")
    tip_mm: Point3
    direction: Point3 | None = None

    @model_validator(mode="after")
    def _direction(self) -> CryoProbe:
        if self.direction is not None and sum(v * v for v in self.direction) == 0.0:
            raise ValueError("a probe direction has zero length")
        return self


def _default_phases() -> list[CryoPhase]:
    return [CryoPhase(kind="freeze", duration_s=600.0), CryoPhase(kind="thaw", duration_s=300.0),
            CryoPhase(kind="freeze", duration_s=600.0)]  # fmt: skip


class CryoProtocol(BaseModel):
    """Probes, phases and outcome settings of one cryoablation (10–5–10 min freeze–thaw–freeze by default:
    thermal.md §1.5, Insights into Imaging 2015 [S35])."""

    model_config = ConfigDict(extra="forbid")
    phases: list[CryoPhase] = Field(default_factory=_default_phases, min_length=1)
    probes: list[CryoProbe] | None = Field(
        default=None, description="every probe (tips in LPS mm); None: one probe at the step's placement"
    )
    wall_temperature_c: float | None = Field(
        default=None, ge=-196.0, le=0.0, description="override the device's freezing wall temperature"
    )
    cooling_capacity_w: float | None = Field(
        default=None, gt=0.0, description="override the device's cooling capacity per probe (W; inf: a fixed wall)"
    )
    lethal_temperature_c: float | None = Field(
        default=None, ge=-100.0, le=0.0, description="lethal isotherm (default: the tissue's, else the plan's cryo:T)"
    )
    region_margin_mm: float | None = Field(
        default=None, gt=0.0, le=500.0, description="simulated region around the probes (default: see the module)"
    )

    @model_validator(mode="after")
    def _freezes(self) -> CryoProtocol:
        if not any(p.kind == "freeze" for p in self.phases):
            raise ValueError("the protocol has no freeze phase")
        return self

    @property
    def duration_s(self) -> float:
        return float(sum(p.duration_s for p in self.phases))


protocol_model = CryoProtocol
_PARAMETERS = (
    "outer_diameter_mm",
    "active_length_mm",
    "wall_min_temperature_c",
    "cooldown_time_constant_s",
    "thaw_wall_temperature_c",
    "thaw_time_constant_s",
)


def cryo_device(name: str | None) -> Device:
    """The cryoprobe called ``name`` from the catalog (one-line errors for unknown names, other therapies and
    entries without the probe model's numbers)."""
    device = device_for(name, CRYO_THERAPY, "cryo", "cryoprobe")
    missing = [p for p in _PARAMETERS if p not in device.parameters]
    if missing:
        raise PlanError(
            f"cryo device {name!r} has no {', '.join(missing)} in the catalog",
            "use cryoprobe-argon-2.4mm or cryoprobe-argon-1.7mm (devices/cryoprobes.yaml)",
        )
    return device


def _probes(step: Step, protocol: CryoProtocol) -> list[tuple[np.ndarray, np.ndarray]]:
    """(tip mm, unit insertion direction) of every probe."""
    point, axis = axis_from_placement(step)
    if protocol.probes is None:
        return [(point, axis)]
    if not protocol.probes:
        raise PlanError("the cryo step has zero probes (protocol.probes is empty)", "list at least one probe tip")
    if len(protocol.probes) > MAX_PROBES:
        raise PlanError(f"the cryo step lists {len(protocol.probes)} probes", f"use at most {MAX_PROBES}")
    out = []
    for probe in protocol.probes:
        d = axis if probe.direction is None else np.asarray(probe.direction, float)
        out.append((np.asarray(probe.tip_mm, float), d / float(np.linalg.norm(d))))
    return out


def cryo_protocol(step: Step) -> CryoProtocol:
    """The step's protocol, validated; a bad field is a one-line PlanError (as the plan loader words it)."""
    try:
        return CryoProtocol.model_validate(step.protocol)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "protocol"
        message = first["msg"].removeprefix("Value error, ")
        raise PlanError(f"cryo protocol {where}: {message}", "fix that field (units are in the field names)") from None


def check_step(step: Step) -> None:
    """Plan-time checks: a known cryoprobe with its model numbers, at least one probe, at most MAX_PROBES."""
    device = cryo_device(step.device)
    protocol = cryo_protocol(step)
    _probes(step, protocol)
    cooling_capacity_w(device, protocol)


# ------------------------------------------------------------------------------------------------ geometry
def probe_segments(device: Device, probes, sub, radius_scale: float = 1.0):
    """The probes' freezing segments as cooled capsules in the sub-grid's physics frame (z, y, x metres): the
    outer radius over ``active_length_mm`` back from each tip."""
    from insitu.physics.applicator import MetalSegment

    radius_m = 0.5e-3 * float(device.parameters["outer_diameter_mm"]) * radius_scale
    length_m = 1e-3 * float(device.parameters["active_length_mm"])
    segments = []
    for tip_mm, direction in probes:
        tip = to_physics_frame(sub, tip_mm)
        ahead = to_physics_frame(sub, tip_mm + direction)
        d = (ahead - tip) / np.linalg.norm(ahead - tip)
        a = tip - d * radius_m
        b = tip - d * max(length_m - radius_m, radius_m)
        segments.append(MetalSegment(tuple(a), tuple(b), radius_m, conducting=True, cooled=True))
    return segments


def probe_walls(segments, shape, spacing_m):
    """(held mask, face factors, probe label per held voxel in C order) of the probes' walls on a grid."""
    from insitu.physics.electrode_raster import face_candidates, rasterize_metal, ray_capsule_entry

    raster = rasterize_metal(segments, shape, spacing_m)
    held = raster.inside.copy()
    h = np.asarray(spacing_m)
    for seg in segments:  # a probe covering no voxel centre: the voxels its axis passes nearest (a line wall)
        a, b = np.asarray(seg.start_m), np.asarray(seg.end_m)
        if (
            np.any(held[tuple(np.argwhere(held).T)])
            and _axis_distance(np.argwhere(held) * h, seg).min() <= seg.radius_m
        ):
            continue
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / (0.25 * h.min()))) + 1)
        voxels = np.round((a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)) / h).astype(int)
        voxels = voxels[np.all((voxels >= 0) & (voxels < np.asarray(shape)), axis=1)]
        held[tuple(voxels.T)] = True

    def fractions(target: np.ndarray) -> list[np.ndarray]:
        """θ on the faces between a free voxel and ``target``, against the true capsules (clipped to [0, 1])."""
        nk, nj, ni = shape
        out = [np.ones((nk + 1, nj, ni), np.float32), np.ones((nk, nj + 1, ni), np.float32),
               np.ones((nk, nj, ni + 1), np.float32)]  # fmt: skip
        for axis in range(3):
            idx, sign = face_candidates(~target, target, axis)
            if not len(idx):
                continue
            origin = idx * h
            t = np.full(len(idx), np.inf)
            for seg in segments:
                for s in (1, -1):
                    pick = sign == s
                    if pick.any():
                        t[pick] = np.minimum(t[pick], ray_capsule_entry(origin[pick], axis, s, seg))
            theta = np.clip(np.where(np.isfinite(t), t / h[axis], 1.0), 0.0, 1.0)
            face = idx.copy()
            face[:, axis] += (sign > 0).astype(np.int64)
            out[axis][face[:, 0], face[:, 1], face[:, 2]] = theta
        return out

    inside = raster.inside
    theta = fractions(inside)  # snapping looks at the true wall only (not at a thin probe's line of voxels)
    for axis in range(3):  # free voxels within SNAP_THETA of the wall join it
        idx, sign = face_candidates(~held, inside, axis)
        if not len(idx):
            continue
        face = idx.copy()
        face[:, axis] += (sign > 0).astype(np.int64)
        near = theta[axis][face[:, 0], face[:, 1], face[:, 2]] < SNAP_THETA
        held[idx[near, 0], idx[near, 1], idx[near, 2]] = True
    theta = fractions(held)
    faces = wall_face_factors(held, theta)
    # each held voxel belongs to the probe whose axis is nearest
    points = np.argwhere(held) * h
    distance = np.stack([_axis_distance(points, s) for s in segments], axis=1)
    return held, faces, np.argmin(distance, axis=1)


def kirchhoff(t_c, liquidus_c: float, width_k: float, kappa: float) -> np.ndarray:
    """Kirchhoff variable φ (K) of the freezing model (physics/bioheat.py ``_kirchhoff``): ∫ k/k_u dT from the
    liquidus, k/k_u 1 above it, rising linearly with the ice fraction to κ at the solidus and κ below."""
    x = liquidus_c - np.asarray(t_c, np.float64)
    xc = np.clip(x, 0.0, width_k)
    return -(x + (kappa - 1.0) * (xc * xc / (2.0 * width_k) + np.maximum(x - width_k, 0.0)))


def kirchhoff_inverse(phi, liquidus_c: float, width_k: float, kappa: float) -> np.ndarray:
    """Temperature (°C) of a Kirchhoff value: the inverse of :func:`kirchhoff`, branch by branch."""
    phi = np.asarray(phi, np.float64)
    km1 = kappa - 1.0
    solidus_phi = -0.5 * width_k * (kappa + 1.0)
    band = -phi if km1 == 0.0 else width_k * (np.sqrt(np.maximum(1.0 - 2.0 * km1 * phi / width_k, 0.0)) - 1.0) / km1
    x = np.where(phi >= 0.0, -phi, np.where(phi > solidus_phi, band, (0.5 * km1 * width_k - phi) / kappa))
    return liquidus_c - x


class WallLoad:
    """The heat each probe's wall takes from the tissue, and the wall temperature at which it equals the probe's
    cooling capacity.

    The solver's flux through a face between a free voxel a and a wall voxel is G·(φ(T_a) − φ(T_wall)), G the face
    conductance (W/K, sub-voxel wall factor included) and φ the Kirchhoff variable of the freezing model (exact for
    its k(T); φ = T − T_l above the liquidus). A probe's load is the sum over its wall faces,
    Q(T_w) = Σ G·φ(T_a) − φ(T_w)·Σ G, which falls as the wall warms; the wall at which Q = Q_max is
    φ⁻¹((Σ G·φ(T_a) − Q_max)/Σ G). Explicit: the neighbours' temperatures at the start of the step.
    """

    def __init__(self, solver, held: np.ndarray, labels: np.ndarray, freezing, count: int) -> None:
        free = ~np.asarray(solver.held_mask)
        owner = np.full(held.shape, -1, np.int64)
        owner[held] = labels
        volume = float(solver.medium.voxel_volume_m3)
        gi, gj, gk = solver.face_conductances()
        index = np.arange(held.size, dtype=np.int64).reshape(held.shape)
        cells, conductance, probe = [], [], []
        for axis, g in ((0, gk), (1, gj), (2, gi)):
            lower = [slice(None)] * 3
            upper = [slice(None)] * 3
            inner = [slice(None)] * 3
            lower[axis], upper[axis], inner[axis] = slice(None, -1), slice(1, None), slice(1, -1)
            lo, up, face = tuple(lower), tuple(upper), tuple(inner)
            for wall_side, free_side in ((lo, up), (up, lo)):  # the wall below the face, then above it
                pick = held[wall_side] & free[free_side]
                cells.append(index[free_side][pick])
                conductance.append(np.asarray(g[face], np.float64)[pick] * volume)
                probe.append(owner[wall_side][pick])
        self.cells = np.concatenate(cells)
        self.conductance_w_k = np.concatenate(conductance)
        self.probe = np.concatenate(probe)
        self.count = count
        self.total_w_k = np.bincount(self.probe, weights=self.conductance_w_k, minlength=count)
        self.liquidus_c = float(freezing.liquidus_c)
        self.width_k = float(freezing.liquidus_c - freezing.solidus_c)
        self.kappa = float(freezing.conductivity_ratio)

    def phi(self, t_c) -> np.ndarray:
        return kirchhoff(t_c, self.liquidus_c, self.width_k, self.kappa)

    def phi_inverse(self, phi) -> np.ndarray:
        return kirchhoff_inverse(phi, self.liquidus_c, self.width_k, self.kappa)

    def tissue_sums(self, T: np.ndarray) -> np.ndarray:
        """Σ G·φ(T_a) over each probe's wall faces (W): the part of the load set by the tissue."""
        tissue = self.phi(T.reshape(-1)[self.cells])
        return np.bincount(self.probe, weights=self.conductance_w_k * tissue, minlength=self.count)

    def heat_w(self, sums: np.ndarray, wall_c: np.ndarray) -> np.ndarray:
        """Heat (W) each probe takes from the tissue with its wall at ``wall_c`` (``sums``: :meth:`tissue_sums`)."""
        return sums - self.total_w_k * self.phi(wall_c)

    def capacity_wall_c(self, sums: np.ndarray, capacity_w: float) -> np.ndarray:
        """Per probe: the wall temperature at which the heat it takes equals ``capacity_w`` (−inf: no wall faces)."""
        faces = self.total_w_k > 0.0
        phi_wall = (sums - capacity_w) / np.where(faces, self.total_w_k, 1.0)
        return np.where(faces, self.phi_inverse(phi_wall), -np.inf)


def _axis_distance(points: np.ndarray, segment) -> np.ndarray:
    a, b = np.asarray(segment.start_m), np.asarray(segment.end_m)
    ab = b - a
    t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-30), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def mid_plane(device: Device, probes) -> tuple[np.ndarray, np.ndarray]:
    """(centre mm, unit normal) of the plane across the probes halfway along their freezing segments."""
    length = float(device.parameters["active_length_mm"])
    axis = np.mean([d for _, d in probes], axis=0)
    axis /= np.linalg.norm(axis)
    centre = np.mean([tip - d * 0.5 * length for tip, d in probes], axis=0)
    return centre, axis


def plane_diameter_mm(
    minimum_c: np.ndarray, sub, centre_mm: np.ndarray, normal: np.ndarray, threshold_c: float
) -> float:
    """Equivalent diameter 2√(A/π) of the region where ``minimum_c`` ≤ ``threshold_c`` in the plane through
    ``centre_mm`` normal to ``normal`` (trilinear samples PLANE_SUBSAMPLE per voxel spacing on the sub-grid)."""
    from scipy.ndimage import map_coordinates

    helper = np.eye(3)[int(np.argmin(np.abs(normal)))]
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    step = min(sub.spacing_mm) / PLANE_SUBSAMPLE
    half = 0.5 * float(np.linalg.norm(np.asarray(sub.shape) * np.asarray(sub.spacing_kji_mm)))
    a = np.arange(-half, half + step, step)
    uu, vv = np.meshgrid(a, a, indexing="ij")
    points = centre_mm + uu[..., None] * u + vv[..., None] * v
    ijk = sub.world_to_index(points.reshape(-1, 3))
    values = map_coordinates(minimum_c, ijk[:, ::-1].T, order=1, mode="constant", cval=np.inf)
    area = float(np.count_nonzero(values <= threshold_c)) * step * step
    return 2.0 * math.sqrt(area / math.pi)


# ------------------------------------------------------------------------------------------------ the run
def cooling_capacity_w(device: Device, protocol: CryoProtocol) -> float:
    """Cooling capacity of one probe (W): the protocol's override, else the catalog's ``cooling_capacity_w``, else
    unlimited (a fixed wall)."""
    if protocol.cooling_capacity_w is not None:
        return float(protocol.cooling_capacity_w)
    value = device.parameters.get("cooling_capacity_w", math.inf)
    try:
        capacity = float(value)
    except (TypeError, ValueError):
        capacity = math.nan
    if not capacity > 0.0:
        raise PlanError(
            f"cryo device {device.name!r} has cooling_capacity_w {value!r}", "give watts > 0 (or .inf) in the catalog"
        )
    return capacity


class HeatLog:
    """What the probes took from the tissue during the freezes: energy per probe, the last heat flow, and how long a
    wall was held above its cooling curve by the capacity."""

    def __init__(self, count: int) -> None:
        self.energy_j = np.zeros(count)
        self.heat_w = np.zeros(count)
        self.peak_w = 0.0
        self.limited_s = 0.0
        self._t: float | None = None
        self._limited = False

    def record(self, t_s: float, heat_w: np.ndarray, limited: bool) -> None:
        self.close(t_s)
        self._t, self.heat_w, self._limited = t_s, heat_w, limited
        self.peak_w = max(self.peak_w, float(np.max(heat_w, initial=0.0)))

    def close(self, t_s: float) -> None:
        """Account for the time since the last record (at the end of a phase: up to its end)."""
        if self._t is not None:
            dt = t_s - self._t
            self.energy_j += self.heat_w * dt
            self.limited_s += dt if self._limited else 0.0
        self._t = None

    def metrics(self, capacity_w: float) -> dict[str, float]:
        out = {"probe_heat_w": float(np.mean(self.heat_w)), "probe_peak_heat_w": self.peak_w,
               "probe_energy_kj": 1e-3 * float(np.mean(self.energy_j)),
               "wall_capacity_limited_s": self.limited_s}  # fmt: skip
        if math.isfinite(capacity_w):
            out["probe_cooling_capacity_w"] = capacity_w
        return out


def freeze_wall(wall_min, tau, begin, start, capacity_w, load: WallLoad, labels, log: HeatLog):
    """The wall during a freeze: each probe follows T_min + (T_start − T_min)·e^(−t/τ) unless the heat that wall
    would take exceeds the probe's cooling capacity; then it sits where the heat equals the capacity (warmer)."""

    def wall(t: float, T: np.ndarray):
        curve = wall_min + (start - wall_min) * math.exp(-(t - begin) / tau)
        sums = load.tissue_sums(T)
        values = curve
        limited = False
        if math.isfinite(capacity_w):
            values = np.maximum(curve, load.capacity_wall_c(sums, capacity_w))
            limited = bool(np.any(values > curve))
        log.record(t, load.heat_w(sums, values), limited)
        return values[labels]

    return wall


def _crop(state: TissueState, context: StepContext, segments_mm: np.ndarray, duration_s: float, margin_mm):
    active = active_mask(state.grid, segments_mm)
    if margin_mm is None:
        library = context.library
        alpha = library.property_table("thermal_conductivity_w_m_k") / (
            library.property_table("density_kg_m3") * library.property_table("specific_heat_j_kg_k")
        )
        alpha[library.index_of("air")] = 0.0
        _, box = state.grid.crop_to_mask(active, margin_mm=ICE_REACH_MM)
        present = np.unique(state.tissue_index[box])
        diffusion_mm = 1e3 * CROP_DIFFUSION_LENGTHS * math.sqrt(float(np.nanmax(alpha[present])) * duration_s)
        margin_mm = max(CROP_MIN_MARGIN_MM, diffusion_mm) + ICE_REACH_MM
    return state.grid.crop_to_mask(active, margin_mm=margin_mm)


def _lethal_table(context: StepContext, protocol: CryoProtocol) -> tuple[np.ndarray, str]:
    """Per-tissue lethal temperature (°C) and how it was chosen."""
    library = context.library
    n = len(library.names)
    if protocol.lethal_temperature_c is not None:
        return np.full(n, protocol.lethal_temperature_c, np.float32), "protocol"
    criterion = context.plan.damage_model
    if criterion.startswith("cryo:"):
        try:
            value = float(criterion.partition(":")[2])
        except ValueError:
            raise PlanError(f"damage_model {criterion!r} has no temperature", "write e.g. cryo:-40") from None
        return np.full(n, value, np.float32), "plan"
    table = np.array(library.property_table("cryo_lethal_temperature_c"), dtype=np.float32)
    return np.where(np.isfinite(table), table, DEFAULT_LETHAL_C).astype(np.float32), "tissue"


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Place the probes, run the freeze–thaw phases, report the iceball and the lethal isotherms."""
    from insitu.physics.bioheat import BioheatSolver, RobinBoundary
    from insitu.physics.phase_change import freezing_data, tissue_freezing

    protocol = cryo_protocol(step)
    label = f"step {step.label or step.therapy}"
    device = cryo_device(step.device)
    parameters = device.parameters
    probes = _probes(step, protocol)
    for n, (tip, direction) in enumerate(probes):
        check_path(state, context, tip, direction, f"{label}, probe {n + 1}")
    library = context.library
    length_mm = float(parameters["active_length_mm"])
    ends = np.array([p for tip, d in probes for p in (tip, tip - d * length_mm)])
    total_s = protocol.duration_s
    sub, slices = _crop(state, context, ends, total_s, protocol.region_margin_mm)
    spacing_m = tuple(s * 1e-3 for s in sub.spacing_kji_mm)

    # the medium: 37 °C values (the linear k(T), c(T) coefficients were measured above 25 °C; freezing replaces them)
    medium = _medium(state, context, slices, spacing_m)
    medium.conductivity_coeff_1_k = 0.0
    medium.specific_heat_coeff_1_k = 0.0
    index = np.ascontiguousarray(state.tissue_index[slices])
    tip_tissues = [int(state.tissue_index[state.grid.world_to_kji(tip)]) for tip, _ in probes]
    reference = library.names[max(set(tip_tissues), key=tip_tissues.count)]
    freezing = tissue_freezing(library, index, reference)
    segments = probe_segments(device, probes, sub)
    held, faces, labels = probe_walls(segments, sub.shape, spacing_m)
    body_c = float(state.body_temperature_c)
    k = medium.conductivity_w_mk
    robin = [RobinBoundary(h_w_m2k=2.0 * float(np.min(k[k > 0], initial=0.5)) / max(spacing_m), ambient_c=body_c,
                           box_faces=("all",))]  # fmt: skip
    gas = index == library.index_of("air")
    if gas.any():
        robin.append(RobinBoundary(h_w_m2k=GAS_FILM_W_M2K, ambient_c=body_c, mask=gas))
    temperature = np.ascontiguousarray(state.temperature_c[slices], dtype=np.float32)
    start_wall = float(np.mean(temperature[held]))
    solver = BioheatSolver(
        medium, dirichlet_mask=held, dirichlet_temperature_c=start_wall, robin=robin,
        vessels=_vessel_boundary(state, context, slices), face_factors=faces, freezing=freezing,
    )  # fmt: skip

    # the probes' free neighbours: what a floating (passive-thaw) wall takes the mean of
    grown = held.copy()
    for axis in range(3):
        grown |= np.roll(held, 1, axis) | np.roll(held, -1, axis)
    touching = np.flatnonzero((grown & ~solver.held_mask).reshape(-1))
    touch_points = np.argwhere(grown & ~solver.held_mask) * np.asarray(spacing_m)
    touch_label = np.argmin(np.stack([_axis_distance(touch_points, s) for s in segments], axis=1), axis=1)
    count = np.bincount(touch_label, minlength=len(probes)).astype(np.float64)

    def floating(_t: float, T: np.ndarray) -> np.ndarray:
        sums = np.bincount(touch_label, weights=T.reshape(-1)[touching], minlength=len(probes))
        return (sums / np.maximum(count, 1.0))[labels]

    wall_min = float(parameters["wall_min_temperature_c"] if protocol.wall_temperature_c is None
                     else protocol.wall_temperature_c)  # fmt: skip
    tau_freeze = float(parameters["cooldown_time_constant_s"])
    thaw_c, tau_thaw = float(parameters["thaw_wall_temperature_c"]), float(parameters["thaw_time_constant_s"])
    capacity_w = cooling_capacity_w(device, protocol)
    load = WallLoad(solver, held, labels, freezing, len(probes))
    log = HeatLog(len(probes))
    held_flat = np.flatnonzero(held)
    per_probe = np.bincount(labels, minlength=len(probes)).astype(np.float64)
    data = freezing_data()
    report = context.progress
    elapsed, steps, dt_s = 0.0, 0, 0.0
    for phase in protocol.phases:
        trough = solver.minimum_temperature_c
        if data.stasis_after_thaw and trough is not None:  # tissue that froze stays unperfused
            medium.perfusion_1_s[trough <= data.stasis_below_c] = MIN_PERFUSION_STASIS
        begin = elapsed
        start = np.bincount(labels, weights=temperature.reshape(-1)[held_flat], minlength=len(probes))
        start = start / np.maximum(per_probe, 1.0)  # each probe's wall when the phase starts
        if phase.kind == "freeze":
            wall = freeze_wall(wall_min, tau_freeze, begin, start, capacity_w, load, labels, log)
        elif phase.thaw == "active":

            def wall(t: float, _T, begin=begin, start=start) -> np.ndarray:
                return (thaw_c + (start - thaw_c) * math.exp(-(t - begin) / tau_thaw))[labels]
        else:
            wall = floating
        run = solver.advance(
            temperature, phase.duration_s, start_time_s=begin, wall_temperature_c=wall,
            progress=lambda stage, f, m="", b=begin, d=phase.duration_s: report("thermal", (b + f * d) / total_s, m),
        )  # fmt: skip
        elapsed += phase.duration_s
        steps += run.steps
        dt_s = run.dt_s
        if phase.kind == "freeze":
            log.close(elapsed)
    minimum = np.array(solver.minimum_temperature_c, dtype=np.float32)
    return _close(state, context, step, protocol, device, probes, sub, slices, temperature, minimum, freezing,
                  {"time_steps": float(steps), "time_step_s": dt_s, "duration_s": elapsed,
                   "thermal_voxels": float(np.prod(sub.shape)), "probe_count": float(len(probes)),
                   "held_voxels": float(held.sum()), "wall_min_temperature_c": wall_min,
                   "final_wall_temperature_c": float(np.mean(temperature[held])),
                   **log.metrics(capacity_w)})  # fmt: skip


def _close(state, context, step, protocol, device, probes, sub, slices, temperature, minimum, freezing, extra):
    """The new state and the step result: isotherm volumes, mid-plane diameters and axes."""
    from insitu.physics.phase_change import freezing_data

    grid = state.grid
    new = state.copy()
    new.temperature_c[slices] = temperature
    new.frozen[slices] = temperature < freezing.liquidus_c
    stasis = minimum <= freezing_data().stasis_below_c
    new.perfusion_arterial_per_s[slices][stasis] = MIN_PERFUSION_STASIS
    new.perfusion_portal_per_s[slices][stasis] = MIN_PERFUSION_STASIS
    new.time_s = state.time_s + extra["duration_s"]
    running_min = new.damage.setdefault("min_temperature_c", np.full(grid.shape, np.nan, dtype=np.float32))
    running_min[slices] = np.fmin(running_min[slices], minimum)
    lethal_table, lethal_from = _lethal_table(context, protocol)
    lethal_c = lethal_table[state.tissue_index[slices]]
    zone = np.zeros(grid.shape, dtype=bool)
    zone[slices] = minimum <= lethal_c
    dead = new.damage.setdefault("cryo_dead", np.zeros(grid.shape, dtype=np.float32))
    dead[slices] = np.maximum(dead[slices], zone[slices].astype(np.float32))

    minimum_full = np.full(grid.shape, state.body_temperature_c, dtype=np.float32)
    minimum_full[slices] = minimum
    result = StepResult(index=0, therapy=step.therapy, label="")
    centre, normal = mid_plane(device, probes)
    iceball = np.zeros(grid.shape, bool)
    iceball[slices] = minimum <= ICEBALL_C
    result.fields = {"min_temperature_c": minimum_full, ABLATION_FIELD: zone, "iceball": iceball}
    metrics = _zone_metrics(zone, minimum, context, state)
    metrics.pop("peak_temperature_c", None)
    metrics["min_temperature_c"] = float(minimum.min())
    tissue_at = int(state.tissue_index[grid.world_to_kji(probes[0][0])])
    metrics["lethal_temperature_c"] = float(lethal_table[tissue_at])
    metrics["lethal_from_" + lethal_from] = 1.0
    isotherms = {"iceball": ICEBALL_C, "m20": PLANNING_ISOTHERMS_C[0], "m40": PLANNING_ISOTHERMS_C[1],
                 "lethal": float(lethal_table[tissue_at])}  # fmt: skip
    for name, threshold in isotherms.items():
        inside = minimum_full <= threshold if name != "lethal" else zone
        level = np.full(grid.shape, -1.0, np.float32)
        level[slices] = (lethal_c if name == "lethal" else threshold) - minimum
        axes = zone_axes_mm(inside, grid, normal, level=level)
        metrics[f"{name}_volume_ml"] = float(np.count_nonzero(inside)) * grid.voxel_volume_ml
        metrics[f"{name}_long_axis_mm"] = axes["long_axis_mm"]
        metrics[f"{name}_short_axis_mm"] = axes["short_axis_mm"]
        metrics[f"{name}_diameter_mm"] = plane_diameter_mm(minimum, sub, centre, normal, threshold)
    metrics["m40_inside_iceball_mm"] = 0.5 * (metrics["iceball_diameter_mm"] - metrics["m40_diameter_mm"])
    metrics.update(extra)
    result.metrics = metrics
    return new, result
