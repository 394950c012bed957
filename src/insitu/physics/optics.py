"""Steady light diffusion for interstitial laser: −∇·(D∇φ) + μa·φ = S, D = 1/(3(μa + μs')), heat Q = μa·φ.

φ is the fluence rate (W/m²), S the emitted power density (W/m³): a fibre's power spread along its diffusing tip
(a line source, uniform emission per length) or at one point (a bare fibre). In the near infrared liver scatters
about ten times more than it absorbs (μs' ≈ 10 μa), the regime where the diffusion approximation of transport holds
beyond a transport mean free path (≈ 2 mm) from the source (thermal.md §1.4). For an isotropic point source of power
P in an infinite medium φ = P·exp(−μ_eff·r)/(4π·D·r), μ_eff = √(μa/D) (:func:`point_source_fluence_w_m2`).

The equation is solved on the engine's matrix-free multigrid (:mod:`insitu.physics.multigrid`, the solver the RF
potential uses), warm-started from the previous field as the coefficients change with coagulation.

**Boundaries** are Robin conditions −D·∂φ/∂n = (D/z_b)·φ with an extrapolation length z_b, put into the boundary
voxels as an extra reaction D/(h·(h/2 + z_b)) (the flux through a face to a zero held z_b beyond it; symmetric, no
extra voxels). At a tissue–air face (skin, gas) the physical partial-current condition z_b = 2·A·D, A from the
refractive-index mismatch. At the box faces — a truncation *inside* tissue, not a surface — the default is the
``matched`` condition z_b = 1/μ_eff: the one-dimensional outgoing decay of the diffuse light, so the truncation
neither reflects light back (zero flux would: it over-estimates φ near the box) nor treats the tissue beyond as black
(the vacuum partial-current condition would: it under-estimates). The crop reaches several 1/μ_eff beyond the
source, where φ is below e⁻⁴ of its near value, so any of them changes the heating little; ``zero_flux``,
``partial_current`` and ``zero_fluence`` are there for comparison and checks.

The discrete operator conserves power: Σ S·V = Σ μa·φ·V + Σ (boundary reaction)·φ·V to the solver tolerance, so the
absorbed and escaped powers add up to the emitted power (:class:`LightSolution`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from insitu.errors import PhysicsError, TissueError
from insitu.physics.multigrid import EllipticOperator, MultigridSolver, SolveInfo

__all__ = [
    "LightField",
    "LightSolution",
    "OpticalTable",
    "cooled_shell_temperature_c",
    "deposit_points",
    "diffusion_coefficient_m",
    "effective_attenuation_per_m",
    "line_source_points",
    "load_optical_table",
    "partial_current_a",
    "point_source_fluence_w_m2",
]

BoxBoundary = Literal["matched", "partial_current", "zero_flux", "zero_fluence"]
BOX_BOUNDARIES: tuple[str, ...] = ("matched", "partial_current", "zero_flux", "zero_fluence")
OPTICAL_TABLE_PATH = Path(__file__).resolve().parent.parent / "tissue" / "optical_properties.yaml"
SAMPLES_PER_VOXEL = 4  # a line source is sampled every h/4 along its length (trilinear deposition)
DEFAULT_RTOL = 1e-6


# --------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------


def diffusion_coefficient_m(absorption_per_m, reduced_scattering_per_m):
    """D = 1/(3(μa + μs')) in metres (arrays or floats)."""
    return 1.0 / (3.0 * (np.asarray(absorption_per_m) + np.asarray(reduced_scattering_per_m)))


def effective_attenuation_per_m(absorption_per_m, reduced_scattering_per_m):
    """μ_eff = √(3μa(μa + μs')) = √(μa/D), per metre."""
    mua = np.asarray(absorption_per_m)
    return np.sqrt(3.0 * mua * (mua + np.asarray(reduced_scattering_per_m)))


def point_source_fluence_w_m2(power_w: float, r_m, absorption_per_m: float, reduced_scattering_per_m: float):
    """φ(r) = P·exp(−μ_eff·r)/(4π·D·r) of an isotropic point source in an infinite medium (thermal.md §1.4)."""
    d = diffusion_coefficient_m(absorption_per_m, reduced_scattering_per_m)
    mu = effective_attenuation_per_m(absorption_per_m, reduced_scattering_per_m)
    r = np.asarray(r_m, dtype=float)
    return power_w * np.exp(-mu * r) / (4.0 * math.pi * d * r)


def cooled_shell_temperature_c(
    r_m,
    power_w: float,
    absorption_per_m: float,
    reduced_scattering_per_m: float,
    conductivity_w_mk: float,
    perfusion_w_m3k: float,
    inner_radius_m: float,
    outer_radius_m: float,
    wall_temperature_c: float,
    arterial_temperature_c: float,
):
    """Steady Pennes temperature of thermal.md §5.4-4: a point light source inside a cooled sphere of radius R₁ held
    at u₀, zero heat flux at R₂, Q = μa·φ with φ the infinite-medium point-source fluence.

    k∇²u − w(u − T_a) + Q = 0. Particular part: u_p = T_a + C·e^(−μ_eff r)/r, C = 3Pμaμ_tr/(4π(w − kμ_eff²)) (so
    kμ_eff²C − wC + 3Pμaμ_tr/(4π) = 0); homogeneous parts A·e^(λr)/r + B·e^(−λr)/r, λ = √(w/k); A and B from
    u(R₁) = u₀ and u'(R₂) = 0. Derived here independently of [S22] (its numbers are the test inputs).
    """
    k, w = float(conductivity_w_mk), float(perfusion_w_m3k)
    if not (k > 0 and w > 0):
        raise PhysicsError("the cooled-shell solution needs k > 0 and w > 0", "give a perfused medium")
    mu_tr = absorption_per_m + reduced_scattering_per_m
    mu = float(effective_attenuation_per_m(absorption_per_m, reduced_scattering_per_m))
    lam = math.sqrt(w / k)
    c = 3.0 * power_w * absorption_per_m * mu_tr / (4.0 * math.pi * (w - k * mu * mu))

    def f(r, m):  # e^(m r)/r and its derivative
        return math.exp(m * r) / r, math.exp(m * r) * (m * r - 1.0) / (r * r)

    r1, r2 = float(inner_radius_m), float(outer_radius_m)
    fp1, _ = f(r1, lam)
    fm1, _ = f(r1, -lam)
    _, dfp2 = f(r2, lam)
    _, dfm2 = f(r2, -lam)
    up1, _ = f(r1, -mu)
    _, dup2 = f(r2, -mu)
    matrix = np.array([[fp1, fm1], [dfp2, dfm2]])
    rhs = np.array([wall_temperature_c - arterial_temperature_c - c * up1, -c * dup2])
    a, b = np.linalg.solve(matrix, rhs)
    r = np.asarray(r_m, dtype=float)
    return arterial_temperature_c + (a * np.exp(lam * r) + b * np.exp(-lam * r) + c * np.exp(-mu * r)) / r


def partial_current_a(refractive_index: float) -> float:
    """A = (1 + R_eff)/(1 − R_eff) of the partial-current boundary, R_eff from Groenhuis et al. 1983's fit (n ≥ 1)."""
    n = float(refractive_index)
    if not (n >= 1.0 and math.isfinite(n)):
        raise PhysicsError(f"relative refractive index {refractive_index}", "give n ≥ 1 (tissue over air ≈ 1.4)")
    if n == 1.0:
        return 1.0
    r_eff = -1.440 / n**2 + 0.710 / n + 0.668 + 0.0636 * n
    return (1.0 + r_eff) / (1.0 - r_eff)


# --------------------------------------------------------------------------------------------
# optical property table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpticalCoefficients:
    """μa and μs' (per metre) of one tissue at one wavelength and state, with their provenance."""

    absorption_per_m: float
    reduced_scattering_per_m: float
    status: str
    source: str

    @property
    def penetration_depth_m(self) -> float:
        """δ = 1/μ_eff."""
        return 1.0 / float(effective_attenuation_per_m(self.absorption_per_m, self.reduced_scattering_per_m))


@dataclass(frozen=True)
class OpticalTable:
    """Native and coagulated coefficients per tissue and wavelength (``optical_properties.yaml``)."""

    wavelengths_nm: tuple[int, ...]
    entries: Mapping[str, Mapping[int, tuple[OpticalCoefficients, OpticalCoefficients]]]
    fallback_tissue: str
    exterior_tissues: tuple[str, ...]
    tissue_refractive_index: float
    sources: Mapping[str, str] = field(default_factory=dict)

    def check_wavelength(self, wavelength_nm: float) -> int:
        """The wavelength as a table key; one-line TissueError for one without data."""
        for w in self.wavelengths_nm:
            if abs(float(wavelength_nm) - w) < 0.5:
                return w
        raise TissueError(
            f"no optical properties at {wavelength_nm:g} nm",
            f"use one of {', '.join(str(w) for w in self.wavelengths_nm)} nm",
        )

    def coefficients(self, tissue: str, wavelength_nm: float) -> tuple[OpticalCoefficients, OpticalCoefficients]:
        """(native, coagulated) of ``tissue`` (the fallback tissue's for a tissue without an entry)."""
        w = self.check_wavelength(wavelength_nm)
        if tissue in self.exterior_tissues:
            raise TissueError(f"{tissue!r} is not a diffusing medium", "place optical sources in tissue")
        return self.entries.get(tissue, self.entries[self.fallback_tissue])[w]

    def tables(self, names: Sequence[str], wavelength_nm: float) -> dict[str, np.ndarray]:
        """Per tissue index (order of ``names``): μa and μs' native and coagulated (per metre, float32; 0 for the
        exterior), ``exterior`` (bool) and ``fallback`` (bool: the tissue took the fallback's values)."""
        n = len(names)
        out = {k: np.zeros(n, np.float32) for k in ("mua_native", "musp_native", "mua_coag", "musp_coag")}
        exterior = np.zeros(n, bool)
        fallback = np.zeros(n, bool)
        for i, name in enumerate(names):
            if name in self.exterior_tissues:
                exterior[i] = True
                continue
            fallback[i] = name not in self.entries
            native, coag = self.coefficients(name, wavelength_nm)
            out["mua_native"][i] = native.absorption_per_m
            out["musp_native"][i] = native.reduced_scattering_per_m
            out["mua_coag"][i] = coag.absorption_per_m
            out["musp_coag"][i] = coag.reduced_scattering_per_m
        return {**out, "exterior": exterior, "fallback": fallback}


def _coefficients(entry: Mapping, where: str) -> OpticalCoefficients:
    try:
        mua = entry["absorption_per_mm"]
        musp = entry["reduced_scattering_per_mm"]
        coeffs = OpticalCoefficients(
            float(mua["value"]) * 1e3, float(musp["value"]) * 1e3, str(musp["status"]), str(musp["source"])
        )
    except (KeyError, TypeError, ValueError):
        raise TissueError(f"optical entry {where} lacks μa or μs' values", "complete optical_properties.yaml") from None
    if not (coeffs.absorption_per_m > 0 and coeffs.reduced_scattering_per_m > 0):
        raise TissueError(f"optical entry {where} has μa or μs' ≤ 0", "give positive coefficients")
    return coeffs


@cache
def load_optical_table(path: Path = OPTICAL_TABLE_PATH) -> OpticalTable:
    """Read and check the optical property table (native and coagulated per tissue and wavelength)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    wavelengths = tuple(int(w) for w in data["wavelengths_nm"])
    raw = data["tissues"]
    entries: dict[str, dict[int, tuple[OpticalCoefficients, OpticalCoefficients]]] = {}
    for name, entry in raw.items():
        if "same_as" in entry:
            continue
        per_w = {}
        for w in wavelengths:
            if w not in entry:
                raise TissueError(f"optical entry {name!r} has no {w} nm values", "give every listed wavelength")
            native = _coefficients(entry[w]["native"], f"{name} {w} nm native")
            coag_entry = entry[w]["coagulated"]
            coag = native if coag_entry == "same_as_native" else _coefficients(coag_entry, f"{name} {w} nm coag")
            per_w[w] = (native, coag)
        entries[name] = per_w
    for name, entry in raw.items():
        if "same_as" in entry:
            entries[name] = entries[entry["same_as"]]
    fallback = str(data["fallback_tissue"])
    if fallback not in entries:
        raise TissueError(f"the optical fallback tissue {fallback!r} has no entry", "name a listed tissue")
    return OpticalTable(
        wavelengths_nm=wavelengths,
        entries=entries,
        fallback_tissue=fallback,
        exterior_tissues=tuple(data.get("exterior_tissues", ("air",))),
        tissue_refractive_index=float(data["tissue_refractive_index"]["value"]),
        sources=dict(data.get("sources", {})),
    )


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def line_source_points(start_m, end_m, power_w: float, spacing_m: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sample points (midpoints of equal sub-segments, every ≤ h/4) and their powers for a uniform line emitter."""
    a, b = np.asarray(start_m, float), np.asarray(end_m, float)
    length = float(np.linalg.norm(b - a))
    n = max(1, math.ceil(length / (min(spacing_m) / SAMPLES_PER_VOXEL)))
    t = (np.arange(n) + 0.5) / n
    return a + t[:, None] * (b - a), np.full(n, power_w / n)


def deposit_points(
    shape: Sequence[int], spacing_m: Sequence[float], points_m: np.ndarray, powers_w: np.ndarray
) -> np.ndarray:
    """Power density S (W/m³, float32) of point emitters spread trilinearly onto voxel centres (cloud-in-cell):
    Σ S·V equals Σ powers exactly. Points must lie within the grid's voxel centres' hull."""
    shape = tuple(int(s) for s in shape)
    h = np.asarray(spacing_m, float)
    p = np.atleast_2d(np.asarray(points_m, float)) / h
    w = np.asarray(powers_w, float).ravel()
    hi = np.asarray(shape) - 1
    if p.shape[0] != w.size or np.any(p < -1e-9) or np.any(p > hi + 1e-9):
        raise PhysicsError("a light source lies outside the optical grid", "enlarge the region around the fibre")
    p = np.clip(p, 0.0, hi)
    base = np.minimum(np.floor(p).astype(int), np.maximum(hi - 1, 0))
    frac = p - base
    out = np.zeros(shape, np.float64)
    for corner in range(8):
        offs = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        weight = np.prod(np.where(offs == 1, frac, 1.0 - frac), axis=1)
        idx = np.minimum(base + offs, hi)
        np.add.at(out, (idx[:, 0], idx[:, 1], idx[:, 2]), weight * w)
    return (out / float(np.prod(h))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------


@dataclass
class LightSolution:
    """One steady light field: fluence rate φ (W/m²), absorbed power density μa·φ (W/m³) and the power balance (W)."""

    fluence_w_m2: np.ndarray
    absorbed_w_m3: np.ndarray
    emitted_w: float
    absorbed_w: float
    escaped_w: float
    info: SolveInfo


class LightField:
    """Steady diffusion on one voxel grid, re-solved (warm-started) as μa and μs' change.

    ``spacing_m`` is (dz, dy, dx). ``exterior`` (bool, optional) marks voxels that are not a diffusing medium (air,
    gas): they carry no light, and a tissue face toward them is a partial-current boundary with the mismatch of
    ``refractive_index`` (tissue over air). ``box_boundary`` is the condition at the box faces (module docstring).
    """

    def __init__(
        self,
        shape: Sequence[int],
        spacing_m: Sequence[float],
        exterior: np.ndarray | None = None,
        box_boundary: BoxBoundary = "matched",
        refractive_index: float = 1.4,
        rtol: float = DEFAULT_RTOL,
        max_iterations: int = 200,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        h = tuple(float(s) for s in spacing_m)
        if len(self.shape) != 3 or len(h) != 3 or not all(math.isfinite(s) and s > 0 for s in h):
            raise PhysicsError(f"optical grid {self.shape} with spacing {h}", "give a 3-D shape and (dz, dy, dx) m")
        if box_boundary not in BOX_BOUNDARIES:
            raise PhysicsError(f"unknown box boundary {box_boundary!r}", f"use one of {', '.join(BOX_BOUNDARIES)}")
        self.spacing_m = h
        self.box_boundary = box_boundary
        self.exterior = np.zeros(self.shape, bool) if exterior is None else np.asarray(exterior, bool)
        if self.exterior.shape != self.shape:
            raise PhysicsError(f"exterior mask {self.exterior.shape} on a {self.shape} grid", "give it on the grid")
        self.surface_a = partial_current_a(refractive_index)
        self.rtol = float(rtol)
        self.max_iterations = int(max_iterations)
        self._solver: MultigridSolver | None = None
        self._previous: np.ndarray | None = None
        self._face_counts = self._count_boundary_faces()

    def _count_boundary_faces(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Per axis: (axis, number of box faces, number of faces toward exterior voxels) of every tissue voxel."""
        tissue = ~self.exterior
        out = []
        for axis in range(3):
            box = np.zeros(self.shape, np.int8)
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = 0, -1
            box[tuple(lo)] += 1
            box[tuple(hi)] += 1
            ext = np.zeros(self.shape, np.int8)
            if self.exterior.any():
                a = [slice(None)] * 3
                b = [slice(None)] * 3
                a[axis], b[axis] = slice(0, -1), slice(1, None)
                ext[tuple(a)] += self.exterior[tuple(b)]
                ext[tuple(b)] += self.exterior[tuple(a)]
            out.append((axis, box * tissue, ext * tissue))
        return out

    def boundary_reaction(self, mua: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The Robin faces as a reaction per voxel: Σ_faces D/(h·(h/2 + z_b)) (per m², float64)."""
        extra = np.zeros(self.shape, np.float64)
        for axis, box, ext in self._face_counts:
            h = self.spacing_m[axis]
            if ext.any():
                zb = 2.0 * self.surface_a * d
                extra += ext * d / (h * (0.5 * h + zb))
            if self.box_boundary == "zero_flux":
                continue
            if self.box_boundary == "matched":
                zb = np.sqrt(d / np.maximum(mua, 1e-30))
            elif self.box_boundary == "partial_current":
                zb = 2.0 * d
            else:
                zb = 0.0
            extra += box * d / (h * (0.5 * h + zb))
        return extra

    def solve(
        self,
        absorption_per_m: np.ndarray | float,
        reduced_scattering_per_m: np.ndarray | float,
        source_w_m3: np.ndarray,
        rtol: float | None = None,
    ) -> LightSolution:
        """φ for the given coefficients (volumes or scalars; ignored on exterior voxels) and source (W/m³)."""
        mua = np.broadcast_to(np.asarray(absorption_per_m, np.float64), self.shape)
        musp = np.broadcast_to(np.asarray(reduced_scattering_per_m, np.float64), self.shape)
        tissue = ~self.exterior
        if not (np.all(np.isfinite(mua[tissue])) and np.all(np.isfinite(musp[tissue]))):
            raise PhysicsError("optical coefficients are not finite", "give finite μa and μs'")
        if np.any(mua[tissue] <= 0) or np.any(musp[tissue] < 0):
            raise PhysicsError("optical coefficients have μa ≤ 0 or μs' < 0", "give μa > 0 and μs' ≥ 0 in tissue")
        source = np.asarray(source_w_m3, np.float32)
        if source.shape != self.shape:
            raise PhysicsError(f"light source {source.shape} on a {self.shape} grid", "give it on the grid")
        if np.any(source[self.exterior] != 0):
            raise PhysicsError("a light source emits into air", "place the fibre's emitting part in tissue")
        d = np.where(tissue, 1.0 / (3.0 * (mua + musp)), 0.0)
        reaction = np.where(tissue, mua, 0.0) + self.boundary_reaction(mua, d)
        a32 = d.astype(np.float32)
        c32 = reaction.astype(np.float32)
        if self._solver is None:
            self._solver = MultigridSolver(EllipticOperator(a32, c32, self.spacing_m))
        else:
            self._solver.update_coefficients(a32, c32)
        vol = float(np.prod(self.spacing_m))
        x0 = self._previous
        if x0 is None:
            # a uniform start at the level that absorbs the emitted power: from a zero start the first sweeps spread a
            # compact source by ~1/6 per voxel, and the float32 values far out fall into the denormal range, which
            # runs ~30× slower; the uniform field keeps every value normal (and is a fair guess of the far field)
            total = float(np.sum(reaction, dtype=np.float64)) * vol
            x0 = np.full(self.shape, float(source.sum(dtype=np.float64)) * vol / max(total, 1e-300), np.float32)
        phi, info = self._solver.solve(
            source, x0=x0, rtol=self.rtol if rtol is None else rtol, max_iterations=self.max_iterations
        )
        if not info.converged:
            raise PhysicsError(
                f"the light diffusion solve stopped at relative residual {info.residual:.2e}",
                "raise max_iterations or loosen rtol",
            )
        phi[self.exterior] = 0.0  # no equation there: the solver left the start value
        self._previous = phi
        absorbed = (np.where(tissue, mua, 0.0) * phi).astype(np.float32)
        emitted = float(source.sum(dtype=np.float64)) * vol
        absorbed_w = float(absorbed.sum(dtype=np.float64)) * vol
        escaped_w = float(np.sum((reaction - np.where(tissue, mua, 0.0)) * phi, dtype=np.float64)) * vol
        return LightSolution(phi, absorbed, emitted, absorbed_w, escaped_w, info)
