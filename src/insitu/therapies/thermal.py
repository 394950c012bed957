"""The thermal step every heating or cooling therapy shares: state → Pennes run with damage → new state.

A therapy supplies its source (W/m³) and boundary conditions; this module turns the tissue state
into SI property volumes, crops the grid to the region the heat can reach (the rest cannot change
in the step's duration), runs the bioheat solver with the damage accumulator alongside, and writes
temperature, damage and perfusion shut-down back into a new state. Air and gas are an ambient
medium (held at body temperature, film coefficient ``GAS_FILM_W_M2K``), not conducting voxels, so
they never limit the explicit time step. The patient's large vessels (local diameter ≥ 3 mm, therapies/vessels.py)
are heat sinks: blood held at body temperature behind the wall coefficient h = Nu·k_b/D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from insitu.errors import GridError, PlanError
from insitu.grid import Grid
from insitu.physics.bioheat import BioheatSolver, PhaseChange, RobinBoundary, ThermalMedium, VesselBoundary
from insitu.physics.damage import DamageAccumulator
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.vessels import large_vessels

# Natural convection at a skin–air or tissue–gas interface: h ≈ 5–10 W m⁻² K⁻¹ (standard
# heat-transfer textbook range for free convection in air, e.g. Incropera & DeWitt, Fundamentals of
# Heat and Mass Transfer, Table 1.1: 2–25) — recalled; small against tissue conduction at 1 mm.
GAS_FILM_W_M2K = 10.0
# Heat cannot travel much beyond a few diffusion lengths L = sqrt(α t) during a step; the crop keeps
# CROP_DIFFUSION_LENGTHS of them (and at least CROP_MIN_MARGIN_MM) around the source and held regions, where the
# box faces are held at body temperature. A heated region's rise reaches 4L out as erfc(4/2) = 0.5 % of its edge
# value (≈ 0.3 K from a 60 K edge): far below any damage threshold, and 6L would cost ~3× the voxels.
CROP_DIFFUSION_LENGTHS = 4.0
CROP_MIN_MARGIN_MM = 15.0
ABLATION_FIELD = "ablation_zone"
# a cooled wall closer than half a voxel to a free centre is placed at half a voxel: the explicit step's bound
# then falls by at most a seventh (one face of six doubled), and the wall is still within h/2 of where it is
THERMAL_THETA_MIN = 0.5
# Tissue water boiling off at 99–100 °C: water mass fraction 0.68 × water density 958 kg/m³ (at 100 °C) × latent
# heat 2.257 MJ/kg = 2.162e9 J/m³, spread over 1 K — the apparent-heat-capacity model of the Berjano group's RFA
# papers (recalled, not re-read; the product checks arithmetically; Abraham & Sparrow 2007 use
# the same enthalpy idea). Applied to every soft tissue (water-rich); none in air and bone.
VAPORIZATION_J_M3 = 2.162e9
DRY_TISSUES = ("bone_cortical", "bone_cancellous")  # no tissue water to boil (with air)
VAPORIZATION_START_C = 99.0
VAPORIZATION_WIDTH_K = 1.0


def _damage_models(plan_criterion: str) -> tuple[str, ...]:
    """Damage accumulated during heating: an Arrhenius set (the plan's, or liver cell death) and CEM43 always; the
    three-state model (an RK4 per hot voxel per step, the costliest) when the plan's zone criterion is it. The
    peak temperature comes from the solver, not a second pass."""
    arrhenius = plan_criterion if plan_criterion.startswith("arrhenius:") else "arrhenius:liver_comsol"
    if plan_criterion.startswith("three_state"):
        return (arrhenius, "cem43", "three_state")
    return (arrhenius, "cem43")


def _medium(state: TissueState, context: StepContext, slices: tuple[slice, ...], spacing_m) -> ThermalMedium:
    library = context.library
    index = state.tissue_index[slices]

    def volume(prop: str) -> np.ndarray:
        return library.volume_from_table(index, np.nan_to_num(library.property_table(prop), nan=0.0))

    return ThermalMedium(
        conductivity_w_mk=volume("thermal_conductivity_w_m_k"),
        density_kg_m3=volume("density_kg_m3"),
        specific_heat_j_kgk=volume("specific_heat_j_kg_k"),
        perfusion_1_s=np.ascontiguousarray(state.perfusion_per_s[slices], dtype=np.float32),
        spacing_m=spacing_m,
        conductivity_coeff_1_k=volume("thermal_conductivity_per_c"),
        specific_heat_coeff_1_k=volume("specific_heat_per_c"),
        arterial_temperature_c=state.body_temperature_c,
    )


def thermal_crop(
    state: TissueState, context: StepContext, active: np.ndarray, duration_s: float, margin_mm: float | None = None
):
    """The sub-grid (and its slices) the heat of a ``duration_s`` step around ``active`` voxels can reach.

    The fastest-diffusing tissue inside the crop (air excluded: it is an ambient medium) sets the margin: start
    from the tissues of the active region and widen until the crop holds no faster tissue (lung, say).
    ``margin_mm`` overrides the margin (a larger region for checks, a smaller one for speed).
    """
    if margin_mm is not None:
        return state.grid.crop_to_mask(active, margin_mm=margin_mm)
    library = context.library
    air = library.index_of("air")
    diffusivity = library.property_table("thermal_conductivity_w_m_k") / (
        library.property_table("density_kg_m3") * library.property_table("specific_heat_j_kg_k")
    )
    diffusivity[air] = 0.0

    def fastest(index: np.ndarray) -> float:
        present = np.bincount(index.ravel(), minlength=diffusivity.size)[: diffusivity.size] > 0
        return float(np.max(diffusivity[present], initial=0.0))

    sub, slices = state.grid.crop_to_mask(active, margin_mm=0.0)
    alpha = fastest(state.tissue_index[slices])
    for _ in range(len(diffusivity)):  # each pass can only add faster tissues: it stops
        margin_mm = max(CROP_MIN_MARGIN_MM, 1e3 * CROP_DIFFUSION_LENGTHS * math.sqrt(alpha * duration_s))
        sub, slices = state.grid.crop_to_mask(active, margin_mm=margin_mm)
        widened = fastest(state.tissue_index[slices])
        if widened <= alpha:
            break
        alpha = widened
    return sub, slices


@dataclass
class ThermalRegion:
    """One step's cropped thermal problem: medium, solver, damage and temperature on the sub-grid.

    Therapies open it (:func:`open_thermal_region`), advance it with their sources — a fixed volume or a
    callable re-evaluated as the tissue heats — and close it (:func:`close_thermal_region`) into a new
    state and a step result.
    """

    state: TissueState
    context: StepContext
    sub: Grid
    slices: tuple[slice, ...]
    medium: ThermalMedium
    solver: BioheatSolver
    damage: DamageAccumulator
    temperature_c: np.ndarray
    peak_c: np.ndarray
    planned_s: float
    elapsed_s: float = 0.0
    steps: int = 0
    dt_s: float = 0.0
    source_energy_j: float = 0.0  # ∫ Σ Q·V dt the solver deposited

    @property
    def spacing_m(self) -> tuple[float, float, float]:
        """(dz, dy, dx) of the sub-grid in metres."""
        return self.medium.spacing_m

    def advance(
        self, duration_s: float, source_w_m3=None, source_interval_s: float | None = None, source_region=None
    ) -> None:
        """Run ``duration_s`` with ``source_w_m3`` (None, a volume or ``source(t_s, T)`` on the sub-grid), zero
        outside ``source_region`` (slices of the sub-grid) when given."""
        if duration_s <= 0:
            return
        report = self.context.progress
        begin, total = self.elapsed_s, max(self.planned_s, 1e-30)
        run = self.solver.advance(
            self.temperature_c,
            duration_s,
            source_w_m3=source_w_m3,
            source_interval_s=source_interval_s,
            damage=self.damage,
            peak_temperature_c=self.peak_c,
            start_time_s=begin,
            source_region=source_region,
            progress=lambda stage, f, m="": report("thermal", min(1.0, (begin + f * duration_s) / total), m),
        )
        self.elapsed_s += duration_s
        self.steps += run.steps
        self.source_energy_j += run.source_energy_j
        self.dt_s = run.dt_s


def open_thermal_region(
    state: TissueState,
    context: StepContext,
    sub: Grid,
    slices: tuple[slice, ...],
    planned_s: float,
    dirichlet_mask: np.ndarray | None = None,
    dirichlet_temperature_c: float | np.ndarray | None = None,
    face_factors: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    phase_change: PhaseChange | None = None,
    vessels: bool = True,
    occlusion: str = "none",
    coupling: RobinBoundary | None = None,
) -> ThermalRegion:
    """Build the thermal problem on ``sub`` (a crop of the state's grid); Dirichlet arrays and face factors (see
    :class:`BioheatSolver`) live on ``sub``. With ``vessels`` the patient's large vessels are heat sinks (a held
    Dirichlet voxel stays held). ``occlusion`` (therapies/occlusion.py) stops hepatic inflow for the step: perfusion
    and the vessels it stops (the state keeps its perfusion). ``coupling`` is an ambient medium of its own on ``sub``
    (e.g. an HIFU transducer's coupling water): its mask voxels leave the air film and take its temperature and h."""
    from insitu.therapies.occlusion import STOPPED, occluded_perfusion, stopped_vessels

    if occlusion not in STOPPED:
        raise PlanError(f"unknown inflow occlusion {occlusion!r}", f"use one of {', '.join(STOPPED)}")
    library = context.library
    air = library.index_of("air")
    spacing_m = tuple(s * 1e-3 for s in sub.spacing_kji_mm)
    medium = _medium(state, context, slices, spacing_m)
    omega = occluded_perfusion(state, context.library, slices, occlusion)  # type: ignore[arg-type]
    if omega is not None:
        medium.perfusion_1_s = omega
    stopped = frozenset(stopped_vessels(context.patient.structures.values(), occlusion))  # type: ignore[arg-type]
    gas = state.tissue_index[slices] == air
    if coupling is not None and coupling.mask is not None:
        gas &= ~coupling.mask
    # the crop's faces are a truncation 4 diffusion lengths out: body temperature one cell beyond them
    # (h = 2k/Δ gives the face the conductance of an interior face; h = ∞, at the face itself, would double it
    # and cut the stable step by a third at the box corners)
    k = medium.conductivity_w_mk
    truncation_h = 2.0 * float(np.min(k[k > 0], initial=0.5)) / max(spacing_m)
    robin = [RobinBoundary(h_w_m2k=truncation_h, ambient_c=state.body_temperature_c, box_faces=("all",))]
    if gas.any():
        robin.append(RobinBoundary(h_w_m2k=GAS_FILM_W_M2K, ambient_c=state.body_temperature_c, mask=gas))
    if coupling is not None:
        robin.append(coupling)
    solver = BioheatSolver(
        medium,
        dirichlet_mask=dirichlet_mask,
        dirichlet_temperature_c=dirichlet_temperature_c,
        robin=robin,
        vessels=_vessel_boundary(state, context, slices, stopped) if vessels else None,
        face_factors=face_factors,
        phase_change=phase_change,
    )
    damage = DamageAccumulator(sub.shape, models=_damage_models(context.plan.damage_model))
    damage.load({name: values[slices] for name, values in state.damage.items()})
    temperature = np.ascontiguousarray(state.temperature_c[slices], dtype=np.float32)
    damage.observe(temperature)  # the start of the first step's temperature path
    return ThermalRegion(
        state=state,
        context=context,
        sub=sub,
        slices=slices,
        medium=medium,
        solver=solver,
        damage=damage,
        temperature_c=temperature,
        peak_c=temperature.copy(),
        planned_s=planned_s,
    )


def _vessel_boundary(
    state: TissueState, context: StepContext, slices: tuple[slice, ...], without: frozenset[str] = frozenset()
) -> VesselBoundary | None:
    """The patient's large vessels on the crop (those named in ``without`` carry no flow): blood at body temperature
    behind h = Nu·k_b/D (None when none)."""
    structures = [s for s in context.patient.structures.values() if s.name not in without]
    for structure in structures:
        if structure.mask.shape != state.grid.shape:
            raise GridError(
                f"structure {structure.name!r} has shape {structure.mask.shape}, the tissue state {state.grid.shape}",
                "simulate the state of the same patient",
            )
    mask, diameter_mm = large_vessels(structures, slices)
    if not mask.any():
        return None
    return VesselBoundary(mask, diameter_m=diameter_mm * 1e-3, temperature_c=state.body_temperature_c)


def close_thermal_region(region: ThermalRegion, therapy: str) -> tuple[TissueState, StepResult]:
    """Write temperature, damage and perfusion shut-down back into a new state; the zone and its metrics."""
    state, context, slices = region.state, region.context, region.slices
    grid = state.grid
    new = state.copy()
    new.temperature_c[slices] = region.temperature_c
    damage = region.damage
    for name, values in damage.fields().items():
        if name not in new.damage:
            new.damage[name] = np.full(grid.shape, damage.neutral_value(name), dtype=np.float32)
        new.damage[name][slices] = values
    # perfusion stops where the tissue died (it stays stopped in later steps)
    factor = damage.perfusion_factor()
    new.perfusion_arterial_per_s[slices] *= factor
    new.perfusion_portal_per_s[slices] *= factor
    new.time_s = state.time_s + region.elapsed_s
    # running maximum temperature over all steps so far (NaN outside every crop: never heated)
    running_max = new.damage.setdefault("max_temperature_c", np.full(grid.shape, np.nan, dtype=np.float32))
    running_max[slices] = np.fmax(running_max[slices], region.peak_c)

    zone = np.zeros(grid.shape, dtype=bool)
    zone[slices] = damage.dead_mask(_zone_criterion(context.plan.damage_model))
    peak_full = np.full(grid.shape, np.nan, dtype=np.float32)
    peak_full[slices] = region.peak_c
    result = StepResult(index=0, therapy=therapy, label="")
    result.fields = {"max_temperature_c": np.nan_to_num(peak_full, nan=state.body_temperature_c), ABLATION_FIELD: zone}
    result.metrics = _zone_metrics(zone, region.peak_c, context, state)
    result.metrics.update(
        {"time_steps": float(region.steps), "time_step_s": float(region.dt_s), "duration_s": float(region.elapsed_s)}
    )
    return new, result


def held_time_mean(time_s: list[float], values: list[float], duration_s: float) -> float:
    """Time mean over [0, ``duration_s``] of a value held from each ``time_s`` to the next (a source re-solved at those
    times: the power it deposited, averaged over the step)."""
    times = [*time_s, duration_s]
    total = sum(v * max(0.0, min(times[n + 1], duration_s) - times[n]) for n, v in enumerate(values))
    return float(total / duration_s)


def zone_level(region: ThermalRegion) -> np.ndarray:
    """The zone criterion's continuous level on the state's grid (≥ 0 in the zone, −1 outside the crop): pass it to
    :func:`insitu.therapies.zone_geometry.zone_axes_mm` for sub-voxel axes."""
    level = np.full(region.state.grid.shape, -1.0, dtype=np.float32)
    level[region.slices] = region.damage.criterion_level(_zone_criterion(region.context.plan.damage_model))
    return level


def run_thermal_step(
    state: TissueState,
    context: StepContext,
    therapy: str,
    source_w_m3: np.ndarray,
    heating_s: float,
    cooldown_s: float = 0.0,
    dirichlet_mask: np.ndarray | None = None,
    dirichlet_temperature_c: float | np.ndarray | None = None,
) -> tuple[TissueState, StepResult]:
    """Heat with ``source_w_m3`` for ``heating_s``, then ``cooldown_s`` without it; returns the new state.

    ``source_w_m3`` and the Dirichlet arrays are on the state's grid.
    """
    active = source_w_m3 > 0
    if dirichlet_mask is not None:
        active = active | dirichlet_mask
    sub, slices = thermal_crop(state, context, active, heating_s + cooldown_s)
    held = None if dirichlet_mask is None else np.ascontiguousarray(dirichlet_mask[slices])
    held_t = dirichlet_temperature_c
    if isinstance(held_t, np.ndarray):
        held_t = np.ascontiguousarray(held_t[slices], dtype=np.float32)
    region = open_thermal_region(state, context, sub, slices, heating_s + cooldown_s, held, held_t)
    region.advance(heating_s, np.ascontiguousarray(source_w_m3[slices], dtype=np.float32))
    region.advance(cooldown_s)
    return close_thermal_region(region, therapy)


def _zone_criterion(plan_criterion: str) -> str:
    return "arrhenius" if plan_criterion.startswith("arrhenius:") else plan_criterion


def _zone_metrics(zone: np.ndarray, peak: np.ndarray, context: StepContext, state: TissueState) -> dict[str, float]:
    """Zone volume, peak temperature and each target's coverage (share of its voxels in the zone)."""
    grid = state.grid
    metrics = {
        "peak_temperature_c": float(peak.max()),
        "ablation_volume_ml": float(np.count_nonzero(zone)) * grid.voxel_volume_ml,
    }
    names = context.plan.targets or [t.name for t in context.patient.targets]
    for name in names:
        target = context.patient.structure(name).mask
        metrics[f"coverage_{name}"] = float(np.count_nonzero(zone & target)) / max(1, int(np.count_nonzero(target)))
    return metrics


def tissue_water_vaporization(context: StepContext, index: np.ndarray) -> PhaseChange:
    """Latent heat of tissue water over 99–100 °C in soft tissue (none in air and bone)."""
    library = context.library
    dry = [
        library.index_of("air"),
        *(library.index_of(n) for n in ("bone_cortical", "bone_cancellous") if n in library),
    ]
    table = np.full(len(library.names), VAPORIZATION_J_M3, np.float32)
    table[dry] = 0.0
    return PhaseChange(table[index], VAPORIZATION_START_C, VAPORIZATION_WIDTH_K)


def wall_face_factors(held: np.ndarray, fractions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1/θ on the faces between held (cooled metal) and free voxels, θ clamped at THERMAL_THETA_MIN; 1 elsewhere."""
    out = []
    for axis, theta in enumerate(fractions):
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        h = np.pad(held, pad)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        cut = h[tuple(lo)] != h[tuple(hi)]
        cut_faces = cut & (np.asarray(theta) < 1.0)
        factor = np.ones(theta.shape, np.float32)
        factor[cut_faces] = 1.0 / np.maximum(np.asarray(theta)[cut_faces], THERMAL_THETA_MIN)
        out.append(factor)
    return out[0], out[1], out[2]
