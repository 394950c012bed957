"""``injection``: percutaneous chemical (ethanol, acetic acid) or gene-vector injection through a needle.

A step places a catalog needle (tip point + direction, or entry + target, in LPS mm) and gives a protocol: the agent
(a catalog agent), the volume and the infusion rate, optionally several injection points (the needle repositioned
along the same axis; the volume is split equally and injected one point after the other) and the exposure after
the infusion. The needle's outlets (one end hole, or the side holes of deployed tines) are the sources of a Darcy
flow through the tissue of the step's crop (:mod:`insitu.physics.porous_transport`): tumour and liver with their
hydraulic conductivities, a low-conductivity capsule on encapsulated tumours (HCC by default), the needle track behind
the tip (more permeable: the path of reflux), and p = 0 in vessel lumens, beyond the tissue surface and at the crop's
edge. The agent is carried and diffuses in the pore fluid, washes out with the local perfusion (which stops where
ethanol has killed the tissue) and acts: a lethal concentration–time dose → necrosis (ethanol, acetic acid), or
binding → transduced fraction of cells (gene vectors).

The new state carries the agent (``drug_mg_per_ml``, per tissue volume), the dose (``damage["chemical_omega"]``,
necrosis at ≥ 1, perfusion stopped there as the thermal therapies do) or the vector (``damage["transfected_fraction"]``,
``damage["vector_bound_per_ml"]``). The result gives the distribution volume (injectate fraction ever ≥ ½), the
necrosis or transduced volume, target coverage and where the agent went: kept in the targets, crossed into the
surrounding tissue (through the capsule), washed out, into vessels, back along the needle track (reflux), or out of
the tissue surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import ndimage

from insitu.devices.catalog import Device, device_for
from insitu.errors import PlanError, RegistryError
from insitu.grid import Grid
from insitu.patient.structure import Role
from insitu.physics.porous_transport import (
    HELD_BOUNDARY,
    HELD_TRACT,
    HELD_VESSEL,
    AgentModel,
    DarcyFlow,
    InjectionTransport,
    PorousData,
    PorousMedium,
    load_porous_media,
    source_weights,
    spherical_front_radius_m,
)
from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.placement import active_mask, axis_from_placement, check_path, to_physics_frame

INJECTION_THERAPY = "injection"
DEFAULT_EXPOSURE_S = 600.0  # the agent keeps acting (and washing out) this long after the infusion: a choice
NECROSIS_FIELD = "ablation_zone"  # the same name as the thermal zones, so evaluation treats them alike
DOSE_KEY = "chemical_omega"
TRANSFECTED_KEY = "transfected_fraction"
BOUND_KEY = "vector_bound_per_ml"
WETTED_FRACTION = 0.5  # a voxel is in the distribution volume once its pore fluid was ≥ half injectate
TRANSDUCED_ZONE = 0.5  # a voxel counts as transduced when half its cells are
# crop: the sharp-front radius of the whole volume in the least porous common tissue, times a safety factor, plus
# three diffusion lengths of the whole step, and at least the minimum
CROP_POROSITY = 0.15
CROP_FRONT_FACTOR = 1.6
CROP_MIN_MARGIN_MM = 10.0


class InjectionProtocol(BaseModel):
    """Agent, volume, rate, injection points and exposure of one injection step."""

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(description="catalog agent, e.g. ethanol-99.5, acetic-acid-50, adenovirus-1e11")
    volume_ml: float = Field(gt=0.0, le=100.0, description="total injected volume")
    rate_ml_min: float = Field(gt=0.0, le=60.0, description="infusion rate")
    injection_points_mm: list[tuple[float, float, float]] | None = Field(
        default=None, min_length=1, max_length=20, description="LPS points (default: the placement's tip)"
    )
    deployed_diameter_mm: float | None = Field(default=None, gt=0.0, le=100.0, description="tine needles only")
    exposure_s: float = Field(default=DEFAULT_EXPOSURE_S, ge=0.0, le=7200.0, description="after the infusion")
    capsule: bool | None = Field(default=None, description="capsule on the targets (default: by tumour tissue)")
    needle_tract: bool = Field(default=True, description="model the needle track as a reflux path")
    microvascular_drainage: bool = Field(default=False, description="linear Starling drainage L·p into capillaries")
    region_margin_mm: float | None = Field(default=None, gt=0.0, le=200.0, description="crop margin override")


protocol_model = InjectionProtocol


# ------------------------------------------------------------------------------------------------ devices
def injection_needle(name: str | None) -> Device:
    """The catalog needle ``name`` (an injection device that is not an agent)."""
    device = device_for(name, INJECTION_THERAPY, "injection", "injection needle")
    if device.kind == "agent":
        raise PlanError(
            f"{name!r} is an agent, not a needle", "give the needle as device and the agent in the protocol"
        )
    if device.parameters.get("outlets") not in ("end_hole", "tines"):
        raise RegistryError(
            f"needle {name!r} has outlets {device.parameters.get('outlets')!r}", "use end_hole or tines"
        )
    return device


def injection_agent(name: str) -> Device:
    """The catalog agent ``name``; one-line errors for unknown names (with close ones) and for needles."""
    import difflib

    from insitu.devices.catalog import load_catalog

    agents = {d.name: d for d in load_catalog() if d.therapy == INJECTION_THERAPY and d.kind == "agent"}
    if name not in agents:
        close = difflib.get_close_matches(name, list(agents), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise RegistryError(f"unknown injection agent {name!r}", f"{hint}known agents: {', '.join(sorted(agents))}")
    return agents[name]


def agent_model(agent: Device) -> AgentModel:
    return load_porous_media().agent(str(agent.parameters["agent_model"]))


def inlet_concentration(agent: Device, model: AgentModel) -> float:
    """Agent concentration in the injectate: a volume fraction (chemicals) or particles per m³ (vectors)."""
    if model.lethal:
        return float(agent.parameters["concentration_fraction"])
    return float(agent.parameters["particles_per_ml"]) * 1e6


def validate_protocol(step: Step) -> InjectionProtocol:
    """The step's protocol as the model; a one-line PlanError for a bad field (e.g. volume ≤ 0, negative rate)."""
    try:
        return InjectionProtocol.model_validate(step.protocol)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "protocol"
        raise PlanError(
            f"injection protocol {where}: {first['msg']}", "give volume_ml > 0 and rate_ml_min > 0 (see the schema)"
        ) from None


def check_protocol(needle: Device, protocol: InjectionProtocol) -> None:
    """The needle can run this: rate within its guard, a deployment within the tines' range."""
    max_rate = float(needle.parameters.get("max_rate_ml_min", math.inf))
    if protocol.rate_ml_min > max_rate:
        raise PlanError(
            f"rate {protocol.rate_ml_min:g} mL/min is above {max_rate:g} mL/min for {needle.name!r}",
            f"give rate_ml_min ≤ {max_rate:g}",
        )
    if protocol.deployed_diameter_mm is not None:
        if needle.parameters["outlets"] != "tines":
            raise PlanError(f"{needle.name!r} has no tines to deploy", "omit deployed_diameter_mm")
        lo = float(needle.parameters["min_deployed_diameter_mm"])
        hi = float(needle.parameters["max_deployed_diameter_mm"])
        if not lo <= protocol.deployed_diameter_mm <= hi:
            raise PlanError(
                f"deployed diameter {protocol.deployed_diameter_mm:g} mm is outside {lo:g}–{hi:g} mm",
                "give deployed_diameter_mm in the needle's range",
            )


def check_step(step: Step) -> None:
    """Plan-time checks: a known needle and agent, a rate and deployment the needle allows."""
    needle = injection_needle(step.device)
    protocol = validate_protocol(step)
    injection_agent(protocol.agent)
    check_protocol(needle, protocol)


# ------------------------------------------------------------------------------------------------ geometry
def _frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(direction)))]
    u = np.cross(direction, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(direction, u)


def outlet_points_mm(needle: Device, point_mm: np.ndarray, direction: np.ndarray, protocol: InjectionProtocol):
    """Outlets (LPS mm) of the needle with its tip at ``point_mm``: the tip (end hole), or the side holes of the tines.

    Tines (a modelling choice; the device's tine path was not read): straight from the tip to points a deployed
    radius off the axis and half a radius ahead, evenly around the axis; the side holes evenly along the distal half
    of each tine, the last at its end."""
    if needle.parameters["outlets"] == "end_hole":
        return np.asarray([point_mm], dtype=float)
    diameter = protocol.deployed_diameter_mm or float(needle.parameters["deployed_diameter_mm"])
    radius = diameter / 2.0
    u, v = _frame(direction)
    count = int(needle.parameters["tine_count"])
    holes = int(needle.parameters["side_holes_per_tine"])
    points = []
    for n in range(count):
        angle = 2.0 * math.pi * n / count
        end = point_mm + radius * (math.cos(angle) * u + math.sin(angle) * v) + 0.5 * radius * direction
        for k in range(holes):
            s = 0.5 + 0.5 * (k + 1) / holes
            points.append(point_mm + s * (end - point_mm))
    return np.asarray(points)


# ------------------------------------------------------------------------------------------------ the medium
@dataclass
class InjectionMedium:
    """The porous medium of a step's crop and the masks its bookkeeping needs."""

    medium: PorousMedium
    target: np.ndarray  # voxels of any plan target (crop)
    capsule: np.ndarray
    tract: np.ndarray


def _tables(data: PorousData, library) -> tuple[np.ndarray, ...]:
    names = library.names
    props = [data.tissue(n) for n in names]
    k = np.array([p.hydraulic_conductivity_m2_pa_s for p in props], np.float64)
    phi = np.array([p.porosity for p in props], np.float64)
    drain = np.array([p.microvascular_drainage_1_pa_s for p in props], np.float64)
    held = np.array([p.held for p in props], bool)
    return k, phi, drain, held


def build_medium(
    state: TissueState,
    context: StepContext,
    sub: Grid,
    slices: tuple[slice, ...],
    protocol: InjectionProtocol,
    tip_mm: np.ndarray,
    direction: np.ndarray,
) -> InjectionMedium:
    """K, φ, perfusion, drainage and held voxels of the crop: tissue tables, vessels, capsule, needle track, edges."""
    data = load_porous_media()
    library = context.library
    index = state.tissue_index[slices]
    k_table, phi_table, drain_table, held_table = _tables(data, library)
    k = k_table[index]
    phi = phi_table[index]
    drain = drain_table[index]
    held = held_table[index].copy()
    kind = np.full(index.shape, HELD_BOUNDARY, np.int8)
    blood = index == library.index_of("blood") if "blood" in library else np.zeros(index.shape, bool)
    target = np.zeros(index.shape, bool)
    capsule = np.zeros(index.shape, bool)
    spacing_m = np.asarray(sub.spacing_kji_mm) * 1e-3
    h = float(np.mean(spacing_m))
    for structure in context.patient.structures.values():
        mask = structure.mask[slices]
        if structure.role is Role.VESSEL:
            blood |= mask
        elif structure.role is Role.TARGET:
            target |= mask
            wants = structure.tissue in data.capsule_tissues if protocol.capsule is None else protocol.capsule
            if wants and mask.any():
                shell = mask & ~ndimage.binary_erosion(mask, border_value=1)
                capsule |= shell
    held |= blood
    kind[blood] = HELD_VESSEL
    # the capsule layer: the series resistance of the capsule's thickness and the rest of the voxel of tumour
    t = min(data.capsule_thickness_m, h)
    shell = capsule & ~held
    if shell.any():
        k[shell] = h / (t / data.capsule_conductivity_m2_pa_s + (h - t) / np.maximum(k[shell], 1e-30))
        phi[shell] = (t * data.capsule_porosity + (h - t) * phi[shell]) / h
    # the crop's outer layer: the truncation, where the fluid leaves
    edge = np.zeros(index.shape, bool)
    edge[[0, -1]] = True
    edge[:, [0, -1]] = True
    edge[:, :, [0, -1]] = True
    held |= edge
    # the needle track: from the tip back along the shaft until it reaches a held voxel (its exit)
    tract = np.zeros(index.shape, bool)
    if protocol.needle_tract:
        step_mm = 0.5 * min(sub.spacing_mm)
        distance = 0.0
        while True:
            point = tip_mm - distance * direction
            if not bool(sub.contains_world(point)):
                break
            kk, jj, ii = sub.world_to_kji(point)
            if held[kk, jj, ii]:
                if kind[kk, jj, ii] == HELD_BOUNDARY:
                    kind[kk, jj, ii] = HELD_TRACT
                break
            tract[kk, jj, ii] = True
            distance += step_mm
        k[tract] *= data.tract_conductivity_factor
    perfusion = np.asarray(state.perfusion_per_s[slices], dtype=np.float64)
    medium = PorousMedium(
        conductivity_m2_pa_s=k.astype(np.float32),
        porosity=np.where(held, 1.0, phi),
        spacing_m=tuple(float(s) for s in spacing_m),
        held=held,
        held_kind=np.where(held, kind, HELD_BOUNDARY).astype(np.int8),
        perfusion_1_s=perfusion,
        drainage_1_pa_s=drain,
    )
    return InjectionMedium(medium, target & ~held, capsule & ~held, tract)


# ------------------------------------------------------------------------------------------------ the run
def _crop(state, protocol, outlets_mm, model: AgentModel, total_s: float) -> tuple[Grid, tuple[slice, ...]]:
    if protocol.region_margin_mm is not None:
        margin_mm = protocol.region_margin_mm
    else:
        front_mm = spherical_front_radius_m(protocol.volume_ml * 1e-6, CROP_POROSITY) * 1e3
        diffusion_mm = 3.0 * math.sqrt(model.diffusion_m2_s * total_s) * 1e3
        margin_mm = max(CROP_MIN_MARGIN_MM, CROP_FRONT_FACTOR * front_mm + diffusion_mm)
    active = active_mask(state.grid, np.vstack([outlets_mm.min(axis=0), outlets_mm.max(axis=0)]))
    return state.grid.crop_to_mask(active, margin_mm=margin_mm)


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Place the needle, infuse the agent point by point, let it act for the exposure, report where it went."""
    protocol = validate_protocol(step)
    label = f"step {step.label or step.therapy}"
    needle = injection_needle(step.device)
    agent = injection_agent(protocol.agent)
    check_protocol(needle, protocol)
    model = agent_model(agent)
    c_in = inlet_concentration(agent, model)
    tip_mm, direction = axis_from_placement(step)
    points = [tip_mm] if protocol.injection_points_mm is None else [np.asarray(p, float) for p in
                                                                     protocol.injection_points_mm]  # fmt: skip
    for point in points:
        check_path(state, context, point, direction, label)
    outlets = [outlet_points_mm(needle, point, direction, protocol) for point in points]
    all_outlets = np.vstack(outlets)
    if not bool(np.all(state.grid.contains_world(all_outlets))):
        raise PlanError(f"{label}: a tine outlet lies outside the image", "deploy the tines less or move the needle")
    point_s = protocol.volume_ml / len(points) / protocol.rate_ml_min * 60.0
    infusion_s = point_s * len(points)
    total_s = infusion_s + protocol.exposure_s
    sub, slices = _crop(state, protocol, all_outlets, model, total_s)
    built = build_medium(state, context, sub, slices, protocol, tip_mm, direction)
    medium = built.medium
    vol_m3 = medium.voxel_volume_m3

    prior_dose = state.damage.get(DOSE_KEY)
    prior_bound = state.damage.get(BOUND_KEY)
    transport = InjectionTransport(
        medium, model,
        dose=None if prior_dose is None or not model.lethal else prior_dose[slices],
        bound_per_m3=None if prior_bound is None or model.lethal else prior_bound[slices] * 1e6,
    )  # fmt: skip
    flow = DarcyFlow(medium, drainage=protocol.microvascular_drainage)
    q = protocol.rate_ml_min * 1e-6 / 60.0
    report = context.progress
    iterations = 0
    for n, point_outlets in enumerate(outlets):
        weights = np.zeros(medium.shape)
        for outlet in to_physics_frame(sub, point_outlets):
            weights += source_weights(medium.shape, medium.spacing_m, outlet, medium.held)
        solution = flow.solve(q * weights / len(point_outlets))
        iterations += solution.info.iterations
        begin = n * point_s

        def tick(f: float, begin: float = begin) -> None:
            report("injection", min(1.0, (begin + f * point_s) / max(total_s, 1e-9)), "infusion")

        transport.advance(point_s, solution, c_in, progress=tick)
    dt_infusion = infusion_s / max(transport.steps, 1)
    wetted = transport.peak >= WETTED_FRACTION * c_in
    steps_infusion = transport.steps

    def tock(f: float) -> None:
        report("injection", (infusion_s + f * protocol.exposure_s) / max(total_s, 1e-9), "exposure")

    transport.advance(protocol.exposure_s, None, 0.0, progress=tock)

    # ---- the new state
    new = state.copy()
    grid = state.grid
    free = ~medium.held
    amount = transport.tissue_amount_per_m3()  # agent per tissue volume (m³/m³ or particles/m³)
    mg_per_ml = amount * model.density_kg_m3 if model.lethal else amount * model.particle_mass_mg * 1e-6
    new.drug_mg_per_ml[slices] += np.where(free, mg_per_ml, 0.0).astype(np.float32)
    result = StepResult(index=0, therapy=step.therapy, label="")
    fraction = (transport.peak / c_in).astype(np.float32)
    injectate = np.zeros(grid.shape, np.float32)
    injectate[slices] = fraction
    result.fields = {"injectate_fraction": injectate}
    voxel_ml = grid.voxel_volume_ml
    names = context.plan.targets or [t.name for t in context.patient.targets]
    metrics: dict[str, float] = {}
    if model.lethal:
        dose = new.damage.setdefault(DOSE_KEY, np.zeros(grid.shape, np.float32))
        dose[slices] = transport.dose.astype(np.float32)
        dead = np.zeros(grid.shape, bool)
        dead[slices] = (transport.dose >= 1.0) & free
        new.perfusion_arterial_per_s[dead] = 0.0  # thrombosed and necrotic: no flow in later steps
        new.perfusion_portal_per_s[dead] = 0.0
        result.fields[NECROSIS_FIELD] = dead
        result.fields[DOSE_KEY] = dose.copy()
        necrosis_ml = float(np.count_nonzero(dead)) * voxel_ml
        metrics["necrosis_volume_ml"] = necrosis_ml
        metrics["necrosis_diameter_mm"] = 10.0 * (6.0 * necrosis_ml / math.pi) ** (1.0 / 3.0)
        for name in names:
            mask = context.patient.structure(name).mask
            metrics[f"coverage_{name}"] = float(np.count_nonzero(dead & mask)) / max(1, int(np.count_nonzero(mask)))
    else:
        transduced = transport.transduced_fraction()
        tf = new.damage.setdefault(TRANSFECTED_KEY, np.zeros(grid.shape, np.float32))
        tf[slices] = np.where(free, transduced, tf[slices])
        bound = new.damage.setdefault(BOUND_KEY, np.zeros(grid.shape, np.float32))
        bound[slices] = (transport.bound / vol_m3 * 1e-6).astype(np.float32)
        zone = np.zeros(grid.shape, bool)
        zone[slices] = (transduced >= TRANSDUCED_ZONE) & free
        result.fields["transduced_zone"] = zone
        result.fields[TRANSFECTED_KEY] = tf.copy()
        metrics["transduced_volume_ml"] = float(np.count_nonzero(zone)) * voxel_ml
        metrics["transduced_cells"] = float(np.sum(transduced[free], dtype=np.float64)) * vol_m3 * model.cells_per_m3
        for name in names:
            mask = context.patient.structure(name).mask
            metrics[f"coverage_{name}"] = float(np.count_nonzero(zone & mask)) / max(1, int(np.count_nonzero(mask)))
            metrics[f"transfected_fraction_{name}"] = float(np.mean(tf[mask], dtype=np.float64)) if mask.any() else 0.0
    new.time_s = state.time_s + total_s

    # ---- where the agent went (fractions of the injected amount; they add up to 1)
    budget = transport.budget
    injected = max(budget.injected, 1e-300)
    in_target = built.target
    prior_amount = 0.0 if prior_bound is None or model.lethal else prior_bound[slices] * 1e6 * vol_m3
    bound_new = transport.bound - prior_amount
    target_amount = float(transport.m[in_target].sum() + bound_new[in_target].sum())
    outside_amount = float(transport.m[free & ~in_target].sum() + bound_new[free & ~in_target].sum())
    washed_outside = float(transport.washed[free & ~in_target].sum())
    held_total = sum(budget.held.values())
    metrics.update(
        {
            "volume_ml": protocol.volume_ml,
            "rate_ml_min": protocol.rate_ml_min,
            "injection_points": float(len(points)),
            "outlets": float(len(all_outlets)),
            "infusion_s": infusion_s,
            "exposure_s": protocol.exposure_s,
            "duration_s": total_s,
            "distribution_volume_ml": float(np.count_nonzero(wetted & free)) * voxel_ml,
            "injected_agent": budget.injected,
            "target_fraction": target_amount / injected,
            "outside_fraction": outside_amount / injected,
            "washout_fraction": budget.washed_out / injected,
            "vessel_fraction": budget.held["vessel"] / injected,
            "reflux_fraction": budget.held["tract"] / injected,
            "boundary_fraction": budget.held["boundary"] / injected,
            "leak_fraction": (outside_amount + washed_outside + held_total) / injected,
            "mass_balance_error": budget.balance_error,
            "peak_pressure_kpa": transport.peak_pressure_pa * 1e-3,
            "darcy_iterations": float(iterations),
            "time_steps": float(transport.steps),
            "infusion_time_steps": float(steps_infusion),
            "infusion_time_step_s": dt_infusion,
            "region_voxels": float(np.prod(medium.shape)),
            "capsule_voxels": float(np.count_nonzero(built.capsule)),
            "tract_voxels": float(np.count_nonzero(built.tract)),
        }
    )
    result.metrics = metrics
    report("injection", 1.0, "done")
    return new, result
