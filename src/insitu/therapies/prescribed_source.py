"""``prescribed_source``: a heat source given directly — a uniform sphere or a Gaussian — with a power
and a duration. For research (what would this power deposition do here?) and for the engine's tests.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from insitu.errors import PlanError
from insitu.grid import Grid
from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState


class PrescribedSourceProtocol(BaseModel):
    """Power deposited in a sphere (uniform) or a Gaussian blob centred on the placement point."""

    model_config = ConfigDict(extra="forbid")
    shape: Literal["sphere", "gaussian"] = "sphere"
    power_w: float = Field(gt=0.0, le=5000.0)
    duration_s: float = Field(gt=0.0, le=7200.0)
    cooldown_s: float = Field(default=0.0, ge=0.0, le=7200.0, description="source off, tissue keeps evolving")
    radius_mm: float = Field(default=5.0, gt=0.0, le=50.0, description="sphere radius")
    sigma_mm: float = Field(default=3.0, gt=0.0, le=50.0, description="Gaussian standard deviation")


protocol_model = PrescribedSourceProtocol


def source_field(grid: Grid, center_mm: tuple[float, float, float], protocol: PrescribedSourceProtocol) -> np.ndarray:
    """Volumetric source (W/m³, float32) whose integral over the grid is exactly ``power_w``."""
    reach = 3.0 * protocol.radius_mm if protocol.shape == "sphere" else 4.0 * protocol.sigma_mm
    sub, slices = grid.crop_to_box_mm(np.asarray(center_mm) - reach, np.asarray(center_mm) + reach)
    r = np.linalg.norm(sub.world_coordinates_mm(np.float64) - np.asarray(center_mm), axis=-1)
    if protocol.shape == "sphere":
        weight = (r <= protocol.radius_mm).astype(np.float64)
    else:
        weight = np.exp(-0.5 * (r / protocol.sigma_mm) ** 2)
    total = float(weight.sum()) * grid.voxel_volume_ml * 1e-6  # m³-weighted
    if total <= 0.0:
        raise PlanError(
            f"the {protocol.shape} source of radius {protocol.radius_mm} mm contains no voxel centre",
            "give a larger radius_mm than half the voxel spacing",
        )
    source = np.zeros(grid.shape, dtype=np.float32)
    source[slices] = (weight * (protocol.power_w / total)).astype(np.float32)
    return source


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Heat with the prescribed source for ``duration_s``, then let the tissue evolve for ``cooldown_s``."""
    from insitu.therapies.thermal import run_thermal_step

    protocol = PrescribedSourceProtocol.model_validate(step.protocol)
    source = source_field(state.grid, step.placement.point_mm, protocol)
    new_state, result = run_thermal_step(
        state,
        context,
        therapy=step.therapy,
        source_w_m3=source,
        heating_s=protocol.duration_s,
        cooldown_s=protocol.cooldown_s,
    )
    result.metrics["delivered_energy_j"] = protocol.power_w * protocol.duration_s
    return new_state, result
