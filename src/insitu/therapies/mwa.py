"""``mwa``: microwave ablation — a coaxial antenna's full-wave SAR driving the bioheat run, re-solved as the tissue
heats and dries.

A step places a catalog antenna (tip point + direction, or entry + target, in LPS mm) and gives a protocol (generator
power, time). The antenna's field comes from the axisymmetric full-wave model (:mod:`insitu.physics.microwave`) in
the tissue at the tip: the generator's forward power, less the cable loss (``cable_loss_db``, catalog), reaches the
antenna's feed; the antenna takes P_feed·(1 − |S11|²) and the tissue absorbs most of it (the rest heats the coolant or
leaves the model's tissue cylinder). The SAR on the model's (r, z) grid is mapped onto the thermal sub-grid along the
antenna's axis (cell-averaged near the axis, where it is steep, bilinear elsewhere) and Q = SAR·ρ (W/m³) heats the
Pennes run.

**Re-solving as the tissue heats.** Every ``sar_update_s`` the temperature is sampled back onto the model's (r, z)
grid — the azimuthal mean of trilinear samples on :data:`AZIMUTHS` half-planes through the axis (the heating is
axisymmetric about the antenna; the mean, unlike one half-plane, also averages a vessel or a second tissue beside
the antenna into the one value an axisymmetric model can hold) — and the field is re-solved with ε_r(T), σ(T) (Ji &
Brace 2011 sigmoid, :mod:`insitu.physics.dielectric`). The default :data:`DEFAULT_SAR_UPDATE_S` is justified below and
its insensitivity shown in tests/test_mwa.py.

**Cooling.** A water- or gas-cooled shaft is a Dirichlet wall of the thermal grid at the coolant temperature over the
catalog's ``cooled_length_mm`` (the catheter's outer radius, sub-voxel faces as RFA's cooled electrode, never voxels
of metal: they would cut the explicit step twentyfold). Water boiling at 99–100 °C takes its latent heat as in RFA
(``thermal.tissue_water_vaporization``).

Limits (documented, not hidden): the EM model is homogeneous — the tissue at the tip everywhere; the thermal model
sees every tissue and vessel. Tissue shrinkage and the vapour's own transport are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from insitu.devices.catalog import Device, device_for
from insitu.errors import InsituError, PlanError, RegistryError
from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.placement import active_mask, axis_from_placement, check_path, mark_line_metal, to_physics_frame
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

MW_THERAPY = "mwa"
# Re-solve cadence of the MW field. The dielectric changes where the tissue passes ~60–100 °C (Ji & Brace sigmoid);
# at 2.45 GHz, 100 W that front moves ~0.1 mm/s after the first minute (zone radius ≈ 18 mm at 10 min), so in 30 s
# it moves ~3 mm: a few (r, z) cells, a third of the field's 1/e length in liver (≈ 10 mm for power). Solves cost
# ~20 ms, so the cadence is set by accuracy: 10 s and 60 s give the same zone within a voxel (tests/test_mwa.py).
DEFAULT_SAR_UPDATE_S = 30.0
AZIMUTHS = 8  # half-planes averaged when sampling the 3-D temperature back onto the (r, z) grid
SUPERSAMPLE = 4  # sub-samples per axis for the voxels near the axis, where the SAR varies within a voxel
SUPERSAMPLE_RADIUS_VOXELS = 4.0  # … within this many voxel spacings of the axis (beyond: the SAR is smooth)
ACTIVE_SAR_FRACTION = 1e-3  # the crop's active box holds the tissue where SAR ≥ this fraction of its peak
# The EM tissue cylinder (radius, above, below the tip), larger than microwave.py's 30/40/20 mm defaults: at
# 2.45 GHz the field's power 1/e length in liver is ≈ 10 mm (Gabriel values, derived), so 40 mm leaves e⁻⁴ of the
# near-field power density at the side wall; doubled below 1.5 GHz (915 MHz penetrates twice as far)
EM_RADIUS_MM, EM_ABOVE_MM, EM_BELOW_MM = 40.0, 50.0, 25.0


class MWAProtocol(BaseModel):
    """Generator settings and timing of one microwave ablation."""

    model_config = ConfigDict(extra="forbid")
    power_w: float = Field(gt=0.0, le=1000.0, description="generator forward power (per antenna)")
    duration_s: float = Field(gt=0.0, le=7200.0, description="MW on time")
    cooldown_s: float = Field(default=0.0, ge=0.0, le=7200.0, description="MW off, tissue keeps evolving")
    frequency_hz: float | None = Field(default=None, description="the generator frequency; must be the device's")
    sar_update_s: float = Field(default=DEFAULT_SAR_UPDATE_S, gt=0.0, le=600.0, description="field re-solve cadence")
    coolant_temperature_c: float | None = Field(
        default=None, ge=-40.0, le=40.0, description="override the device's coolant temperature"
    )
    cooling: bool | None = Field(default=None, description="run the antenna cooled or not (default: the device's)")
    region_margin_mm: float | None = Field(
        default=None, gt=0.0, le=500.0, description="simulated region around the antenna (default: 4 diffusion lengths)"
    )
    inflow_occlusion: Literal["none", "hepatic_artery", "portal_vein", "pringle"] = Field(
        default="none", description="hepatic inflow stopped during the ablation (therapies/occlusion.py)"
    )


protocol_model = MWAProtocol


# ------------------------------------------------------------------------------------------------ devices
def _builders() -> dict:
    from insitu.physics.microwave import (
        choked_cooled_slot_antenna,
        dipole_915mhz_antenna,
        emprint_like_antenna,
        neuwave_like_antenna,
    )

    return {
        "emprint_like_antenna": emprint_like_antenna,
        "choked_cooled_slot_antenna": choked_cooled_slot_antenna,
        "dipole_915mhz_antenna": dipole_915mhz_antenna,
        "neuwave_like_antenna": neuwave_like_antenna,
    }


def mw_device(name: str | None) -> Device:
    """The MW antenna called ``name`` from the catalog; one-line errors for unknown names and other therapies."""
    device = device_for(name, MW_THERAPY, "MW", "microwave antenna")
    builder = device.parameters.get("antenna_builder")
    if builder not in _builders():
        raise RegistryError(
            f"MW device {name!r} names antenna builder {builder!r}", f"use one of {', '.join(sorted(_builders()))}"
        )
    return device


def _cooled(device: Device, protocol: MWAProtocol) -> bool:
    return bool(device.parameters.get("cooled", False)) if protocol.cooling is None else bool(protocol.cooling)


def mw_antenna(device: Device, protocol: MWAProtocol):
    """The antenna the step runs (the device's builder); uncooled when the protocol switches the cooling off."""
    antenna = _builders()[device.parameters["antenna_builder"]]()
    if antenna.cooled and not _cooled(device, protocol):
        antenna = replace(antenna, cooled=False, name=f"{antenna.name} (uncooled)")
    return antenna


def check_protocol(device: Device, protocol: MWAProtocol) -> None:
    """The generator can run this: its frequency, power within its rating (one-line PlanErrors)."""
    parameters = device.parameters
    frequency = float(parameters["frequency_hz"])
    if protocol.frequency_hz is not None and abs(protocol.frequency_hz / frequency - 1.0) > 1e-3:
        raise PlanError(
            f"frequency {protocol.frequency_hz:g} Hz is not one {device.name!r} runs at ({frequency:g} Hz)",
            f"omit frequency_hz or give {frequency:g}; pick a {protocol.frequency_hz / 1e9:g} GHz antenna otherwise",
        )
    max_power = float(parameters["max_power_w"])
    if protocol.power_w > max_power:
        raise PlanError(
            f"power {protocol.power_w:g} W is above the generator's limit for {device.name!r} ({max_power:g} W)",
            f"give power_w ≤ {max_power:g}",
        )


def check_step(step: Step) -> None:
    """Plan-time checks: a known MW antenna, a frequency it runs at and a power its generator can give."""
    device = mw_device(step.device)
    check_protocol(device, MWAProtocol.model_validate(step.protocol))


# ------------------------------------------------------------------------------------------------ geometry
def _frame(r_feed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``r_feed`` (and to each other)."""
    helper = np.eye(3)[int(np.argmin(np.abs(r_feed)))]
    u = np.cross(r_feed, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(r_feed, u)


def _bilinear(rc: np.ndarray, zc: np.ndarray, r: np.ndarray, z: np.ndarray):
    """Cell indices (flat, 4 per sample) and weights of the bilinear interpolation used by ``sar_to_volume``:
    r below the first centre takes the first column, points outside the cylinder get weight 0."""
    inside = (r <= rc[-1]) & (z >= zc[0]) & (z <= zc[-1])
    rr = np.clip(np.maximum(r, rc[0]), rc[0], rc[-1])
    zz = np.clip(z, zc[0], zc[-1])
    i = np.clip(np.searchsorted(rc, rr) - 1, 0, rc.size - 2)
    k = np.clip(np.searchsorted(zc, zz) - 1, 0, zc.size - 2)
    tr = (rr - rc[i]) / (rc[i + 1] - rc[i])
    tz = (zz - zc[k]) / (zc[k + 1] - zc[k])
    nz = zc.size
    index = np.stack([i * nz + k, (i + 1) * nz + k, i * nz + k + 1, (i + 1) * nz + k + 1], axis=1)
    weight = np.stack([(1 - tr) * (1 - tz), tr * (1 - tz), (1 - tr) * tz, tr * tz], axis=1) * inside[:, None]
    return index, weight


def sar_mapping(box_shape, box_origin_m, spacing_m, tip_m, feed_dir, rc: np.ndarray, zc: np.ndarray) -> sp.csr_matrix:
    """Sparse (voxels × (r, z) cells) matrix turning an (r, z) cell field into voxel values on a box of the
    thermal grid: the mean of SUPERSAMPLE³ bilinear samples per voxel within SUPERSAMPLE_RADIUS_VOXELS of the axis
    (the SAR is steep there: ~1/r² times the decay), one sample at the centre elsewhere."""
    h = np.asarray(spacing_m, dtype=float)
    grids = np.indices(box_shape).reshape(3, -1).T.astype(float)
    centres = np.asarray(box_origin_m) + grids * h
    d = centres - tip_m
    z = d @ feed_dir
    r = np.linalg.norm(d - z[:, None] * feed_dir, axis=1)
    n = centres.shape[0]
    near = np.flatnonzero(r < SUPERSAMPLE_RADIUS_VOXELS * h.max())
    far = np.setdiff1d(np.arange(n), near, assume_unique=True)
    rows, cols, vals = [], [], []
    index, weight = _bilinear(rc, zc, r[far], z[far])
    rows.append(np.repeat(far, 4))
    cols.append(index.ravel())
    vals.append(weight.ravel())
    offsets = ((np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5)[:, None] * h[None, :]
    sub = np.stack(np.meshgrid(offsets[:, 0], offsets[:, 1], offsets[:, 2], indexing="ij"), axis=-1).reshape(-1, 3)
    points = (centres[near][:, None, :] + sub[None, :, :]).reshape(-1, 3) - tip_m
    zs = points @ feed_dir
    rs = np.linalg.norm(points - zs[:, None] * feed_dir, axis=1)
    index, weight = _bilinear(rc, zc, rs, zs)
    rows.append(np.repeat(np.repeat(near, sub.shape[0]), 4))
    cols.append(index.ravel())
    vals.append(weight.ravel() / sub.shape[0])
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, rc.size * zc.size)
    )
    matrix.sum_duplicates()
    return matrix


def _box_around_cylinder(shape, spacing_m, tip_m, feed_dir, radius_m, z_lo_m, z_hi_m) -> tuple[slice, slice, slice]:
    """Slices of the sub-grid covering the cylinder r ≤ radius, z_lo ≤ z ≤ z_hi about the axis (clipped)."""
    ends = np.array([tip_m + z_lo_m * feed_dir, tip_m + z_hi_m * feed_dir])
    h = np.asarray(spacing_m)
    lo = np.floor((ends.min(axis=0) - radius_m) / h).astype(int)
    hi = np.ceil((ends.max(axis=0) + radius_m) / h).astype(int) + 1
    lo = np.clip(lo, 0, np.asarray(shape))
    hi = np.clip(hi, 0, np.asarray(shape))
    if np.any(hi <= lo):
        raise PlanError("the antenna's field lies outside the simulated region", "check the placement")
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class MWLog:
    """Per re-solve: time, S11, powers (W) at the antenna's feed and into the tissue."""

    time_s: list[float] = field(default_factory=list)
    s11_db: list[float] = field(default_factory=list)
    delivered_w: list[float] = field(default_factory=list)
    reflected_w: list[float] = field(default_factory=list)
    tissue_w: list[float] = field(default_factory=list)
    coolant_w: list[float] = field(default_factory=list)
    mapped_w: list[float] = field(default_factory=list)
    wall_w: list[float] = field(default_factory=list)  # SAR mapped onto the held wall voxels (to the coolant)
    solves: int = 0

    def curves(self) -> dict[str, list[float]]:
        return {
            "time_s": self.time_s,
            "s11_db": self.s11_db,
            "delivered_power_w": self.delivered_w,
            "reflected_power_w": self.reflected_w,
            "tissue_power_w": self.tissue_w,
        }

    def held_mean(self, values: list[float], duration_s: float) -> float:
        """Time mean over the step of a value held constant between solves."""
        return held_time_mean(self.time_s, values, duration_s)


def _mw_tissue(state: TissueState, context: StepContext, tip_mm: np.ndarray) -> str:
    k, j, i = state.grid.world_to_kji(tip_mm)
    return context.library.names[int(state.tissue_index[k, j, i])]


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Place the antenna, solve its field in the tissue, run the heating with re-solves, report the zone."""
    from scipy.ndimage import map_coordinates

    from insitu.physics.applicator import MetalSegment
    from insitu.physics.electrode_raster import rasterize_metal
    from insitu.physics.microwave import MicrowaveModel

    protocol = MWAProtocol.model_validate(step.protocol)
    label = f"step {step.label or step.therapy}"
    device = mw_device(step.device)
    check_protocol(device, protocol)
    parameters = device.parameters
    antenna = mw_antenna(device, protocol)
    cooled = _cooled(device, protocol)
    tip_mm, direction_mm = axis_from_placement(step)
    check_path(state, context, tip_mm, direction_mm, label)

    # the EM model in the tissue at the tip (homogeneous), with the state's temperature there
    tissue = _mw_tissue(state, context, tip_mm)
    scale = 2.0 if antenna.frequency_hz < 1.5e9 else 1.0
    try:
        model = MicrowaveModel(
            antenna,
            tissue=tissue,
            tissue_radius_m=EM_RADIUS_MM * scale * 1e-3,
            above_tip_m=EM_ABOVE_MM * scale * 1e-3,
            below_tip_m=EM_BELOW_MM * scale * 1e-3,
        )
    except InsituError as exc:
        raise PlanError(
            f"{label}: the antenna's tip lies in {tissue!r}: {exc.args[0]}", "place it in soft tissue"
        ) from None
    cable_db = float(parameters.get("cable_loss_db", 0.0))
    feed_w = protocol.power_w * 10.0 ** (-cable_db / 10.0)
    rc, zc = model.solver.r_centres_m, model.solver.z_centres_m
    tissue_cells = model.tissue_mask & model.solver.physical
    tip_c = float(state.temperature_c[state.grid.world_to_kji(tip_mm)])
    first = model.with_temperature(np.full(model.shape, tip_c))
    sar0 = np.where(tissue_cells, first.solve(feed_w).sar_w_kg, 0.0)

    # the crop: where the SAR is not negligible, plus the diffusion lengths of the whole step
    significant = np.argwhere(sar0 >= ACTIVE_SAR_FRACTION * sar0.max())
    reach_mm = float(rc[significant[:, 0].max()]) * 1e3
    z_lo_mm, z_hi_mm = float(zc[significant[:, 1].min()]) * 1e3, float(zc[significant[:, 1].max()]) * 1e3
    ends = np.array([tip_mm - z_lo_mm * direction_mm, tip_mm - z_hi_mm * direction_mm])  # feed = −insertion
    active = active_mask(state.grid, np.vstack([ends - reach_mm, ends + reach_mm]))
    total_s = protocol.duration_s + protocol.cooldown_s
    sub, slices = thermal_crop(state, context, active, total_s, protocol.region_margin_mm)

    # the antenna in the sub-grid's physics frame (z, y, x metres)
    tip_m = to_physics_frame(sub, tip_mm)
    ahead_m = to_physics_frame(sub, tip_mm + direction_mm)
    insert_dir = (ahead_m - tip_m) / np.linalg.norm(ahead_m - tip_m)
    feed_dir = -insert_dir
    spacing_m = tuple(s * 1e-3 for s in sub.spacing_kji_mm)

    # the cooled shaft: a Dirichlet wall at the coolant temperature (catheter radius, cooled length)
    coolant_c = protocol.coolant_temperature_c
    if coolant_c is None:
        coolant_c = float(parameters.get("coolant_temperature_c", state.body_temperature_c))
    held = None
    faces = None
    if cooled:
        radius = float(antenna.catheter_outer_radius_m or antenna.shield_radius_m)
        cooled_length_m = float(parameters.get("cooled_length_mm", 150.0)) * 1e-3
        distal = tip_m + insert_dir * max(antenna.catheter_tip_m - radius, 0.0)
        wall = MetalSegment(tuple(distal), tuple(tip_m - insert_dir * cooled_length_m), radius, cooled=True)
        raster = rasterize_metal([wall], sub.shape, spacing_m)
        mark_line_metal(raster, [wall], spacing_m)
        held = raster.cooled & raster.inside
        faces = wall_face_factors(held, raster.face_fraction)
    index = state.tissue_index[slices]
    region = open_thermal_region(
        state, context, sub, slices, total_s, dirichlet_mask=held,
        dirichlet_temperature_c=coolant_c if cooled else None, face_factors=faces,
        phase_change=tissue_water_vaporization(context, index), occlusion=protocol.inflow_occlusion,
    )  # fmt: skip

    # SAR (r, z) → voxels of the box holding the EM model's tissue cylinder; T (voxels) → (r, z) cells
    em_r_m = float(rc[tissue_cells.any(axis=1)].max())
    em_z_m = (float(zc[tissue_cells.any(axis=0)].min()), float(zc[tissue_cells.any(axis=0)].max()))
    box = _box_around_cylinder(sub.shape, spacing_m, tip_m, feed_dir, em_r_m, *em_z_m)
    box_origin = np.array([s.start for s in box]) * np.asarray(spacing_m)
    box_shape = tuple(s.stop - s.start for s in box)
    mapping = sar_mapping(box_shape, box_origin, spacing_m, tip_m, feed_dir, rc, zc)
    library = context.library
    density = np.nan_to_num(library.property_table("density_kg_m3"), nan=0.0).astype(np.float32)
    density[library.index_of("air")] = 0.0
    rho_all = density[np.ascontiguousarray(index[box])].ravel()
    rho_box = rho_all if held is None else rho_all * ~held[box].ravel()  # held wall voxels: no source there
    u, v = _frame(feed_dir)
    phis = 2.0 * np.pi * np.arange(AZIMUTHS) / AZIMUTHS
    cells = np.argwhere(model.tissue_mask)
    rr, zz = rc[cells[:, 0]], zc[cells[:, 1]]
    ring = np.cos(phis)[None, :, None] * u + np.sin(phis)[None, :, None] * v  # (1, A, 3)
    samples = tip_m + zz[:, None, None] * feed_dir + rr[:, None, None] * ring  # (cells, A, 3)
    sample_index = (samples / np.asarray(spacing_m)).reshape(-1, 3).T
    body_c = float(state.body_temperature_c)
    voxel_m3 = float(np.prod(spacing_m))
    q = np.zeros(sub.shape, dtype=np.float32)
    q_box = q[box]
    log = MWLog()
    sar_first: dict[str, np.ndarray] = {}

    def source(t_s: float, T: np.ndarray) -> np.ndarray:
        t_rz = np.full(model.shape, body_c)
        sampled = map_coordinates(T, sample_index, order=1, mode="nearest").reshape(-1, AZIMUTHS)
        t_rz[cells[:, 0], cells[:, 1]] = sampled.mean(axis=1)
        solution = model.with_temperature(t_rz).solve(feed_w)
        sar = np.where(tissue_cells, solution.sar_w_kg, 0.0)
        if not sar_first:
            sar_first["sar"] = sar
        values = (mapping @ sar.ravel()) * rho_box
        q_box[...] = values.reshape(box_shape).astype(np.float32)
        absorbed = solution.absorbed_w()
        log.time_s.append(t_s)
        log.s11_db.append(solution.s11_db)
        log.delivered_w.append(solution.delivered_w)
        log.reflected_w.append(feed_w * abs(solution.s11) ** 2)
        log.tissue_w.append(float(absorbed.get(tissue, 0.0)))
        log.coolant_w.append(float(absorbed.get("coolant water", 0.0)))
        log.mapped_w.append(float(np.sum(values, dtype=np.float64)) * voxel_m3)
        log.wall_w.append(log.mapped_w[-1] if held is None else float((mapping @ sar.ravel()) @ rho_all) * voxel_m3)
        log.wall_w[-1] -= log.mapped_w[-1]
        log.solves += 1
        return q

    region.advance(protocol.duration_s, source, source_interval_s=protocol.sar_update_s, source_region=box)
    deposited_j = region.source_energy_j
    region.advance(protocol.cooldown_s)
    new_state, result = close_thermal_region(region, step.therapy)

    level = zone_level(region)
    result.metrics.update(zone_axes_mm(result.fields["ablation_zone"], state.grid, direction_mm, level=level))
    duration = protocol.duration_s
    delivered = log.held_mean(log.delivered_w, duration)
    reflected = log.held_mean(log.reflected_w, duration)
    result.metrics.update(
        {
            "generator_power_w": protocol.power_w,
            "cable_loss_db": cable_db,
            "feed_power_w": feed_w,
            "delivered_power_w": delivered,
            "reflected_power_w": reflected,
            "reflected_at_generator_w": reflected * 10.0 ** (-cable_db / 10.0),
            "initial_s11_db": log.s11_db[0],
            "final_s11_db": log.s11_db[-1],
            "tissue_power_w": log.held_mean(log.tissue_w, duration),
            "coolant_power_w": log.held_mean(log.coolant_w, duration),
            "mapped_power_w": log.held_mean(log.mapped_w, duration),
            "wall_power_w": log.held_mean(log.wall_w, duration),
            "generator_energy_j": protocol.power_w * duration,
            "delivered_energy_j": delivered * duration,
            "deposited_energy_j": deposited_j,
            "field_solves": float(log.solves),
            "thermal_voxels": float(np.prod(sub.shape)),
            "cooled": float(cooled),
            "coolant_temperature_c": float(coolant_c) if cooled else float("nan"),
            "frequency_hz": float(antenna.frequency_hz),
        }
    )
    curves = log.curves()
    # the SAR pattern of the first solve per watt of generator power, on the physical tissue cells (r-major)
    keep_r = rc <= rc[tissue_cells.any(axis=1)].max()
    keep_z = (zc >= zc[tissue_cells.any(axis=0)].min()) & (zc <= zc[tissue_cells.any(axis=0)].max())
    pattern = sar_first["sar"][np.ix_(keep_r, keep_z)] / protocol.power_w
    curves["sar_r_mm"] = [float(x) for x in rc[keep_r] * 1e3]
    curves["sar_z_mm"] = [float(x) for x in zc[keep_z] * 1e3]
    curves["sar_w_kg_per_w"] = [float(x) for x in pattern.ravel()]
    result.curves = curves
    return new_state, result


def sar_pattern(result: StepResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r mm, z mm, SAR W/kg per W of generator power, shape (r, z)) of an MWA step's first field solve; z is
    measured from the antenna's tip toward the feed."""
    r = np.asarray(result.curves["sar_r_mm"])
    z = np.asarray(result.curves["sar_z_mm"])
    return r, z, np.asarray(result.curves["sar_w_kg_per_w"]).reshape(r.size, z.size)
