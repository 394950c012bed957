"""Interstitial injection: Darcy flow from a needle's outlets, advection–diffusion of the agent, washout, effect.

**Flow.** The injectate enters the tissue's interstitial (pore) space. With a rigid matrix and an incompressible
fluid the pressure is quasi-steady while the infusion rate is constant:

    −∇·(K ∇p) + L·p = q,        Darcy flux u = −K ∇p  (m/s),

K the hydraulic conductivity (m² Pa⁻¹ s⁻¹; tumour, liver, a low-K capsule, a more permeable needle track), L the
optional microvascular drainage Lp·S/V (Pa⁻¹ s⁻¹) and q the volumetric source (1/s). Fluid leaves through held
(p = 0) voxels: the vessel lumen, air or free fluid beyond the tissue surface, the end of the needle track, and the
crop's outer layer. The pressure is solved on the engine's matrix-free multigrid (:mod:`insitu.physics.multigrid`),
warm-started between injection points. The outlet is sub-voxel: its rate is spread over a small sphere (radius
:data:`SOURCE_RADIUS_VOXELS` voxels, tent weights) whose monopole is the outlet's, so beyond it the field is the point
source's q/(4πK r) up to the discretisation (verified with a measured order of convergence), and no single voxel takes
the whole inflow (which would cut the explicit step below).

**Transport.** The agent concentration c in the pore fluid (a volume fraction for ethanol and acetic acid, particles
per m³ for a gene vector) obeys, per voxel of volume V and porosity φ,

    d(φVc)/dt = Σ_faces F·c_face + Σ_faces G·Δc + q·c_in − (ω_eff·E + L·p)·V·c − k_b·φV·c,

F the face fluid fluxes of the discrete Darcy solution (the same face conductances as the pressure operator, so
Σ F balances the sources to solver tolerance), c_face a MUSCL reconstruction with the van Leer limiter (TVD),
G = harmonic-mean φD·A/h the diffusive conductance, ω_eff the Pennes perfusion (stopping where the tissue died:
ethanol thromboses small vessels), E the agent's perfusion extraction and k_b a binding rate (gene vectors). The
update is **explicit** (Heun / SSP-RK2 at CFL 0.4 on the voxel's outflow): the front is advection-dominated
(Péclet ≫ 1 everywhere but at the very edge), an explicit TVD scheme keeps it sharp and bounded (0 ≤ c ≤ c_in) with
mass conserved to round-off, and the step it needs is set only by the few voxels next to the outlet. An implicit
upwind step would allow large steps but smear the front over many voxels, which is exactly the quantity (the
distribution volume) the model must get right. The losses (washout, drainage, binding) are integrated exactly over
the step (exponential), so they never limit it. After the infusion the flow stops and the agent keeps diffusing,
washing out and acting for the exposure time.

**Effect.** Ethanol and acetic acid: a concentration–time dose Ω = ∫ (c/c_ref)ⁿ / t_ref dt, necrosis at Ω ≥ 1, the
power law fitted to in vitro kill times (Tapani et al. 1996). Gene vectors: particles bind at rate k_b; the transduced
fraction of cells is 1 − exp(−bound / (cells × particles per infectious unit)) (Poisson). Every constant lives in
``porous_media.yaml`` with its source and status.

Limits (stated, not hidden): the matrix is rigid (no tissue dilation or fracture, so the pressures reported are those
of rigid tissue and can be unphysically high at clinical rates), the injectate and the pore fluid mix ideally, the
agent does not change K or φ, and cells take up ethanol only through the pore-fluid concentration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numba
import numpy as np
import yaml

from insitu.errors import PhysicsError
from insitu.physics.multigrid import EllipticOperator, MultigridSolver, SolveInfo, _faces

__all__ = [
    "AgentModel",
    "DarcyFlow",
    "DarcySolution",
    "InjectionTransport",
    "PorousData",
    "PorousMedium",
    "load_porous_media",
    "point_source_pressure_pa",
    "source_weights",
    "spherical_front_radius_m",
    "verify_point_source",
    "verify_spherical_front",
]

DATA_FILE = Path(__file__).with_name("porous_media.yaml")
# serial kernels: an injection's crop is small (≤ ~10⁵ voxels) and the machines are shared; under load a parallel
# kernel's barrier costs more than the loop (measured: 15 ms vs 0.1 ms for a 24³ update with 2 threads, load 11)
_SER = {"cache": True, "fastmath": False, "error_model": "numpy"}

SOURCE_RADIUS_VOXELS = 2.0  # outlet rate spread over a ball of this radius (tent weights): see the module text
CFL = 0.4  # fraction of a voxel's pore volume its outflow may replace per step (Heun + van Leer: TVD below 0.5)
FLUSH_FRACTION = 1e-20  # amounts below this fraction of a voxel's full load are set to 0 (subnormal guard)
HELD_CONDUCTIVITY_FACTOR = 1.0e3  # a held voxel's K relative to the largest tissue K: its face conducts 2·K_free·A/h
BOLTZMANN_J_K = 1.380649e-23  # exact (SI 2019)
KELVIN = 273.15

# kinds of held voxels, for the agent budget
HELD_BOUNDARY, HELD_VESSEL, HELD_TRACT = 0, 1, 2
HELD_KINDS = ("boundary", "vessel", "tract")


# ----------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class TissuePorous:
    """Porous properties of one tissue (SI); ``held``: a free-fluid compartment at p = 0."""

    hydraulic_conductivity_m2_pa_s: float
    porosity: float
    microvascular_drainage_1_pa_s: float
    held: bool = False


@dataclass(frozen=True)
class AgentModel:
    """Transport and effect of one agent: effective tissue diffusivity at 37 °C, perfusion extraction, and either a
    lethal concentration–time law (``effect == "lethal_dose"``) or a binding/transduction model (``"transfection"``)."""

    name: str
    effect: str
    diffusion_m2_s: float
    perfusion_extraction: float
    density_kg_m3: float = float("nan")
    lethal_c_ref: float = float("nan")  # concentration (volume fraction) that kills in lethal_t_ref_s
    lethal_t_ref_s: float = float("nan")
    lethal_exponent: float = float("nan")
    binding_rate_1_s: float = 0.0
    particles_per_infectious_unit: float = float("nan")
    cells_per_m3: float = float("nan")
    particle_mass_mg: float = float("nan")

    @property
    def lethal(self) -> bool:
        return self.effect == "lethal_dose"

    def time_to_kill_s(self, concentration: float | np.ndarray) -> float | np.ndarray:
        """Exposure at a constant concentration that gives Ω = 1: t_ref·(c/c_ref)^−n (inf at c = 0)."""
        if not self.lethal:
            raise PhysicsError(f"agent {self.name!r} has no lethal dose", "use an ethanol or acetic acid agent")
        c = np.asarray(concentration, dtype=float)
        with np.errstate(divide="ignore"):
            return self.lethal_t_ref_s * (c / self.lethal_c_ref) ** (-self.lethal_exponent)


@dataclass(frozen=True)
class PorousData:
    """Everything in ``porous_media.yaml``, parsed and with the derived numbers computed."""

    tissues: dict[str, TissuePorous]
    default: TissuePorous
    capsule_conductivity_m2_pa_s: float
    capsule_thickness_m: float
    capsule_porosity: float
    capsule_tissues: tuple[str, ...]
    tract_conductivity_factor: float
    agents: dict[str, AgentModel]
    sources: dict[str, str]

    def tissue(self, name: str) -> TissuePorous:
        """The tissue's porous properties (the default soft tissue's when it is not listed)."""
        return self.tissues.get(name, self.default)

    def agent(self, name: str) -> AgentModel:
        if name not in self.agents:
            raise PhysicsError(f"unknown agent model {name!r}", f"use one of {', '.join(sorted(self.agents))}")
        return self.agents[name]


def _v(entry: Any, what: str) -> Any:
    if not isinstance(entry, dict) or "value" not in entry or "source" not in entry or "status" not in entry:
        raise PhysicsError(f"porous_media.yaml: {what} lacks value, source or status", "complete the entry")
    return entry["value"]


def _tissue_entry(entry: dict, what: str) -> TissuePorous:
    if entry.get("held"):
        return TissuePorous(0.0, 1.0, 0.0, held=True)
    return TissuePorous(
        float(_v(entry["hydraulic_conductivity_m2_pa_s"], f"{what}.hydraulic_conductivity_m2_pa_s")),
        float(_v(entry["porosity"], f"{what}.porosity")),
        float(_v(entry["microvascular_drainage_1_pa_s"], f"{what}.microvascular_drainage_1_pa_s")),
    )


def _agent_entry(name: str, entry: dict, raw: dict) -> AgentModel:
    """Derived numbers: D_tissue at 37 °C from D_water(25 °C) by Stokes–Einstein scaling (T/μ) and the tortuosity
    (small molecules) or from the particle diameter and a hindrance factor (vectors); the lethal power law through the
    two kill points."""
    mu25 = float(_v(raw["water_viscosity_25c_pa_s"], "water_viscosity_25c_pa_s"))
    mu37 = float(_v(raw["water_viscosity_37c_pa_s"], "water_viscosity_37c_pa_s"))
    t37 = KELVIN + 37.0
    effect = entry["effect"]
    extraction = float(_v(entry["perfusion_extraction"], f"{name}.perfusion_extraction"))
    if effect == "lethal_dose":
        tortuosity = float(_v(raw["tissue_tortuosity"], "tissue_tortuosity"))
        d25 = float(_v(entry["diffusion_water_25c_m2_s"], f"{name}.diffusion_water_25c_m2_s"))
        d_tissue = d25 * (t37 / (KELVIN + 25.0)) * (mu25 / mu37) / tortuosity**2
        c_hi, t_hi = (float(x) for x in _v(entry["lethal_point_high"], f"{name}.lethal_point_high"))
        c_lo, t_lo = (float(x) for x in _v(entry["lethal_point_low"], f"{name}.lethal_point_low"))
        exponent = math.log(t_lo / t_hi) / math.log(c_hi / c_lo)
        potency = float(_v(entry["potency_factor"], f"{name}.potency_factor"))
        return AgentModel(
            name, effect, d_tissue, extraction,
            density_kg_m3=float(_v(entry["density_kg_m3"], f"{name}.density_kg_m3")),
            lethal_c_ref=c_hi / potency, lethal_t_ref_s=t_hi, lethal_exponent=exponent,
        )  # fmt: skip
    if effect == "transfection":
        diameter = float(_v(entry["particle_diameter_m"], f"{name}.particle_diameter_m"))
        d_water = BOLTZMANN_J_K * t37 / (3.0 * math.pi * mu37 * diameter)
        return AgentModel(
            name, effect, d_water * float(_v(entry["hindrance_factor"], f"{name}.hindrance_factor")), extraction,
            binding_rate_1_s=float(_v(entry["binding_rate_1_s"], f"{name}.binding_rate_1_s")),
            particles_per_infectious_unit=float(_v(entry["particles_per_infectious_unit"], f"{name}.ppiu")),
            cells_per_m3=float(_v(entry["cells_per_m3"], f"{name}.cells_per_m3")),
            particle_mass_mg=float(_v(entry["particle_mass_mg"], f"{name}.particle_mass_mg")),
        )  # fmt: skip
    raise PhysicsError(f"porous_media.yaml: agent {name!r} has effect {effect!r}", "use lethal_dose or transfection")


@cache
def load_porous_media(path: str | None = None) -> PorousData:
    """Parse ``porous_media.yaml`` (cached); every entry must name a listed source."""
    file = Path(path) if path else DATA_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PhysicsError(f"cannot read {file.name} ({exc})", "restore the data file") from None
    sources = dict(raw["sources"])

    def check_sources(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "source" in node and node["source"] not in sources:
                raise PhysicsError(f"{file.name}: {where} cites unknown source {node['source']!r}", "add it")
            for key, value in node.items():
                check_sources(value, f"{where}.{key}")

    check_sources({k: v for k, v in raw.items() if k != "sources"}, file.stem)
    capsule = raw["capsule"]
    return PorousData(
        tissues={name: _tissue_entry(entry, name) for name, entry in raw["tissues"].items()},
        default=_tissue_entry(raw["default_soft_tissue"], "default_soft_tissue"),
        capsule_conductivity_m2_pa_s=float(_v(capsule["hydraulic_conductivity_m2_pa_s"], "capsule.K")),
        capsule_thickness_m=float(_v(capsule["thickness_mm"], "capsule.thickness_mm")) * 1e-3,
        capsule_porosity=float(_v(capsule["porosity"], "capsule.porosity")),
        capsule_tissues=tuple(_v(capsule["tissues"], "capsule.tissues")),
        tract_conductivity_factor=float(_v(raw["needle_tract"]["conductivity_factor"], "needle_tract")),
        agents={name: _agent_entry(name, entry, raw) for name, entry in raw["agents"].items()},
        sources=sources,
    )


# ----------------------------------------------------------------------------------------------------- analytic
def point_source_pressure_pa(rate_m3_s: float, conductivity_m2_pa_s: float, r_m: np.ndarray | float) -> np.ndarray:
    """Steady pressure around a point source in an infinite uniform medium: p = q / (4πK r)."""
    return rate_m3_s / (4.0 * math.pi * conductivity_m2_pa_s * np.asarray(r_m, dtype=float))


def spherical_front_radius_m(volume_m3: float, porosity: float) -> float:
    """Radius of the sphere whose pore space holds ``volume_m3``: φ·(4/3)πR³ = V (sharp front, no loss)."""
    return (3.0 * volume_m3 / (4.0 * math.pi * porosity)) ** (1.0 / 3.0)


# ----------------------------------------------------------------------------------------------------- medium
@dataclass
class PorousMedium:
    """The tissue on one voxel grid (arrays [k, j, i], SI): K, porosity, perfusion, optional microvascular drainage,
    and the held voxels (p = 0; the agent that reaches them has left) with their kind (HELD_BOUNDARY, …)."""

    conductivity_m2_pa_s: np.ndarray
    porosity: np.ndarray
    spacing_m: tuple[float, float, float]
    held: np.ndarray
    held_kind: np.ndarray | None = None
    perfusion_1_s: np.ndarray | float = 0.0
    drainage_1_pa_s: np.ndarray | float = 0.0

    def __post_init__(self) -> None:
        k = np.ascontiguousarray(self.conductivity_m2_pa_s, dtype=np.float32)
        shape = k.shape
        if k.ndim != 3:
            raise PhysicsError(f"conductivity has shape {shape}", "give a volume indexed [k, j, i]")
        h = tuple(float(s) for s in self.spacing_m)
        if len(h) != 3 or not all(math.isfinite(s) and s > 0 for s in h):
            raise PhysicsError(f"spacing_m {self.spacing_m!r}", "give (dz, dy, dx) in metres")
        self.spacing_m = h  # type: ignore[assignment]
        held = np.asarray(self.held)
        if held.shape != shape or held.dtype != np.bool_:
            raise PhysicsError(f"held is {held.dtype} {held.shape}, the grid {shape}", "give a boolean mask")
        if not held.any():
            raise PhysicsError("no voxel is held at p = 0, so the injected fluid cannot leave", "hold the outer layer")
        phi = np.ascontiguousarray(np.broadcast_to(self.porosity, shape), dtype=np.float64)
        free = ~held
        if not (np.all(np.isfinite(k)) and np.all(k[free] >= 0)):
            raise PhysicsError("hydraulic conductivity has negative or non-finite values", "give K ≥ 0 in m²/(Pa·s)")
        if not (np.all(phi[free] > 0) and np.all(phi[free] <= 1)):
            raise PhysicsError("porosity outside (0, 1] in a free voxel", "give porosities in (0, 1]")
        kmax = float(k[free].max(initial=0.0))
        if kmax <= 0:
            raise PhysicsError("every free voxel has K = 0", "give the tissue a hydraulic conductivity")
        k = k.copy()
        k[held] = HELD_CONDUCTIVITY_FACTOR * kmax
        self.conductivity_m2_pa_s = k
        self.porosity = phi
        self.held = np.ascontiguousarray(held)
        kind = np.zeros(shape, np.int8) if self.held_kind is None else np.asarray(self.held_kind, dtype=np.int8)
        if kind.shape != shape or kind.min() < 0 or kind.max() >= len(HELD_KINDS):
            raise PhysicsError("held_kind is not a volume of 0…2", "give HELD_BOUNDARY, HELD_VESSEL or HELD_TRACT")
        self.held_kind = np.ascontiguousarray(kind)
        for name in ("perfusion_1_s", "drainage_1_pa_s"):
            value = np.ascontiguousarray(np.broadcast_to(getattr(self, name), shape), dtype=np.float64)
            if not (np.all(np.isfinite(value)) and np.all(value >= 0)):
                raise PhysicsError(f"{name} has negative or non-finite values", f"give {name} ≥ 0")
            setattr(self, name, value)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.conductivity_m2_pa_s.shape  # type: ignore[return-value]

    @property
    def voxel_volume_m3(self) -> float:
        return self.spacing_m[0] * self.spacing_m[1] * self.spacing_m[2]


def source_weights(
    shape: Sequence[int], spacing_m: Sequence[float], point_m: Sequence[float], held: np.ndarray | None = None
) -> np.ndarray:
    """Weights (sum 1, float64) spreading an outlet at ``point_m`` ((z, y, x) m in the voxel-centre frame) over the
    free voxels within SOURCE_RADIUS_VOXELS·h: w ∝ 1 − r/a (a tent; smooth in the point's position), with the
    centroid at the point (monopole and dipole of the point source exact)."""
    h = np.asarray(spacing_m, dtype=float)
    p = np.asarray(point_m, dtype=float)
    a = SOURCE_RADIUS_VOXELS * float(h.max())
    lo = np.maximum(np.floor((p - a) / h).astype(int), 0)
    hi = np.minimum(np.ceil((p + a) / h).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        raise PhysicsError(f"outlet at {tuple(np.round(p * 1e3, 2))} mm lies outside the grid", "move it inside")
    idx = np.meshgrid(*(np.arange(lo[d], hi[d]) for d in range(3)), indexing="ij")
    r = np.sqrt(sum(((idx[d] * h[d]) - p[d]) ** 2 for d in range(3)))
    w = np.maximum(1.0 - r / a, 0.0)
    if held is not None:
        w = w * ~held[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    total = w.sum()
    if total <= 0:
        raise PhysicsError("the outlet lies inside held voxels (vessel, air or the grid edge)", "move it into tissue")
    # a linear correction w(1 + b·d) puts the weights' centroid exactly on the point (a sampled tent is off by a few
    # hundredths of a voxel: a dipole, an O(h) error in the far field); kept only while every weight stays ≥ 0
    d = [idx[n] * h[n] - p[n] for n in range(3)]
    moment = np.array([[np.sum(w * d[a] * d[b]) for b in range(3)] for a in range(3)])
    first = np.array([np.sum(w * d[a]) for a in range(3)])
    if np.linalg.cond(moment) < 1e8:
        b = -np.linalg.solve(moment, first)
        corrected = w * (1.0 + b[0] * d[0] + b[1] * d[1] + b[2] * d[2])
        if np.all(corrected >= 0):
            w = corrected
            total = w.sum()
    out = np.zeros(tuple(shape), dtype=np.float64)
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = w / total
    return out


# ----------------------------------------------------------------------------------------------------- flow
@dataclass
class DarcySolution:
    """Pressure (Pa, float32), face fluid fluxes (m³/s, +axis direction, float64, layout of the multigrid faces), the
    source (m³/s per voxel) and the solve's record."""

    pressure_pa: np.ndarray
    flux_z: np.ndarray
    flux_y: np.ndarray
    flux_x: np.ndarray
    source_m3_s: np.ndarray
    info: SolveInfo
    drainage: bool = False  # whether the solve included microvascular drainage L·p

    def outflow_m3_s(self) -> np.ndarray:
        """Fluid leaving each voxel through its faces (m³/s, ≥ 0)."""
        fz, fy, fx = self.flux_z, self.flux_y, self.flux_x
        out = np.maximum(fz[1:], 0.0) + np.maximum(-fz[:-1], 0.0)
        out += np.maximum(fy[:, 1:], 0.0) + np.maximum(-fy[:, :-1], 0.0)
        out += np.maximum(fx[:, :, 1:], 0.0) + np.maximum(-fx[:, :, :-1], 0.0)
        return out

    def divergence_m3_s(self) -> np.ndarray:
        """Net fluid leaving each voxel through its faces (m³/s)."""
        fz, fy, fx = self.flux_z, self.flux_y, self.flux_x
        return (fz[1:] - fz[:-1]) + (fy[:, 1:] - fy[:, :-1]) + (fx[:, :, 1:] - fx[:, :, :-1])


class DarcyFlow:
    """−∇·(K∇p) + L·p = q on a :class:`PorousMedium`, held voxels at p = 0; the multigrid hierarchy is built once and
    each solve warm-starts from the last (the infusion moves between points; the medium does not change)."""

    def __init__(self, medium: PorousMedium, drainage: bool = False, rtol: float = 1e-9) -> None:
        self.medium = medium
        self.rtol = float(rtol)
        self.drainage = bool(drainage)
        reaction = medium.drainage_1_pa_s * ~medium.held if drainage else 0.0
        self.operator = EllipticOperator(medium.conductivity_m2_pa_s, reaction, medium.spacing_m, medium.held, 0.0)
        self.solver = MultigridSolver(self.operator)
        n = medium.shape
        self._tz = np.zeros((n[0] + 1, n[1], n[2]), np.float32)
        self._ty = np.zeros((n[0], n[1] + 1, n[2]), np.float32)
        self._tx = np.zeros((n[0], n[1], n[2] + 1), np.float32)
        _faces(medium.conductivity_m2_pa_s, *medium.spacing_m, self._tz, self._ty, self._tx)
        for t, axis in ((self._tz, 0), (self._ty, 1), (self._tx, 2)):  # faces between two held voxels carry nothing
            both = _held_faces(medium.held, axis)
            t[both] = 0.0
        self._last: np.ndarray | None = None

    def solve(self, source_m3_s: np.ndarray) -> DarcySolution:
        """Pressure and face fluxes for the volumetric sources ``source_m3_s`` (m³/s per voxel, on free voxels)."""
        med = self.medium
        src = np.asarray(source_m3_s, dtype=np.float64)
        if src.shape != med.shape:
            raise PhysicsError(f"source has shape {src.shape}, the grid {med.shape}", "give the source on the grid")
        if np.any(src[med.held] != 0):
            raise PhysicsError("a source lies on held voxels", "spread outlets over free voxels (source_weights)")
        rhs = (src / med.voxel_volume_m3).astype(np.float32)
        pressure, info = self.solver.solve(rhs, x0=self._last, rtol=self.rtol, max_iterations=200)
        if not info.converged:
            raise PhysicsError(
                f"the Darcy pressure solve stopped at relative residual {info.residual:.2e}",
                "check for tissue regions sealed off by K = 0 (bone) around the outlet",
            )
        self._last = pressure
        p = pressure.astype(np.float64)
        p[med.held] = 0.0
        fz = np.zeros(self._tz.shape)
        fy = np.zeros(self._ty.shape)
        fx = np.zeros(self._tx.shape)
        fz[1:-1] = self._tz[1:-1] * (p[:-1] - p[1:])
        fy[:, 1:-1] = self._ty[:, 1:-1] * (p[:, :-1] - p[:, 1:])
        fx[:, :, 1:-1] = self._tx[:, :, 1:-1] * (p[:, :, :-1] - p[:, :, 1:])
        return DarcySolution(pressure, fz, fy, fx, src, info, self.drainage)


def _held_faces(held: np.ndarray, axis: int) -> np.ndarray:
    """Faces (layout of the multigrid face arrays) whose two voxels are both held (outer faces: False)."""
    pad = [(0, 0)] * 3
    pad[axis] = (1, 1)
    h = np.pad(held, pad)
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis] = slice(0, -1)
    hi[axis] = slice(1, None)
    out = h[tuple(lo)] & h[tuple(hi)]
    edge = [slice(None)] * 3
    for end in (0, -1):
        edge[axis] = end  # type: ignore[call-overload]
        out[tuple(edge)] = False
    return out


# ----------------------------------------------------------------------------------------------------- transport
@numba.njit(inline="always", **_SER)
def _van_leer(d_up: float, d_down: float) -> float:  # pragma: no cover - jit
    """van Leer limited slope: harmonic mean of the one-sided differences, 0 at extrema."""
    if d_up * d_down <= 0.0:
        return 0.0
    return 2.0 * d_up * d_down / (d_up + d_down)


@numba.njit(inline="always", **_SER)
def _muscl(f, g, c_ff_lo, c_lo, c_hi, c_ff_hi, ok_lo, ok_hi, held_lo, held_hi):  # pragma: no cover - jit
    """Agent flux from the lower to the upper voxel of a face: F·c_face (MUSCL, van Leer; 0 from a held voxel; first
    order where the far upwind voxel is missing or held) plus diffusion g·Δc."""
    if f >= 0.0:
        if held_lo:
            cf = 0.0
        else:
            cf = c_lo + 0.5 * _van_leer(c_lo - c_ff_lo, c_hi - c_lo) if ok_lo else c_lo
    else:
        if held_hi:
            cf = 0.0
        else:
            cf = c_hi + 0.5 * _van_leer(c_hi - c_ff_hi, c_lo - c_hi) if ok_hi else c_hi
    return f * cf + g * (c_lo - c_hi)


@numba.njit(**_SER)
def _face_fluxes(c, held, fz, fy, fx, gz, gy, gx, jz, jy, jx):  # pragma: no cover - jit
    """Agent flux through every inner face (+axis direction, per second); outer faces stay 0. Each face is computed
    once, so the update conserves the agent to round-off."""
    nk, nj, ni = c.shape
    for k in range(1, nk):
        kl, kh = max(k - 2, 0), min(k + 1, nk - 1)
        okl, okh = k >= 2, k + 1 <= nk - 1
        for j in range(nj):
            for i in range(ni):
                jz[k, j, i] = _muscl(
                    fz[k, j, i], gz[k, j, i], c[kl, j, i], c[k - 1, j, i], c[k, j, i], c[kh, j, i],
                    okl and not held[kl, j, i], okh and not held[kh, j, i], held[k - 1, j, i], held[k, j, i],
                )  # fmt: skip
    for k in range(nk):
        for j in range(1, nj):
            jl, jh = max(j - 2, 0), min(j + 1, nj - 1)
            okl, okh = j >= 2, j + 1 <= nj - 1
            for i in range(ni):
                jy[k, j, i] = _muscl(
                    fy[k, j, i], gy[k, j, i], c[k, jl, i], c[k, j - 1, i], c[k, j, i], c[k, jh, i],
                    okl and not held[k, jl, i], okh and not held[k, jh, i], held[k, j - 1, i], held[k, j, i],
                )  # fmt: skip
        for j in range(nj):
            for i in range(1, ni):
                il, ih = max(i - 2, 0), min(i + 1, ni - 1)
                jx[k, j, i] = _muscl(
                    fx[k, j, i], gx[k, j, i], c[k, j, il], c[k, j, i - 1], c[k, j, i], c[k, j, ih],
                    i >= 2 and not held[k, j, il], i + 1 <= ni - 1 and not held[k, j, ih], held[k, j, i - 1],
                    held[k, j, i],
                )  # fmt: skip


@numba.njit(**_SER)
def _gather(jz, jy, jx, held, kind, out, weight, loss_voxel, loss_kind):  # pragma: no cover - jit
    """out = net agent inflow per free voxel; weight × what flows from a free voxel into a held neighbour is added
    per voxel and per held kind (the agent that left the tissue; weight = the stage's share of the step)."""
    nk, nj, ni = held.shape
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if held[k, j, i]:
                    out[k, j, i] = 0.0
                    continue
                lo_z, hi_z = jz[k, j, i], jz[k + 1, j, i]
                lo_y, hi_y = jy[k, j, i], jy[k, j + 1, i]
                lo_x, hi_x = jx[k, j, i], jx[k, j, i + 1]
                out[k, j, i] = (lo_z - hi_z) + (lo_y - hi_y) + (lo_x - hi_x)
                lost = 0.0
                if k > 0 and held[k - 1, j, i] and lo_z < 0.0:
                    lost -= lo_z
                    loss_kind[kind[k - 1, j, i]] -= weight * lo_z
                if k < nk - 1 and held[k + 1, j, i] and hi_z > 0.0:
                    lost += hi_z
                    loss_kind[kind[k + 1, j, i]] += weight * hi_z
                if j > 0 and held[k, j - 1, i] and lo_y < 0.0:
                    lost -= lo_y
                    loss_kind[kind[k, j - 1, i]] -= weight * lo_y
                if j < nj - 1 and held[k, j + 1, i] and hi_y > 0.0:
                    lost += hi_y
                    loss_kind[kind[k, j + 1, i]] += weight * hi_y
                if i > 0 and held[k, j, i - 1] and lo_x < 0.0:
                    lost -= lo_x
                    loss_kind[kind[k, j, i - 1]] -= weight * lo_x
                if i < ni - 1 and held[k, j, i + 1] and hi_x > 0.0:
                    lost += hi_x
                    loss_kind[kind[k, j, i + 1]] += weight * hi_x
                loss_voxel[k, j, i] += weight * lost


@numba.njit(**_SER)
def _heun_stage(m0, m, r, s, dt, pv, held, first, out_m, out_c):  # pragma: no cover - jit
    """Stage 1: m1 = m0 + dt(r + s). Stage 2: m = ½m0 + ½(m1 + dt(r + s)). c = m / (φV) on free voxels."""
    nk, nj, ni = m0.shape
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if held[k, j, i]:
                    out_m[k, j, i] = 0.0
                    out_c[k, j, i] = 0.0
                    continue
                step = m[k, j, i] + dt * (r[k, j, i] + s[k, j, i])
                v = step if first else 0.5 * (m0[k, j, i] + step)
                out_m[k, j, i] = v
                out_c[k, j, i] = v / pv[k, j, i]


@numba.njit(**_SER)
def _react(m, c, pv, held, omega, extraction, drain_p, phi, kb, dt, lethal, c_ref, n_exp, t_ref, dose, washed, bound,
           peak, floor):  # pragma: no cover - jit  # fmt: skip
    """Exact exponential loss over dt: perfusion washout (ω·(1 − min(Ω, 1))·E/φ), microvascular drainage (L·p/φ) and
    binding (k_b); the lethal dose grows by the trapezoid of (c/c_ref)ⁿ/t_ref; the running peak of c. Amounts below
    ``floor`` are set to 0 (the far tails of the front would otherwise decay into subnormal numbers, which are ~100×
    slower to compute with); returns the amount so removed (kept in the budget)."""
    nk, nj, ni = m.shape
    flushed = 0.0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if held[k, j, i]:
                    continue
                c0 = c[k, j, i]
                alive = 1.0 - min(dose[k, j, i], 1.0) if lethal else 1.0
                lw = omega[k, j, i] * alive * extraction / phi[k, j, i] + drain_p[k, j, i] / phi[k, j, i]
                lam = lw + kb
                m0 = m[k, j, i]
                if abs(m0) < floor:
                    flushed += m0
                    m0 = 0.0
                    m[k, j, i] = 0.0
                if lam > 0.0 and m0 > 0.0:
                    m1 = m0 * math.exp(-lam * dt)
                    lost = m0 - m1
                    washed[k, j, i] += lost * (lw / lam)
                    bound[k, j, i] += lost * (kb / lam)
                    m[k, j, i] = m1
                c1 = m[k, j, i] / pv[k, j, i]
                c[k, j, i] = c1
                if lethal:
                    r0 = (max(c0, 0.0) / c_ref) ** n_exp
                    r1 = (max(c1, 0.0) / c_ref) ** n_exp
                    dose[k, j, i] += 0.5 * dt * (r0 + r1) / t_ref
                if c1 > peak[k, j, i]:
                    peak[k, j, i] = c1
    return flushed


@dataclass
class AgentBudget:
    """Where the injected agent went (amounts in the agent's unit: m³ of agent, or particles)."""

    injected: float = 0.0
    held: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HELD_KINDS, 0.0))
    washed_out: float = 0.0  # perfusion washout and microvascular drainage
    bound: float = 0.0  # bound to cells (vectors)
    in_tissue: float = 0.0  # free in the pore fluid now
    flushed: float = 0.0  # amounts below the subnormal guard set to 0 (~1e-20 of a voxel's full load each)

    @property
    def balance_error(self) -> float:
        """|injected − (in tissue + bound + washed out + left through held voxels)| / injected."""
        if self.injected <= 0:
            return 0.0
        accounted = self.in_tissue + self.bound + self.washed_out + sum(self.held.values()) + self.flushed
        return abs(self.injected - accounted) / self.injected


class InjectionTransport:
    """The agent on a :class:`PorousMedium`: advance it through infusion phases (a :class:`DarcySolution` and the
    injectate's agent concentration) and exposure phases (no flow). Fields are float64 working arrays on the grid."""

    def __init__(
        self,
        medium: PorousMedium,
        agent: AgentModel,
        dose: np.ndarray | None = None,
        bound_per_m3: np.ndarray | None = None,
        max_dt_s: float = 2.0,
    ) -> None:
        self.medium = medium
        self.agent = agent
        n = medium.shape
        vol = medium.voxel_volume_m3
        self.pore_volume_m3 = np.where(medium.held, 1.0, medium.porosity * vol)
        self.c = np.zeros(n)
        self.m = np.zeros(n)
        self.peak = np.zeros(n)
        self.dose = np.zeros(n) if dose is None else np.array(dose, dtype=np.float64)
        self.bound = np.zeros(n) if bound_per_m3 is None else np.array(bound_per_m3, dtype=np.float64) * vol
        self._bound0 = float(self.bound.sum())
        self.washed = np.zeros(n)  # per voxel: washed out + drained (agent units)
        self.lost_held = np.zeros(n)  # per voxel: what flowed from it into held neighbours
        self.budget = AgentBudget()
        self.max_dt_s = float(max_dt_s)
        self.elapsed_s = 0.0
        self.steps = 0
        self.peak_pressure_pa = 0.0
        # diffusive face conductances: harmonic mean of φD, cut at held voxels
        phid = (medium.porosity * agent.diffusion_m2_s * ~medium.held).astype(np.float32)
        self._g = (
            np.zeros((n[0] + 1, n[1], n[2]), np.float32),
            np.zeros((n[0], n[1] + 1, n[2]), np.float32),
            np.zeros((n[0], n[1], n[2] + 1), np.float32),
        )
        _faces(phid, *medium.spacing_m, *self._g)
        self._g = tuple(g.astype(np.float64) for g in self._g)
        self._zero_f = tuple(np.zeros_like(g) for g in self._g)
        self._work = [np.zeros(n) for _ in range(3)]
        self._faces = tuple(np.zeros_like(g) for g in self._g)
        self._loss_kind = np.zeros(len(HELD_KINDS))
        self._floor = 0.0  # amounts below this are flushed to 0 (set from the first inlet concentration)

    def _rhs(self, c, fz, fy, fx, out, weight: float) -> None:
        """out = net inflow per voxel; weight × the flow into held voxels goes to lost_held and the held budget."""
        med = self.medium
        jz, jy, jx = self._faces
        _face_fluxes(c, med.held, fz, fy, fx, *self._g, jz, jy, jx)
        _gather(jz, jy, jx, med.held, med.held_kind, out, weight, self.lost_held, self._loss_kind)

    def _diffusion_capacity(self) -> np.ndarray:
        gz, gy, gx = self._g
        return gz[1:] + gz[:-1] + gy[:, 1:] + gy[:, :-1] + gx[:, :, 1:] + gx[:, :, :-1]

    def stable_dt_s(self, flow: DarcySolution | None) -> float:
        """CFL: dt ≤ CFL·φV / (outflow + diffusive conductance), over the free voxels; at most ``max_dt_s``."""
        capacity = self._diffusion_capacity()
        if flow is not None:
            capacity = capacity + flow.outflow_m3_s()
        free = ~self.medium.held & (capacity > 0)
        if not free.any():
            return self.max_dt_s
        return float(min(self.max_dt_s, CFL * np.min(self.pore_volume_m3[free] / capacity[free])))

    def advance(
        self,
        duration_s: float,
        flow: DarcySolution | None = None,
        inlet_concentration: float = 0.0,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        """Run ``duration_s`` with the flow field ``flow`` (None: no flow) carrying ``inlet_concentration`` of agent
        in through its sources."""
        if duration_s <= 0:
            return
        med = self.medium
        agent = self.agent
        dt_max = self.stable_dt_s(flow)
        nsteps = max(1, math.ceil(duration_s / dt_max - 1e-9))
        dt = duration_s / nsteps
        fz, fy, fx = (flow.flux_z, flow.flux_y, flow.flux_x) if flow is not None else self._zero_f
        src = (flow.source_m3_s * inlet_concentration) if flow is not None else np.zeros(med.shape)
        if flow is not None:
            self.peak_pressure_pa = max(self.peak_pressure_pa, float(flow.pressure_pa.max()))
        drain_p = (
            med.drainage_1_pa_s * np.maximum(flow.pressure_pa, 0.0)
            if flow is not None and flow.drainage
            else np.zeros(med.shape)
        )
        r, m1, c1 = self._work[:3]
        lethal = agent.lethal
        c_ref = agent.lethal_c_ref if lethal else 1.0
        n_exp = agent.lethal_exponent if lethal else 1.0
        t_ref = agent.lethal_t_ref_s if lethal else 1.0
        kb = agent.binding_rate_1_s
        source_total = float(src.sum())
        if inlet_concentration > 0 and self._floor == 0.0:
            self._floor = FLUSH_FRACTION * inlet_concentration * float(self.pore_volume_m3.min())
        self._loss_kind[:] = 0.0
        every = max(1, nsteps // 20)
        for step in range(nsteps):
            self._rhs(self.c, fz, fy, fx, r, 0.5 * dt)
            _heun_stage(self.m, self.m, r, src, dt, self.pore_volume_m3, med.held, True, m1, c1)
            self._rhs(c1, fz, fy, fx, r, 0.5 * dt)
            _heun_stage(self.m, m1, r, src, dt, self.pore_volume_m3, med.held, False, self.m, self.c)
            self.budget.injected += dt * source_total
            self.budget.flushed += _react(
                self.m, self.c, self.pore_volume_m3, med.held, med.perfusion_1_s, agent.perfusion_extraction, drain_p,
                med.porosity, kb, dt, lethal, c_ref, n_exp, t_ref, self.dose, self.washed, self.bound, self.peak,
                self._floor,
            )  # fmt: skip
            self.steps += 1
            if progress is not None and (step % every == 0 or step == nsteps - 1):
                progress((step + 1) / nsteps)
        for n, kind in enumerate(HELD_KINDS):
            self.budget.held[kind] += float(self._loss_kind[n])
        self.elapsed_s += duration_s
        self.budget.washed_out = float(self.washed.sum())
        self.budget.bound = float(self.bound.sum()) - self._bound0
        self.budget.in_tissue = float(self.m.sum())

    # ---- derived fields
    def transduced_fraction(self) -> np.ndarray:
        """Share of cells transduced: 1 − exp(−bound / (cells × particles per infectious unit)) (float32)."""
        agent = self.agent
        if agent.lethal:
            raise PhysicsError(f"agent {agent.name!r} does not transduce", "use a gene-vector agent")
        per_m3 = self.bound / self.medium.voxel_volume_m3
        return (1.0 - np.exp(-per_m3 / (agent.cells_per_m3 * agent.particles_per_infectious_unit))).astype(np.float32)

    def tissue_amount_per_m3(self) -> np.ndarray:
        """Free agent per tissue volume (φ·c), float32."""
        return (self.m / self.medium.voxel_volume_m3 * ~self.medium.held).astype(np.float32)


# ----------------------------------------------------------------------------------------------------- verification
def _uniform_medium(n: int, h_m: float, conductivity: float, porosity: float) -> PorousMedium:
    held = np.zeros((n, n, n), bool)
    held[[0, -1]] = True
    held[:, [0, -1]] = True
    held[:, :, [0, -1]] = True
    return PorousMedium(np.full((n, n, n), conductivity, np.float32), porosity, (h_m,) * 3, held)


def verify_point_source(
    spacings_mm: Sequence[float] = (2.0, 1.0, 0.5),
    half_size_mm: float = 16.0,
    shell_mm: tuple[float, float] = (6.0, 12.0),
    rate_ml_min: float = 1.0,
    conductivity_m2_pa_s: float = 6.4e-15,
) -> dict[str, Any]:
    """Darcy pressure around an outlet at the centre of a cube (K uniform), the outer layer held at the exact
    q/(4πK r): relative L2 error on the voxels of a shell (fixed physical radii) per spacing and the observed orders."""
    q = rate_ml_min * 1e-6 / 60.0
    errors = []
    for h_mm in spacings_mm:
        n = 2 * round(half_size_mm / h_mm) + 1
        h = h_mm * 1e-3
        centre = (n - 1) / 2.0 * h
        idx = np.indices((n, n, n)) * h - centre
        r = np.sqrt((idx**2).sum(axis=0))
        medium = _uniform_medium(n, h, conductivity_m2_pa_s, 0.2)
        exact = point_source_pressure_pa(q, conductivity_m2_pa_s, np.maximum(r, 1e-12))
        # the held layer at the exact values at its voxel centres: uniform K there too (DarcyFlow instead puts p = 0
        # on the held voxels' faces, the physical walls)
        uniform = np.full(medium.shape, conductivity_m2_pa_s, np.float32)
        op = EllipticOperator(uniform, 0.0, medium.spacing_m, medium.held, exact)
        src = q * source_weights(medium.shape, medium.spacing_m, (centre,) * 3, medium.held)
        p, info = MultigridSolver(op).solve((src / medium.voxel_volume_m3).astype(np.float32), rtol=1e-10,
                                            max_iterations=200)  # fmt: skip
        if not info.converged:
            raise PhysicsError("verification solve did not converge", "report this as a bug")
        shell = (r >= shell_mm[0] * 1e-3) & (r <= shell_mm[1] * 1e-3)
        err = np.sqrt(np.mean((p[shell] - exact[shell]) ** 2) / np.mean(exact[shell] ** 2))
        errors.append(float(err))
    orders = [
        math.log(errors[n] / errors[n + 1]) / math.log(spacings_mm[n] / spacings_mm[n + 1])
        for n in range(len(errors) - 1)
    ]
    return {"spacings_mm": list(spacings_mm), "errors": errors, "orders": orders}


def verify_spherical_front(
    spacing_mm: float = 1.0,
    front_radius_mm: float = 8.0,
    porosity: float = 0.2,
    rate_ml_min: float = 1.0,
    half_size_mm: float = 20.0,
) -> dict[str, float]:
    """Infusion of a tracer (c_in = 1, no diffusion, no loss) into a uniform medium until the sharp front would reach
    ``front_radius_mm``: injected volume vs φ × wetted volume (injectate fraction ≥ ½), the front radius, the mass
    balance, and the bounds of c."""
    h = spacing_mm * 1e-3
    n = 2 * round(half_size_mm / spacing_mm) + 1
    radius = front_radius_mm * 1e-3
    volume = porosity * 4.0 / 3.0 * math.pi * radius**3
    q = rate_ml_min * 1e-6 / 60.0
    medium = _uniform_medium(n, h, 1e-14, porosity)
    centre = (n - 1) / 2.0 * h
    flow = DarcyFlow(medium).solve(q * source_weights(medium.shape, medium.spacing_m, (centre,) * 3, medium.held))
    tracer = AgentModel("tracer", "tracer", 0.0, 0.0)
    run = InjectionTransport(medium, tracer, max_dt_s=10.0)
    run.advance(volume / q, flow, 1.0)
    wetted = float(np.count_nonzero(run.c >= 0.5)) * medium.voxel_volume_m3
    total = float(run.m.sum())
    return {
        "injected_m3": volume,
        "porosity_times_wetted_m3": porosity * wetted,
        "volume_error": abs(porosity * wetted - volume) / volume,
        "front_radius_m": spherical_front_radius_m(wetted * porosity, porosity),
        "exact_front_radius_m": radius,
        "mass_balance_error": abs(total + sum(run.budget.held.values()) - run.budget.injected) / volume,
        "tracer_in_tissue_fraction": total / volume,
        "c_min": float(run.c.min()),
        "c_max": float(run.c.max()),
        "steps": float(run.steps),
    }
