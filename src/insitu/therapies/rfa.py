"""``rfa``: radiofrequency ablation — electrodes, generator control and the coupled electric–thermal run.

A step places a catalog electrode (tip point + direction, or entry + target, in LPS mm) and gives a
protocol (duration, generator mode and settings). The electrode's metal is rasterised on the step's
thermal sub-grid with sub-voxel faces; the quasi-static potential −∇·(σ(T)∇V) = 0 is solved on the
same grid (metal held at its terminal's potential, the far return at the box faces), and its Joule
heating σ|∇V|², scaled to what the generator delivers, drives the Pennes run. The potential is
re-solved every ``potential_update_s`` (warm-started) and at once when the boiling region (T ≥ 99 °C,
where σ collapses and the impedance jumps) grows or shrinks. σ is a function of the current temperature,
as in the impedance-controlled models of Trujillo & Berjano: tissue that cools in a roll-off pause
regains its conductivity, which is what lets pulsed protocols resume. Cooled metal is a Dirichlet region
of the thermal grid at the coolant temperature (never voxels of metal, which would cut the explicit step
twentyfold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from insitu.errors import PhysicsError, PlanError
from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.placement import active_mask, axis_from_placement, check_path, mark_line_metal, to_physics_frame
from insitu.therapies.thermal import (
    close_thermal_region,
    open_thermal_region,
    thermal_crop,
    tissue_water_vaporization,
    wall_face_factors,
    zone_level,
)
from insitu.therapies.zone_geometry import zone_axes_mm

DEFAULT_POTENTIAL_UPDATE_S = 10.0  # re-solve cadence; the zone is insensitive to it (tests/test_rfa.py)
# The electric box reaches this far beyond the conducting metal. Outside it the potential of a compact electrode
# falls as 1/r and only a/R of the power (a: the electrode's effective radius, ≈ 5 mm for a 2 cm tip) is
# dissipated beyond R, thinly spread; that tissue's resistance is put in series (``_spreading_resistance_ohm``).
ELECTRIC_MARGIN_MM = 30.0
INSULATOR_FRACTION = 0.02  # tissue below this fraction of the tip's σ is an insulator for the RF field
# the potential's relative residual: the conductance (and the power) is variational in the field, so its error is
# second order in the field's (1e-4 → ~1e-8); the Joule pattern's 1e-4 is far below the thermal model's
POTENTIAL_RTOL = 1e-4
RESOLVE_TOLERANCE = 0.05  # re-solve at once when the estimated conductance has moved by more than this
# ... or when this share of the field's power sits in voxels whose σ has changed by more than half since the solve
# (tissue starting to boil next to the electrode: a local change the total conductance hardly sees, but whose
# voxels must stop heating at once, not at the next scheduled solve)
RESOLVE_LOCAL_SHARE = 0.02
LOCAL_CHANGE = 0.5


class RFAProtocol(BaseModel):
    """Generator settings and timing of one RF ablation."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(gt=0.0, le=7200.0, description="RF on time")
    cooldown_s: float = Field(default=0.0, ge=0.0, le=7200.0, description="RF off, tissue keeps evolving")
    generator: dict = Field(
        default_factory=dict,
        description="generator mode and settings, e.g. {mode: impedance, max_power_w: 200}; the device's default "
        "mode when empty",
    )
    coolant_temperature_c: float | None = Field(
        default=None, ge=-5.0, le=40.0, description="override the device's coolant temperature"
    )
    potential_update_s: float = Field(default=DEFAULT_POTENTIAL_UPDATE_S, gt=0.0, le=120.0)
    roll_deg: float = Field(default=0.0, ge=-360.0, le=360.0, description="rotation of the device about its axis")
    region_margin_mm: float | None = Field(
        default=None,
        gt=0.0,
        le=500.0,
        description="simulated region around the electrode (default: 4 diffusion lengths)",
    )
    inflow_occlusion: Literal["none", "hepatic_artery", "portal_vein", "pringle"] = Field(
        default="none",
        description="hepatic inflow stopped during the ablation: balloon occlusion of the hepatic artery or the "
        "portal vein, or the Pringle manoeuvre (both)",
    )


protocol_model = RFAProtocol


@dataclass
class GeneratorLog:
    """Time curves of one run (one entry per control interval)."""

    time_s: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    impedance_ohm: list[float] = field(default_factory=list)
    voltage_v: list[float] = field(default_factory=list)
    tip_temperature_c: list[float] = field(default_factory=list)
    energy_j: float = 0.0
    box_power_w: list[float] = field(default_factory=list)
    solves: int = 0
    solve_iterations: int = 0
    rolloffs: int = 0

    def curves(self) -> dict[str, list[float]]:
        return {
            "time_s": self.time_s,
            "power_w": self.power_w,
            "impedance_ohm": self.impedance_ohm,
            "voltage_v": self.voltage_v,
            "tip_temperature_c": self.tip_temperature_c,
        }


def _conductivity_tables(context: StepContext) -> tuple[np.ndarray, np.ndarray]:
    library = context.library
    sigma = np.nan_to_num(library.property_table("electrical_conductivity_s_m"), nan=0.0)
    alpha = np.nan_to_num(library.property_table("electrical_conductivity_per_c"), nan=0.0)
    return sigma.astype(np.float32), alpha.astype(np.float32)


def _generator_for(device, protocol: RFAProtocol):
    """The generator the step runs: the protocol's settings over the device's default mode and rating."""
    from insitu.physics.rf_generator import make_generator

    parameters = device.parameters
    spec = dict(protocol.generator)
    if "mode" not in spec:  # the device's default generator, with the protocol's settings on top
        spec = {**dict(parameters.get("generator", {"mode": "impedance"})), **spec}
    return make_generator(spec, device_max_power_w=float(parameters.get("max_power_w", 200.0)))


def check_step(step: Step) -> None:
    """Plan-time checks: a known RF device and a generator setting it can run (one-line errors)."""
    from insitu.therapies.rf_devices import rf_device

    _generator_for(rf_device(step.device), RFAProtocol.model_validate(step.protocol))


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Place the electrode, run the generator and the coupled electric–thermal model, report the zone."""
    from insitu.physics.electric import DESICCATION_DROP_FACTOR, RFField, conductivity_at_temperature
    from insitu.physics.electrode_raster import rasterize_metal, wall_face_fractions
    from insitu.physics.rf_generator import GeneratorReading
    from insitu.therapies.rf_devices import rf_device, rf_metal_segments

    protocol = RFAProtocol.model_validate(step.protocol)
    label = f"step {step.label or step.therapy}"
    device = rf_device(step.device)
    parameters = device.parameters
    generator = _generator_for(device, protocol)
    tip_mm, direction_mm = axis_from_placement(step)
    check_path(state, context, tip_mm, direction_mm, label)

    # the crop: the heat of the whole step around the device's conducting metal
    roll = math.radians(protocol.roll_deg)
    world_segments = rf_metal_segments(device, tip_mm * 1e-3, direction_mm, roll)  # metres, LPS frame
    conducting = np.array([p for s in world_segments if s.conducting for p in (s.start_m, s.end_m)]) * 1e3
    reach_mm = max(s.radius_m for s in world_segments) * 1e3
    active = active_mask(state.grid, np.vstack([conducting - reach_mm, conducting + reach_mm]))
    total_s = protocol.duration_s + protocol.cooldown_s
    sub, slices = thermal_crop(state, context, active, total_s, protocol.region_margin_mm)

    # metal on the sub-grid's physics frame
    tip_m = to_physics_frame(sub, tip_mm)
    ahead_m = to_physics_frame(sub, tip_mm + direction_mm)
    segments = rf_metal_segments(device, tip_m, (ahead_m - tip_m) / np.linalg.norm(ahead_m - tip_m), roll)
    spacing_m = tuple(s * 1e-3 for s in sub.spacing_kji_mm)
    _check_exposed_length(device, sub.spacing_mm)
    raster = rasterize_metal(segments, sub.shape, spacing_m)
    thin = mark_line_metal(raster, segments, spacing_m)
    coolant_c = protocol.coolant_temperature_c
    if coolant_c is None:
        coolant_c = float(parameters.get("coolant_temperature_c", state.body_temperature_c))
    held = raster.cooled & raster.inside
    any_held = bool(held.any())
    region = open_thermal_region(
        state, context, sub, slices, total_s, dirichlet_mask=held if any_held else None,
        dirichlet_temperature_c=coolant_c if any_held else None,
        face_factors=wall_face_factors(held, wall_face_fractions(segments, raster)) if any_held else None,
        phase_change=tissue_water_vaporization(context, state.tissue_index[slices]),
        occlusion=protocol.inflow_occlusion,
    )  # fmt: skip

    # the electric problem on a box around the conducting metal (the field decays as r⁻² away from it); the
    # resistance of the tissue beyond the box is added in series (a sphere's spreading resistance)
    sigma_table, alpha_table = _conductivity_tables(context)
    bipolar = parameters.get("layout") in ("bipolar", "multipolar")
    es = _electric_box(raster.conducting, spacing_m, ELECTRIC_MARGIN_MM if not bipolar else ELECTRIC_MARGIN_MM / 2)
    offset_m = np.array([sl.start for sl in es]) * np.asarray(spacing_m)
    electric_segments = [
        replace(g, start_m=tuple(np.asarray(g.start_m) - offset_m), end_m=tuple(np.asarray(g.end_m) - offset_m))
        for g in segments
    ]
    e_shape = tuple(sl.stop - sl.start for sl in es)
    e_raster = rasterize_metal(electric_segments, e_shape, spacing_m)
    mark_line_metal(e_raster, electric_segments, spacing_m)
    index = np.ascontiguousarray(state.tissue_index[slices][es])
    sigma37 = sigma_table[index]
    alpha = alpha_table[index]
    # tissue conducting < INSULATOR_FRACTION of the tissue at the tip (dry skin) carries no RF current worth
    # modelling; as insulator it also keeps the multigrid preconditioner effective (thin 0.004 S/m skin shells
    # between air and fat stall it)
    tip_e = tuple(
        int(v) for v in np.clip(np.round((tip_m - offset_m) / np.asarray(spacing_m)), 0, np.asarray(e_shape) - 1)
    )
    sigma37[sigma37 < INSULATOR_FRACTION * float(sigma37[tip_e])] = 0.0
    # monopolar: the return (dispersive pads, far away) through the box faces; bipolar: the other electrode
    field_solver = RFField(
        spacing_m, e_raster, ground_mask=np.zeros(e_shape, bool) if bipolar else None, rtol=POTENTIAL_RTOL
    )
    far_ohm = 0.0 if bipolar else _spreading_resistance_ohm(sigma37, spacing_m)
    sigma = np.empty_like(sigma37)
    T_e = np.empty_like(sigma37)
    q = np.zeros(sub.shape, dtype=np.float32)
    q_e = q[es]
    tip_points = [np.asarray(g.end_m) for g in segments if g.conducting]
    tip_index = [
        tuple(int(v) for v in np.clip(np.round(pt / np.asarray(spacing_m)), 0, np.asarray(sub.shape) - 1))
        for pt in tip_points
    ]
    log = GeneratorLog()
    cache: dict[int, object] = {}
    joule_conductance: dict[int, float] = {}
    last_solve = {"t": -math.inf}
    sigma_at_solve = np.zeros_like(sigma37)
    voxel_m3 = float(np.prod(spacing_m))
    interval = float(getattr(generator, "control_interval_s", 1.0))

    def field_for(t_s: float, terminal: int | None, exact: bool) -> tuple[object, float]:
        """The 1 V field of the drive pattern in the electric box and its conductance now (S), σ at ``T_e``.

        Between solves the conductance follows first-order perturbation theory, δG = Σ |∇u|²·δσ·V, with
        |∇u|² = Q₁/σ₀ from the last solve. With ``exact`` (power is flowing) the field is re-solved,
        warm-started, on the cadence or as soon as that estimate moves by more than RESOLVE_TOLERANCE
        (boiling tissue, roll-off); during a pause the estimate alone answers the generator.
        """
        conductivity_at_temperature(sigma37, alpha, T_e, out=sigma)
        key = -1 if terminal is None else terminal
        if key in cache:
            solution = cache[key]
            reference = joule_conductance[key]
            change, moved_share = _conductance_change(
                solution.joule_w_m3_per_v2, sigma, sigma_at_solve, voxel_m3, LOCAL_CHANGE
            )
            conductance = reference + change
            fresh = t_s - last_solve["t"] < protocol.potential_update_s - 1e-9
            close = (
                abs(conductance / reference - 1.0) <= RESOLVE_TOLERANCE
                and moved_share <= RESOLVE_LOCAL_SHARE
                and conductance > 0
            )
            if not exact and conductance > 0:
                return solution, conductance
            if fresh and close:
                return solution, conductance
        cache.clear()
        sigma_at_solve[...] = sigma
        last_solve["t"] = t_s
        try:
            solution = field_solver.solve_unit(sigma_at_solve, _drive_pattern(device, terminal))
        except PhysicsError as error:
            # dried: σ cut by the desiccation drop (σ37·(1 + α·63 K) ≈ 2.3 σ37 at 100 °C before the cut)
            dry = int(np.count_nonzero(sigma_at_solve < sigma37 * (10.0 / DESICCATION_DROP_FACTOR)))
            raise PhysicsError(
                f"at t = {t_s:.0f} s the RF field around the electrode cannot be solved ({dry} voxels of dried tissue"
                f" cut the current's paths; {error.problem})",
                "drive the electrode with impedance control (it rolls off as tissue dries) or a lower constant power",
            ) from None
        cache[key] = solution
        # the conductance as the field's energy, Σ Q₁·V (variational: its error is second order in the solver's)
        joule_conductance[key] = float(np.sum(solution.joule_w_m3_per_v2, dtype=np.float64)) * voxel_m3
        log.solves += 1
        log.solve_iterations += int(solution.info.iterations)
        return solution, joule_conductance[key]

    def source(t_s: float, T: np.ndarray) -> np.ndarray:
        tip_c = max(float(T[ix]) for ix in tip_index) if tip_index else None
        T_e[...] = T[es]
        previous = getattr(generator, "active_terminal", None)
        solution, conductance = field_for(t_s, previous, exact=False)
        reference_s = joule_conductance[-1 if previous is None else previous]
        impedance = 1.0 / conductance + far_ohm
        reading = GeneratorReading(time_s=t_s, impedance_ohm=impedance, tip_temperature_c=tip_c)
        command = generator.command(reading)
        power = max(0.0, float(command.power_w)) if command.on else 0.0
        if power > 0.0:
            solution, conductance = field_for(t_s, command.active_terminal, exact=True)
            reference_s = joule_conductance[-1 if command.active_terminal is None else command.active_terminal]
            impedance = 1.0 / conductance + far_ohm
        # the generator drives the series circuit; the box receives P·Z_box/Z (the rest heats tissue far away)
        box_power = power * (1.0 / conductance) / impedance
        volts_sq = box_power / conductance
        # the field's shape is the last solve's, scaled so the box receives exactly its share of the power. (Scaling
        # each voxel's Q by its σ since — the frozen-E first order — is wrong-signed around an electrode, where the
        # current's paths are fixed by the geometry and Q = J²/σ falls as σ rises; the local re-solve trigger
        # handles the voxels that change a lot.)
        np.multiply(solution.joule_w_m3_per_v2, np.float32(volts_sq * conductance / reference_s), out=q_e)
        if log.power_w and log.power_w[-1] > 0 and power == 0.0:
            log.rolloffs += 1
        log.time_s.append(t_s)
        log.power_w.append(power)
        log.impedance_ohm.append(impedance)
        log.voltage_v.append(math.sqrt(power * impedance))
        log.tip_temperature_c.append(float("nan") if tip_c is None else tip_c)
        log.box_power_w.append(box_power)
        return q

    region.advance(protocol.duration_s, source, source_interval_s=interval, source_region=es)
    # energy: power held over each control interval up to the end of the RF time
    times = [*log.time_s, protocol.duration_s]
    log.energy_j = float(sum(p * (times[n + 1] - times[n]) for n, p in enumerate(log.power_w)))
    box_energy_j = float(sum(p * (times[n + 1] - times[n]) for n, p in enumerate(log.box_power_w)))
    region.advance(protocol.cooldown_s)
    new_state, result = close_thermal_region(region, step.therapy)

    axes = zone_axes_mm(result.fields["ablation_zone"], state.grid, direction_mm, level=zone_level(region))
    result.metrics.update(axes)
    result.metrics.update(
        {
            "delivered_energy_j": log.energy_j,
            "deposited_energy_j": region.source_energy_j,
            "electric_box_energy_j": box_energy_j,
            "far_field_resistance_ohm": far_ohm,
            "line_electrode_segments": float(thin),
            "thermal_voxels": float(np.prod(sub.shape)),
            "electric_voxels": float(np.prod(e_shape)),
            "mean_power_w": log.energy_j / protocol.duration_s,
            "initial_impedance_ohm": log.impedance_ohm[0] if log.impedance_ohm else float("nan"),
            "final_impedance_ohm": log.impedance_ohm[-1] if log.impedance_ohm else float("nan"),
            "rolloffs": float(log.rolloffs),
            "potential_solves": float(log.solves),
            "potential_iterations": float(log.solve_iterations),
            "coolant_temperature_c": float(coolant_c),
        }
    )
    result.curves = log.curves()
    return new_state, result


@numba.njit(parallel=True, cache=True)
def _conductance_change(joule_unit, sigma_now, sigma_ref, voxel_m3, local_change):  # pragma: no cover
    """First-order change of a field's conductance (S) as σ moves from ``sigma_ref``, Σ Q₁·(r − 1)·V with
    r = σ/σ_ref capped at 1 + ``local_change`` (the frozen field is wrong inside boiled tissue regaining its σ),
    and the share of the field's power in voxels whose σ moved by more than ``local_change``, each weighted by
    what it would take at the frozen field (Q₁·max(1, r): tissue regaining its σ after boiling matters by what it
    would draw, not by what it drew)."""
    q = joule_unit.reshape(-1)
    now = sigma_now.reshape(-1)
    ref = sigma_ref.reshape(-1)
    cap = 1.0 + local_change
    total = 0.0
    moved = 0.0
    power = 0.0
    for m in numba.prange(q.size):
        s0 = ref[m]
        if s0 > 0.0:
            qm = float(q[m])
            ratio = float(now[m]) / s0
            total += qm * (min(ratio, cap) - 1.0)
            power += qm
            if abs(ratio - 1.0) > local_change:
                moved += qm * max(ratio, 1.0)
    return total * voxel_m3, moved / power if power > 0.0 else 0.0


def _check_exposed_length(device, spacing_mm) -> None:
    """An exposed electrode shorter than a voxel cannot be resolved: say so instead of simulating a dot."""
    exposed = float(device.parameters.get("exposed_tip_mm", 0.0) or 0.0)
    if 0.0 < exposed < max(spacing_mm):
        raise PlanError(
            f"the electrode's exposed tip ({exposed:g} mm) is shorter than a voxel ({max(spacing_mm):g} mm)",
            "resample the patient to a finer grid",
        )


def _electric_box(conducting: np.ndarray, spacing_m, margin_mm: float) -> tuple[slice, slice, slice]:
    """Slices of the thermal sub-grid holding the conducting metal plus ``margin_mm`` on every side."""
    where = np.argwhere(conducting)
    if where.size == 0:
        raise PlanError(
            "the electrode's exposed metal covers no voxel centre of the grid",
            "use a finer grid (spacing below the electrode's diameter) or check the placement",
        )
    pad = [int(np.ceil(margin_mm * 1e-3 / h)) for h in spacing_m]
    lo = np.maximum(where.min(axis=0) - pad, 0)
    hi = np.minimum(where.max(axis=0) + pad + 1, conducting.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _spreading_resistance_ohm(sigma: np.ndarray, spacing_m) -> float:
    """Resistance from the electric box to infinity: a sphere of the box's volume in the conductivity of the
    tissue on the box's faces (R = 1/(4πσR_eq)); 0 where the faces carry no conducting tissue."""
    faces = np.concatenate([sigma[[0, -1], :, :].ravel(), sigma[:, [0, -1], :].ravel(), sigma[:, :, [0, -1]].ravel()])
    conducting = faces[faces > 0]
    if conducting.size < faces.size // 2:
        return 0.0
    radius_m = (3.0 * sigma.size * float(np.prod(spacing_m)) / (4.0 * math.pi)) ** (1.0 / 3.0)
    return 1.0 / (4.0 * math.pi * float(np.median(conducting)) * radius_m)


def _drive_pattern(device, terminal: int | None) -> dict[int, float]:
    """Unit potentials per terminal: monopolar devices drive every terminal together (or the one switched
    on), bipolar devices drive terminal 0 against terminal 1."""
    from insitu.therapies.rf_devices import rf_terminals

    n = rf_terminals(device)
    if device.parameters.get("layout") in ("bipolar", "multipolar"):
        if terminal is not None:  # a multipolar generator switched to one pair
            return {2 * (terminal // 2): 0.5, 2 * (terminal // 2) + 1: -0.5}
        return {t: (0.5 if t % 2 == 0 else -0.5) for t in range(n)}
    if terminal is not None:
        return {terminal: 1.0}
    return dict.fromkeys(range(n), 1.0)
