"""``laser``: interstitial laser ablation (ILP / LITT) — fibres' light diffusion driving the bioheat run, re-solved
as the coagulated zone grows.

A step places a catalog fibre (tip point + direction, or entry + target, in LPS mm; more parallel fibres by
``fibre_offsets_mm``) and gives a protocol (power per fibre, time, wavelength). Each fibre is a light source
(:mod:`insitu.physics.optics`): a diffusing tip emits uniformly along its last ``diffuser_length_mm``; a bare fibre is
an isotropic point one transport mean free path (1/μs') ahead of its end. The steady diffusion equation is solved on a
box of the thermal sub-grid reaching :data:`LIGHT_REACH_DEPTHS` penetration depths beyond the emitters, and Q = μa·φ
heats the Pennes run (:mod:`insitu.therapies.thermal`).

**Coagulation changes the optics.** Coagulated liver scatters several times more (it whitens): the penetration depth
falls from ≈ 3 to ≈ 2 mm (thermal.md §1.4). μa and μs' mix linearly with the coagulated fraction f = 1 − exp(−Ω), Ω
the Arrhenius integral of Jacques' optical-coagulation set (``liver_jacques``: the scattering rise itself), and the
light is re-solved every ``resolve_s``. The zone's edge moves ≲ 0.1 mm/s in these runs, so the default 10 s moves it
≲ 1 mm (half a penetration depth) between solves; each warm-started solve costs ~0.1 s. Insensitivity is shown in
tests/test_laser.py.

**Cooled applicators** (a catheter with circulating water around the fibre) are a Dirichlet wall of the thermal grid
at the coolant temperature over ``cooled_length_mm``, sub-voxel faces as in MWA and RFA. Light absorbed inside the
wall voxels goes to the coolant (``coolant_power_w``).

**Charring guard.** Above ≈ 150 °C tissue at the fibre carbonises (recalled: Niemz, Laser–Tissue Interactions); the
char absorbs at the fibre and can burn the diffuser, which the diffusion model does not hold. ``charring_guard``
``report`` (default) records when the tissue at the fibre first passes ``charring_temperature_c``; ``stop`` switches
the laser off then, as temperature-monitored systems (MR-thermometry safety limits) do; ``off`` does neither. The check
runs at each light re-solve.

Tissue water boils at 99–100 °C with its latent heat (thermal.md). Limits: no vapour transport, no tissue shrinkage,
no char optics; optical properties are working values (tissue/optical_properties.yaml states each one's status).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from insitu.devices.catalog import Device, device_for
from insitu.errors import PlanError, RegistryError
from insitu.physics.damage import FIELD_OMEGA_PREFIX, DamageAccumulator
from insitu.physics.optics import LightField, deposit_points, line_source_points, load_optical_table
from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.placement import active_mask, axis_from_placement, check_path, to_physics_frame
from insitu.therapies.thermal import (
    close_thermal_region,
    held_time_mean,
    open_thermal_region,
    thermal_crop,
    tissue_water_vaporization,
    wall_face_factors,
    zone_level,
)
from insitu.therapies.zone_geometry import zone_axes_mm

LASER_THERAPY = "laser"
DEFAULT_RESOLVE_S = 10.0
# carbonisation of soft tissue above ~150 °C (Niemz MH, Laser–Tissue Interactions, Springer; recalled, not re-read)
CHARRING_ONSET_C = 150.0
OPTICAL_COAGULATION_SET = "liver_jacques"  # physics/damage_models.yaml: end point = rise of the reduced scattering
# the light box reaches this many native penetration depths beyond the emitters: φ there is < e⁻⁶ of its near value
LIGHT_REACH_DEPTHS = 6.0
RADIUS_DIRECTIONS = 8  # rays across the fibre for the zone's growing short axis (4 diameters)
ProtocolGuard = Literal["stop", "report", "off"]
# Below these sizes kernels run on one thread: a light solve on a small box is thousands of tiny multigrid kernel
# launches, and on a shared machine each parallel launch waits for a second core (measured: a 2 mm test block took
# 5–25 s on two threads under load, 0.46 s on one); on large grids the parallel kernels win.
SERIAL_LIGHT_VOXELS = 1 << 18
SERIAL_STEP_VOXELS = 1 << 17


@contextmanager
def _threads(serial: bool) -> Iterator[None]:
    """Run numba kernels on one thread inside the block when ``serial`` (the previous count is restored)."""
    previous = numba.get_num_threads()
    if serial:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class LaserProtocol(BaseModel):
    """Laser settings and timing of one interstitial laser ablation."""

    model_config = ConfigDict(extra="forbid")
    power_w: float = Field(gt=0.0, le=200.0, description="laser power delivered to each fibre")
    duration_s: float = Field(gt=0.0, le=7200.0, description="laser on time")
    wavelength_nm: float | None = Field(default=None, description="laser wavelength (default: the device's)")
    cooldown_s: float = Field(default=0.0, ge=0.0, le=7200.0, description="laser off, tissue keeps evolving")
    resolve_s: float = Field(default=DEFAULT_RESOLVE_S, gt=0.0, le=600.0, description="light re-solve cadence")
    fibre_offsets_mm: list[tuple[float, float, float]] = Field(
        default_factory=list, description="further parallel fibres: tip offsets from the placement's tip (LPS mm)"
    )
    charring_guard: ProtocolGuard = Field(default="report", description="at charring_temperature_c: stop, report")
    charring_temperature_c: float = Field(default=CHARRING_ONSET_C, gt=45.0, le=500.0)
    coolant_temperature_c: float | None = Field(default=None, ge=-5.0, le=40.0, description="override the device's")
    box_boundary: Literal["matched", "partial_current", "zero_flux", "zero_fluence"] = Field(
        default="matched", description="light boundary at the box faces (physics/optics.py)"
    )
    region_margin_mm: float | None = Field(default=None, gt=0.0, le=500.0, description="simulated region")
    inflow_occlusion: Literal["none", "hepatic_artery", "portal_vein", "pringle"] = Field(default="none")


protocol_model = LaserProtocol


# ------------------------------------------------------------------------------------------------ checks
def laser_device(name: str | None) -> Device:
    """The laser fibre ``name`` from the catalog; one-line errors for unknown names and other therapies."""
    device = device_for(name, LASER_THERAPY, "laser", "laser fibre")
    if device.parameters.get("emission") not in ("diffusing", "bare"):
        raise RegistryError(f"laser device {name!r} has no emission kind", "give emission: diffusing or bare")
    return device


def parse_protocol(protocol: dict) -> LaserProtocol:
    """The protocol as a model; a one-line PlanError naming the first bad field otherwise."""
    try:
        return LaserProtocol.model_validate(protocol)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "protocol"
        raise PlanError(f"laser protocol field {where!r}: {err['msg']}", "fix the protocol value") from None


def wavelength_of(device: Device, protocol: LaserProtocol) -> int:
    """The wavelength the step runs at: the device's default or the protocol's, which must be the device's and have
    optical data."""
    wavelengths = [int(w) for w in device.parameters["wavelengths_nm"]]
    chosen = protocol.wavelength_nm if protocol.wavelength_nm is not None else device.parameters["wavelength_nm"]
    if not any(abs(float(chosen) - w) < 0.5 for w in wavelengths):
        raise PlanError(
            f"wavelength {chosen:g} nm is not one {device.name!r} runs at",
            f"give wavelength_nm one of {', '.join(str(w) for w in wavelengths)}",
        )
    return load_optical_table().check_wavelength(float(chosen))


def check_protocol(device: Device, protocol: LaserProtocol) -> None:
    """The laser can run this: a wavelength it emits with optical data, power within the fibre's rating."""
    wavelength_of(device, protocol)
    max_power = float(device.parameters["max_power_w"])
    if protocol.power_w > max_power:
        raise PlanError(
            f"power {protocol.power_w:g} W is above the rating of {device.name!r} ({max_power:g} W per fibre)",
            f"give power_w ≤ {max_power:g}, or a cooled applicator",
        )


def check_step(step: Step) -> None:
    """Plan-time checks: a known fibre, a wavelength it runs at, a power within its rating."""
    check_protocol(laser_device(step.device), parse_protocol(step.protocol))


# ------------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Emitter:
    """One fibre's light source in LPS mm: a segment (diffusing tip) or a point (start = end, bare fibre)."""

    tip_mm: np.ndarray
    start_mm: np.ndarray
    end_mm: np.ndarray


def emitters(device: Device, tips_mm: list[np.ndarray], direction: np.ndarray, musp_per_mm: float) -> list[Emitter]:
    """Each fibre's emitting part: the last ``diffuser_length_mm`` behind the tip, or a point 1/μs' ahead of it."""
    out = []
    for tip in tips_mm:
        if device.parameters["emission"] == "diffusing":
            length = float(device.parameters["diffuser_length_mm"])
            out.append(Emitter(tip, tip - length * direction, tip.copy()))
        else:
            point = tip + direction / musp_per_mm
            out.append(Emitter(tip, point, point))
    return out


def _box_around(sub_shape, points_m: np.ndarray, spacing_m, reach_m: float) -> tuple[slice, slice, slice]:
    h = np.asarray(spacing_m)
    lo = np.floor((points_m.min(axis=0) - reach_m) / h).astype(int)
    hi = np.ceil((points_m.max(axis=0) + reach_m) / h).astype(int) + 1
    lo = np.clip(lo, 0, np.asarray(sub_shape))
    hi = np.clip(hi, 0, np.asarray(sub_shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class LaserLog:
    """Per light solve: time, laser on, powers (W), tissue temperature at the fibre, the growing zone."""

    time_s: list[float] = field(default_factory=list)
    laser_on: list[float] = field(default_factory=list)
    emitted_w: list[float] = field(default_factory=list)
    tissue_w: list[float] = field(default_factory=list)
    coolant_w: list[float] = field(default_factory=list)
    escaped_w: list[float] = field(default_factory=list)
    fibre_temperature_c: list[float] = field(default_factory=list)
    zone_diameter_mm: list[float] = field(default_factory=list)
    margin_temperature_c: list[float] = field(default_factory=list)
    coagulated_ml: list[float] = field(default_factory=list)
    solves: int = 0
    charring_time_s: float = math.nan
    stopped_at_s: float = math.nan

    def curves(self) -> dict[str, list[float]]:
        return {
            "time_s": self.time_s,
            "laser_on": self.laser_on,
            "emitted_power_w": self.emitted_w,
            "tissue_power_w": self.tissue_w,
            "fibre_temperature_c": self.fibre_temperature_c,
            "zone_diameter_mm": self.zone_diameter_mm,
            "margin_temperature_c": self.margin_temperature_c,
            "optically_coagulated_ml": self.coagulated_ml,
        }

    def held_mean(self, values: list[float], duration_s: float) -> float:
        """Time mean over the step of a value held constant between solves."""
        return held_time_mean(self.time_s, values, duration_s)


class _ZoneProbe:
    """The zone's short axis and margin temperature while it grows: rays across the first fibre's emitting midpoint,
    the outermost crossing of ln Ω = 0 (the plan's Arrhenius criterion) on each, by linear interpolation."""

    def __init__(self, mid_m: np.ndarray, axis: np.ndarray, spacing_m, shape, reach_m: float, criterion: str) -> None:
        helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
        u = np.cross(axis, helper)
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        angles = 2.0 * np.pi * np.arange(RADIUS_DIRECTIONS) / RADIUS_DIRECTIONS
        self.step_m = 0.25 * min(spacing_m)
        self.radii_m = np.arange(0.0, reach_m, self.step_m)
        dirs = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v
        points = mid_m + self.radii_m[None, :, None] * dirs[:, None, :]  # (rays, samples, 3)
        index = points / np.asarray(spacing_m)
        inside = np.all((index >= 0) & (index <= np.asarray(shape) - 1), axis=-1)
        self.usable = inside.all(axis=0)
        self.coords = index.reshape(-1, 3).T
        kind, _, key = criterion.partition(":")
        self.field = FIELD_OMEGA_PREFIX + key if kind == "arrhenius" and key else None

    def measure(self, damage: DamageAccumulator, temperature: np.ndarray) -> tuple[float, float]:
        """(short-axis diameter mm, mean temperature at the zone's edge °C); NaN without an Arrhenius criterion."""
        from scipy.ndimage import map_coordinates

        if self.field is None or self.field not in damage.field_names():
            return math.nan, math.nan
        omega = damage.state(self.field)
        level = np.log(np.maximum(map_coordinates(omega, self.coords, order=1), 1e-300))
        temps = map_coordinates(temperature, self.coords, order=1)
        level = level.reshape(RADIUS_DIRECTIONS, -1)[:, self.usable]
        temps = temps.reshape(RADIUS_DIRECTIONS, -1)[:, self.usable]
        radii, edge_t = [], []
        for lv, tv in zip(level, temps, strict=True):
            cross = np.flatnonzero((lv[:-1] >= 0) & (lv[1:] < 0))
            if cross.size == 0:
                radii.append(0.0)
                continue
            i = int(cross[-1])
            t = lv[i] / (lv[i] - lv[i + 1])
            radii.append((i + t) * self.step_m)
            edge_t.append(tv[i] + t * (tv[i + 1] - tv[i]))
        half = RADIUS_DIRECTIONS // 2
        diameters = [radii[n] + radii[n + half] for n in range(half)]
        return 1e3 * float(np.mean(diameters)), float(np.mean(edge_t)) if edge_t else math.nan


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Place the fibres, solve their light, run the heating with re-solves as the tissue coagulates, report the zone."""
    protocol = parse_protocol(step.protocol)
    label = f"step {step.label or step.therapy}"
    device = laser_device(step.device)
    check_protocol(device, protocol)
    wavelength = wavelength_of(device, protocol)
    parameters = device.parameters
    cooled = bool(parameters.get("cooled", False))
    table = load_optical_table()
    library = context.library
    optics = table.tables(library.names, wavelength)

    tip_mm, direction = axis_from_placement(step)
    tips_mm = [tip_mm] + [tip_mm + np.asarray(offset, float) for offset in protocol.fibre_offsets_mm]
    grid = state.grid
    for n, tip in enumerate(tips_mm):
        check_path(state, context, tip, direction, f"{label} fibre {n + 1}")
        k, j, i = grid.world_to_kji(tip)
        if optics["exterior"][int(state.tissue_index[k, j, i])]:
            raise PlanError(
                f"{label}: fibre {n + 1} tip lies in {library.names[state.tissue_index[k, j, i]]}",
                "place the fibre in soft tissue",
            )
    k, j, i = grid.world_to_kji(tip_mm)
    tip_tissue = int(state.tissue_index[k, j, i])
    musp_tip_per_mm = float(optics["musp_native"][tip_tissue]) * 1e-3
    sources = emitters(device, tips_mm, direction, musp_tip_per_mm)

    # the light's reach: native penetration depths of the tissues present (the largest), beyond the emitters
    mua_n, musp_n = optics["mua_native"], optics["musp_native"]
    soft = ~optics["exterior"]
    depth_mm = 1e3 / np.sqrt(3.0 * mua_n[soft] * (mua_n[soft] + musp_n[soft]))
    ends = np.vstack([np.vstack([e.start_mm, e.end_mm]) for e in sources])
    present = np.unique(state.tissue_index[active_mask(grid, np.vstack([ends - 5.0, ends + 5.0]))])
    present_soft = [t for t in present if soft[t]]
    reach_mm = LIGHT_REACH_DEPTHS * float(
        np.max(1e3 / np.sqrt(3.0 * mua_n[present_soft] * (mua_n[present_soft] + musp_n[present_soft])))
        if present_soft
        else depth_mm.max()
    )
    catheter_r_mm = 0.5 * float(parameters.get("catheter_outer_diameter_mm", parameters.get("outer_diameter_mm", 1.0)))
    cooled_len_mm = float(parameters.get("cooled_length_mm", 100.0))
    shafts = (
        np.vstack([np.vstack([e.tip_mm, e.tip_mm - cooled_len_mm * direction]) for e in sources]) if cooled else ends
    )
    active = active_mask(
        grid, np.vstack([ends - reach_mm, ends + reach_mm, shafts - catheter_r_mm, shafts + catheter_r_mm])
    )
    total_s = protocol.duration_s + protocol.cooldown_s
    sub, slices = thermal_crop(state, context, active, total_s, protocol.region_margin_mm)
    spacing_m = tuple(s * 1e-3 for s in sub.spacing_kji_mm)
    h_min_m = min(spacing_m)

    to_m = [(to_physics_frame(sub, e.start_mm), to_physics_frame(sub, e.end_mm)) for e in sources]
    ahead = to_physics_frame(sub, tip_mm + direction) - to_physics_frame(sub, tip_mm)
    insert_dir = ahead / np.linalg.norm(ahead)

    # the cooled catheter: a Dirichlet wall (sub-voxel faces), as MWA's cooled shaft
    held = None
    faces = None
    coolant_c = protocol.coolant_temperature_c
    if coolant_c is None:
        coolant_c = float(parameters.get("coolant_temperature_c", state.body_temperature_c))
    if cooled:
        from insitu.physics.applicator import MetalSegment
        from insitu.physics.electrode_raster import rasterize_metal

        radius_m = catheter_r_mm * 1e-3
        walls = []
        for e in sources:
            tip_m = to_physics_frame(sub, e.tip_mm)
            distal = tip_m - insert_dir * radius_m  # the catheter's hemispherical end reaches the fibre tip
            walls.append(
                MetalSegment(tuple(distal), tuple(tip_m - insert_dir * cooled_len_mm * 1e-3), radius_m, cooled=True)
            )
        raster = rasterize_metal(walls, sub.shape, spacing_m)
        held = raster.cooled & raster.inside
        if not held.any():
            raise PlanError(f"{label}: the cooled catheter covers no voxel centre", "use a finer grid (≤ 1 mm)")
        faces = wall_face_factors(held, raster.face_fraction)
    index = state.tissue_index[slices]
    region = open_thermal_region(
        state,
        context,
        sub,
        slices,
        total_s,
        dirichlet_mask=held,
        dirichlet_temperature_c=coolant_c if cooled else None,
        face_factors=faces,
        phase_change=tissue_water_vaporization(context, index),
        occlusion=protocol.inflow_occlusion,
    )

    # the light box and its fields
    emit_points = np.vstack([np.vstack(pair) for pair in to_m])
    box = _box_around(sub.shape, emit_points, spacing_m, reach_mm * 1e-3)
    box_origin = np.array([s.start for s in box]) * np.asarray(spacing_m)
    box_shape = tuple(s.stop - s.start for s in box)
    index_box = np.ascontiguousarray(index[box])
    exterior = optics["exterior"][index_box]
    unit = np.zeros(box_shape, np.float32)  # emitted W/m³ per W of each fibre's power
    for start_m, end_m in to_m:
        if np.allclose(start_m, end_m):
            points, powers = np.atleast_2d(start_m - box_origin), np.ones(1)
        else:
            points, powers = line_source_points(start_m - box_origin, end_m - box_origin, 1.0, spacing_m)
        try:
            unit += deposit_points(box_shape, spacing_m, points, powers)
        except Exception:
            raise PlanError(f"{label}: a fibre's emitting part leaves the simulated region", "move it inward") from None
    if np.any(unit[exterior] > 0):
        raise PlanError(f"{label}: a fibre's emitting part lies partly outside the body (air)", "insert it deeper")
    light = LightField(
        box_shape,
        spacing_m,
        exterior=exterior,
        box_boundary=protocol.box_boundary,
        refractive_index=table.tissue_refractive_index,
    )
    tables = {key: np.ascontiguousarray(optics[key][index_box]) for key in ("mua_native", "musp_native")}
    tables["dmua"] = optics["mua_coag"][index_box] - tables["mua_native"]
    tables["dmusp"] = optics["musp_coag"][index_box] - tables["musp_native"]
    held_box = np.zeros(box_shape, bool) if held is None else held[box]

    # the optical coagulation: Jacques' liver set, the plan's accumulator when it holds it, else an own one
    optical_field = FIELD_OMEGA_PREFIX + OPTICAL_COAGULATION_SET
    shared = optical_field in region.damage.field_names()
    coag_acc = None
    if not shared:
        coag_acc = DamageAccumulator(box_shape, models=(f"arrhenius:{OPTICAL_COAGULATION_SET}",))
        if optical_field in state.damage:
            coag_acc.load({optical_field: state.damage[optical_field][slices][box]})
        coag_acc.observe(np.ascontiguousarray(region.temperature_c[box]))

    # tissue at the fibre: free voxels within a voxel of the catheter (or fibre) surface along the emitting parts
    centres = (
        np.stack(
            np.meshgrid(*(np.arange(n) * h for n, h in zip(box_shape, spacing_m, strict=True)), indexing="ij"), axis=-1
        )
        + box_origin
    )
    near = np.zeros(box_shape, bool)
    for start_m, end_m in to_m:
        seg = end_m - start_m
        length2 = float(seg @ seg)
        t = np.clip(((centres - start_m) @ seg) / length2, 0.0, 1.0) if length2 > 0 else np.zeros(box_shape)
        dist = np.linalg.norm(centres - (start_m + t[..., None] * seg), axis=-1)
        near |= dist <= catheter_r_mm * 1e-3 + h_min_m
    near &= ~held_box & ~exterior
    del centres

    criterion = context.plan.damage_model
    mid_m = 0.5 * (to_m[0][0] + to_m[0][1])
    probe = _ZoneProbe(mid_m, insert_dir, spacing_m, sub.shape, reach_mm * 1e-3, criterion)
    voxel_m3 = float(np.prod(spacing_m))
    voxel_ml = voxel_m3 * 1e6
    q = np.zeros(sub.shape, dtype=np.float32)
    q_box = q[box]
    n_fibres = len(sources)
    log = LaserLog()
    clock = {"last": 0.0, "on": True}

    def source(t_s: float, temperature: np.ndarray) -> np.ndarray:
        t_box = np.ascontiguousarray(temperature[box])
        if coag_acc is not None:
            if t_s > clock["last"]:
                coag_acc.update(t_box, t_s - clock["last"])
            omega = coag_acc.state(optical_field)
        else:
            omega = region.damage.state(optical_field)[box]
        clock["last"] = t_s
        frac = -np.expm1(-np.minimum(omega, 50.0))
        fibre_t = float(t_box[near].max()) if near.any() else float(t_box.max())
        if protocol.charring_guard != "off" and fibre_t >= protocol.charring_temperature_c:
            if math.isnan(log.charring_time_s):
                log.charring_time_s = t_s
            if protocol.charring_guard == "stop" and clock["on"]:
                clock["on"] = False
                log.stopped_at_s = t_s
        diameter, margin = probe.measure(region.damage, temperature)
        log.time_s.append(t_s)
        log.fibre_temperature_c.append(fibre_t)
        log.zone_diameter_mm.append(diameter)
        log.margin_temperature_c.append(margin)
        log.coagulated_ml.append(float(np.count_nonzero(frac >= 0.5)) * voxel_ml)
        log.laser_on.append(1.0 if clock["on"] else 0.0)
        if not clock["on"]:
            q_box[...] = 0.0
            for values in (log.emitted_w, log.tissue_w, log.coolant_w, log.escaped_w):
                values.append(0.0)
            return q
        mua = tables["mua_native"] + frac * tables["dmua"]
        musp = tables["musp_native"] + frac * tables["dmusp"]
        with _threads(int(np.prod(box_shape)) < SERIAL_LIGHT_VOXELS):
            solution = light.solve(mua, musp, unit * protocol.power_w)
        absorbed = solution.absorbed_w_m3
        q_box[...] = np.where(held_box, 0.0, absorbed)
        coolant = float(absorbed[held_box].sum(dtype=np.float64)) * voxel_m3
        log.emitted_w.append(solution.emitted_w)
        log.tissue_w.append(solution.absorbed_w - coolant)
        log.coolant_w.append(coolant)
        log.escaped_w.append(solution.escaped_w)
        log.solves += 1
        return q

    with _threads(int(np.prod(sub.shape)) < SERIAL_STEP_VOXELS):
        region.advance(protocol.duration_s, source, source_interval_s=protocol.resolve_s, source_region=box)
        deposited_j = region.source_energy_j
        region.advance(protocol.cooldown_s)
    new_state, result = close_thermal_region(region, step.therapy)
    if coag_acc is not None and optical_field not in new_state.damage:
        new_state.damage[optical_field] = np.zeros(grid.shape, np.float32)
        sub_view = new_state.damage[optical_field][slices]
        sub_view[box] = coag_acc.fields()[optical_field]

    level = zone_level(region)
    result.metrics.update(zone_axes_mm(result.fields["ablation_zone"], grid, direction, level=level))
    duration = protocol.duration_s
    fallback = [library.names[t] for t in np.unique(index_box) if optics["fallback"][t]]
    result.metrics.update(
        {
            "power_per_fibre_w": protocol.power_w,
            "fibres": float(n_fibres),
            "wavelength_nm": float(wavelength),
            "laser_energy_j": protocol.power_w
            * n_fibres
            * (duration if math.isnan(log.stopped_at_s) else log.stopped_at_s),
            "absorbed_power_w": log.held_mean(log.tissue_w, duration),
            "coolant_power_w": log.held_mean(log.coolant_w, duration),
            "escaped_power_w": log.held_mean(log.escaped_w, duration),
            "deposited_energy_j": deposited_j,
            "peak_fibre_temperature_c": float(max(log.fibre_temperature_c)),
            "charring_time_s": log.charring_time_s,
            "laser_stopped_at_s": log.stopped_at_s,
            "light_solves": float(log.solves),
            "thermal_voxels": float(np.prod(sub.shape)),
            "light_voxels": float(np.prod(box_shape)),
            "cooled": float(cooled),
            "coolant_temperature_c": float(coolant_c) if cooled else math.nan,
            "optical_fallback_tissues": float(len(fallback)),
        }
    )
    result.curves = log.curves()
    return new_state, result
