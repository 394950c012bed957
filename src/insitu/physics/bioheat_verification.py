"""Verification of :mod:`insitu.physics.bioheat` against closed forms (thermal.md §5.4, hifu.md §8 case 6).

Each ``case_*`` function runs one problem on a list of grids and returns the compared numbers
(simulated values, exact values, errors and observed orders). :func:`verification_cases` runs them
at full resolution and returns one row per compared quantity, ``{id, quantity, simulated,
reference, tolerance_rel, source}``, for ``make validate``; the tests call the same functions on
coarser grids.

Observed order between grids h and h/2: ``p = log2(e(h) / e(h/2))``. Point sources are replaced by a
smooth compact source (a C² bump of fixed radius) whose *exterior* field is exactly the point-source
field (the bump's strength is normalised so that ∫ q · sinh(λr)/(λr) dV = P, which makes the
exterior amplitude that of a point source of power P), so the comparison away from the source is
exact in the continuum and the discretisation error alone is measured.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from insitu.physics.bioheat import (
    BioheatSolver,
    RobinBoundary,
    ThermalMedium,
    VesselBoundary,
)
from insitu.physics.verification import verification_row

LIVER_K = 0.52  # W/m/K, thermal.md §2.1 [C] (S36)
LIVER_RHO = 1079.0  # kg/m³
LIVER_C = 3540.0  # J/kg/K
BLOOD_RHO_C = 1050.0 * 3617.0  # J/m³/K, thermal.md §2.1
V1_W = 3.6e4  # W/m³/K, thermal.md §5.4-1
V1_POWER_W = 10.0
SRC_THERMAL = "thermal.md §5.4 (closed form, exact)"
SRC_HIFU6 = "hifu.md §8 case 6 (closed form, exact)"


def observed_orders(errors: Sequence[float], ratio: float = 2.0) -> list[float]:
    """log_ratio(e_n / e_{n+1}) for successive grids."""
    out = []
    for a, b in itertools.pairwise(errors):
        out.append(math.log(abs(a) / abs(b)) / math.log(ratio) if a and b else math.nan)
    return out


def _centred_axis(half_width_m: float, h_m: float) -> np.ndarray:
    """Cell centres at integer multiples of h, symmetric about 0 (odd count, a centre at 0)."""
    n = round(half_width_m / h_m)
    return (np.arange(-n, n + 1) * h_m).astype(np.float64)


def _grid(half_widths_m: Sequence[float], spacings_m: Sequence[float]) -> tuple[np.ndarray, ...]:
    axes = [_centred_axis(w, h) for w, h in zip(half_widths_m, spacings_m, strict=True)]
    return tuple(np.meshgrid(*axes, indexing="ij"))


def _at(axis_values: np.ndarray, x: float) -> int:
    i = int(np.argmin(np.abs(axis_values - x)))
    if abs(axis_values[i] - x) > 1e-9:
        raise ValueError(f"{x} is not a cell centre")
    return i


def _bump(r: np.ndarray, radius: float) -> np.ndarray:
    s = np.clip(r / radius, 0.0, 1.0)
    return (1.0 - s * s) ** 3


def _shape_factor(r: np.ndarray, lam: float) -> np.ndarray:
    """sinh(λr)/(λr) (1 at λ = 0): the weight that makes a compact source look like a point outside."""
    if lam == 0.0:
        return np.ones_like(r)
    x = lam * r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 1e-8, np.sinh(x) / np.where(x > 1e-8, x, 1.0), 1.0)


# ------------------------------------------------------------------------------- V1 steady point
def point_source_exact(r_m: np.ndarray | float, power_w: float, k: float, w: float) -> np.ndarray:
    """θ(r) = P e^(−λr) / (4πkr), λ = √(w/k) (thermal.md §5.4-1)."""
    lam = math.sqrt(w / k)
    r = np.asarray(r_m, dtype=np.float64)
    return power_w * np.exp(-lam * r) / (4.0 * math.pi * k * r)


def case_point_source(
    spacings_mm: Sequence[float] = (1.0, 0.5, 0.25),
    perfusion_w_m3k: float = V1_W,
    radii_mm: Sequence[float] = (5.0, 10.0),
    half_width_mm: float = 12.0,
    source_radius_mm: float = 2.0,
    power_w: float = V1_POWER_W,
) -> dict[str, Any]:
    """V1: steady Pennes point source, solved as the fixed point of the explicit scheme.

    The outer voxel shell is held at the exact solution (which is exact there, the source being
    compact), so the truncated box adds no error.
    """
    k, w = LIVER_K, perfusion_w_m3k
    lam = math.sqrt(w / k)
    eps = source_radius_mm * 1e-3
    sims: dict[float, list[float]] = {r: [] for r in radii_mm}
    for h_mm in spacings_mm:
        h = h_mm * 1e-3
        z, y, x = _grid((half_width_mm * 1e-3,) * 3, (h,) * 3)
        r = np.sqrt(x * x + y * y + z * z)
        shape = r.shape
        q = _bump(r, eps)
        q *= power_w / float(np.sum(q * _shape_factor(r, lam)) * h**3)
        med = ThermalMedium.uniform(shape, h, k, LIVER_RHO, LIVER_C, w / BLOOD_RHO_C, blood_density_kg_m3=1050.0)
        shell = np.ones(shape, bool)
        shell[1:-1, 1:-1, 1:-1] = False
        exact_shell = 37.0 + point_source_exact(np.where(shell, r, 1.0), power_w, k, w)
        solver = BioheatSolver(med, dirichlet_mask=shell, dirichlet_temperature_c=exact_shell.astype(np.float32))
        T = solver.steady_state(q.astype(np.float32), dtype=np.float64)
        axis = _centred_axis(half_width_mm * 1e-3, h)
        c = _at(axis, 0.0)
        for rr in radii_mm:
            sims[rr].append(float(T[c, c, _at(axis, rr * 1e-3)] - 37.0))
    out: dict[str, Any] = {"spacings_mm": list(spacings_mm), "perfusion_w_m3k": w, "radii_mm": list(radii_mm)}
    for rr in radii_mm:
        exact = float(point_source_exact(rr * 1e-3, power_w, k, w))
        errors = [s - exact for s in sims[rr]]
        out[f"theta_{rr:g}mm"] = {
            "simulated": sims[rr],
            "exact": exact,
            "errors": errors,
            "rel_error_finest": abs(errors[-1]) / exact,
            "orders": observed_orders(errors),
        }
    return out


# ------------------------------------------------------------------------------- heated sphere
def heated_sphere_exact(r_m: np.ndarray, radius_m: float, q_w_m3: float, k: float, w: float) -> np.ndarray:
    """Steady θ for uniform Q inside r < a with perfusion w (thermal.md §5.4-2): sinh/r inside, e^(−λr)/r outside."""
    lam = math.sqrt(w / k)
    a = radius_m
    # inside θ = Q/w + A sinh(λr)/r, outside θ = B e^(−λr)/r; continuity of θ and θ' at a
    m = np.array(
        [
            [math.sinh(lam * a) / a, -math.exp(-lam * a) / a],
            [(lam * a * math.cosh(lam * a) - math.sinh(lam * a)) / a**2, (1 + lam * a) * math.exp(-lam * a) / a**2],
        ]
    )
    A, B = np.linalg.solve(m, np.array([-q_w_m3 / w, 0.0]))
    r = np.asarray(r_m, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = q_w_m3 / w + A * np.where(r > 0, np.sinh(lam * r) / np.where(r > 0, r, 1.0), lam)
        outside = B * np.exp(-lam * r) / np.where(r > 0, r, 1.0)
    return np.where(r < a, inside, outside)


def _sphere_fraction(x: np.ndarray, y: np.ndarray, z: np.ndarray, h: float, a: float, sub: int) -> np.ndarray:
    """Volume fraction of each cell inside the sphere r < a (sub³ samples in cells the surface crosses)."""
    r = np.sqrt(x * x + y * y + z * z)
    frac = (r < a).astype(np.float64)
    band = np.abs(r - a) < 0.87 * h * 1.01
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    oz, oy, ox = (o.reshape(-1) * h for o in np.meshgrid(offs, offs, offs, indexing="ij"))
    idx = np.flatnonzero(band)
    for chunk in np.array_split(idx, max(1, idx.size // 2000)):
        cx, cy, cz = x.flat[chunk][:, None], y.flat[chunk][:, None], z.flat[chunk][:, None]
        inside = (cx + ox) ** 2 + (cy + oy) ** 2 + (cz + oz) ** 2 < a * a
        frac.flat[chunk] = inside.mean(axis=1)
    return frac


def case_heated_sphere(
    spacings_mm: Sequence[float] = (1.0, 0.5, 0.25),
    radius_mm: float = 3.0,
    q_w_m3: float = 1e6,
    perfusion_w_m3k: float = V1_W,
    probes_mm: Sequence[float] = (0.0, 6.0),
    half_width_mm: float = 12.0,
    subsamples: int = 16,
) -> dict[str, Any]:
    """Steady heated sphere with perfusion; the source is the exact cell average (volume fractions)."""
    k, w = LIVER_K, perfusion_w_m3k
    a = radius_mm * 1e-3
    sims: dict[float, list[float]] = {p: [] for p in probes_mm}
    for h_mm in spacings_mm:
        h = h_mm * 1e-3
        z, y, x = _grid((half_width_mm * 1e-3,) * 3, (h,) * 3)
        r = np.sqrt(x * x + y * y + z * z)
        frac = _sphere_fraction(x, y, z, h, a, subsamples)
        frac *= (4.0 / 3.0 * math.pi * a**3) / (frac.sum() * h**3)  # exact source power
        shape = r.shape
        med = ThermalMedium.uniform(shape, h, k, LIVER_RHO, LIVER_C, w / BLOOD_RHO_C)
        shell = np.ones(shape, bool)
        shell[1:-1, 1:-1, 1:-1] = False
        edge = 37.0 + heated_sphere_exact(np.where(shell, r, 1.0), a, q_w_m3, k, w)
        solver = BioheatSolver(med, dirichlet_mask=shell, dirichlet_temperature_c=edge.astype(np.float32))
        T = solver.steady_state((q_w_m3 * frac).astype(np.float32), dtype=np.float64)
        axis = _centred_axis(half_width_mm * 1e-3, h)
        c = _at(axis, 0.0)
        for p in probes_mm:
            sims[p].append(float(T[c, c, _at(axis, p * 1e-3)] - 37.0))
    out: dict[str, Any] = {"spacings_mm": list(spacings_mm)}
    for p in probes_mm:
        exact = float(heated_sphere_exact(np.array(p * 1e-3), a, q_w_m3, k, w))
        errors = [s - exact for s in sims[p]]
        out[f"theta_{p:g}mm"] = {
            "simulated": sims[p],
            "exact": exact,
            "errors": errors,
            "rel_error_finest": abs(errors[-1]) / exact,
            "orders": observed_orders(errors),
        }
    return out


# ------------------------------------------------------------------------------- V2 transient Green
def green_exact(r_m: np.ndarray | float, t_s: float, energy_j: float, k: float, rho_c: float, w: float) -> np.ndarray:
    """θ(r,t) = E/(ρc (4παt)^{3/2}) exp(−r²/(4αt) − w t/(ρc)) (thermal.md §5.4-3)."""
    alpha = k / rho_c
    r = np.asarray(r_m, dtype=np.float64)
    return (
        energy_j
        / (rho_c * (4.0 * math.pi * alpha * t_s) ** 1.5)
        * np.exp(-r * r / (4.0 * alpha * t_s) - w * t_s / rho_c)
    )


GREEN_ENERGY_J = 50.0
"""V2's pulse energy: large enough that θ at 120 s (a few K) sits far above float32 resolution at 37 °C."""


def _run_green(h_mm: float, t0: float, t1: float, w: float, half_width_mm: float, safety: float, probes_mm):
    k, rho_c = LIVER_K, LIVER_RHO * LIVER_C
    energy = GREEN_ENERGY_J
    h = h_mm * 1e-3
    z, y, x = _grid((half_width_mm * 1e-3,) * 3, (h,) * 3)
    r = np.sqrt(x * x + y * y + z * z)
    T = (37.0 + green_exact(r, t0, energy, k, rho_c, w)).astype(np.float32)
    med = ThermalMedium.uniform(r.shape, h, k, LIVER_RHO, LIVER_C, w / BLOOD_RHO_C)
    solver = BioheatSolver(med, safety=safety, compensated=True)  # rounding must not blur the order study
    run = solver.advance(T, t1 - t0)
    axis = _centred_axis(half_width_mm * 1e-3, h)
    c = _at(axis, 0.0)
    vals = [float(T[c, c, _at(axis, p * 1e-3)] - 37.0) for p in probes_mm]
    return vals, run


def case_green(
    spacings_mm: Sequence[float] = (1.0, 0.5, 0.25),
    perfusion_w_m3k: float = 0.0,
    t0_s: float = 10.0,
    t1_s: float = 120.0,
    half_width_mm: float = 28.0,
    probes_mm: Sequence[float] = (0.0, 3.0),
    safety: float = 0.9,
    dt_study_spacing_mm: float | None = None,
) -> dict[str, Any]:
    """V2: start from the exact field at t0, advance to t1, compare at the centre and at ``probes_mm``.

    The step is ``safety`` × the stability bound, so Δt ∝ h² and the expected order in h is 2
    (forward Euler is first order in Δt). ``dt_study_spacing_mm`` adds a Δt study at that fixed h
    (safety 0.8, 0.4, 0.2): the order of successive differences, expected 1.
    """
    k, rho_c, w = LIVER_K, LIVER_RHO * LIVER_C, perfusion_w_m3k
    sims: dict[float, list[float]] = {p: [] for p in probes_mm}
    steps = []
    for h_mm in spacings_mm:
        vals, run = _run_green(h_mm, t0_s, t1_s, w, half_width_mm, safety, probes_mm)
        steps.append(run.steps)
        for p, v in zip(probes_mm, vals, strict=True):
            sims[p].append(v)
    out: dict[str, Any] = {"spacings_mm": list(spacings_mm), "steps": steps, "t0_s": t0_s, "t1_s": t1_s}
    for p in probes_mm:
        exact = float(green_exact(p * 1e-3, t1_s, GREEN_ENERGY_J, k, rho_c, w))
        errors = [s - exact for s in sims[p]]
        out[f"theta_{p:g}mm"] = {
            "simulated": sims[p],
            "exact": exact,
            "errors": errors,
            "rel_error_finest": abs(errors[-1]) / exact,
            "orders": observed_orders(errors),
        }
    if dt_study_spacing_mm is not None:
        centre = [
            _run_green(dt_study_spacing_mm, t0_s, t1_s, w, half_width_mm, s, (0.0,))[0][0] for s in (0.8, 0.4, 0.2)
        ]
        diffs = [centre[0] - centre[1], centre[1] - centre[2]]
        out["dt_study"] = {"spacing_mm": dt_study_spacing_mm, "safety": [0.8, 0.4, 0.2], "centre": centre}
        out["dt_order"] = observed_orders(diffs)[0]
    return out


# ------------------------------------------------------------------------------- HIFU-6 Gaussian source
HIFU6 = {
    "alpha_np_m": 5.0,
    "intensity_w_m2": 1000.0e4,
    "a_m": 1.0e-3,
    "b_m": 5.0e-3,
    "k": 0.52,
    "rho": 1060.0,
    "c": 3600.0,
    "reference_K": {0.1: 2.550, 1.0: 20.81, 3.0: 45.96, 10.0: 86.47},
}


def gaussian_source_exact(t_s: float) -> float:
    """ΔT at the focus: αI₀a²b/(kd)·[atanh(d/b) − atanh(d/√(b² + 4κt))], d = √(b² − a²) (hifu.md §8 case 6)."""
    p = HIFU6
    a, b, k = p["a_m"], p["b_m"], p["k"]
    kappa = k / (p["rho"] * p["c"])
    d = math.sqrt(b * b - a * a)
    return (
        p["alpha_np_m"]
        * p["intensity_w_m2"]
        * a
        * a
        * b
        / (k * d)
        * (math.atanh(d / b) - math.atanh(d / math.sqrt(b * b + 4 * kappa * t_s)))
    )


def case_gaussian_source(
    spacings_mm: Sequence[float] = (0.2, 0.1, 0.05),
    times_s: Sequence[float] = (0.1, 1.0, 3.0, 10.0),
    axial_ratio: float = 5.0,
    half_width_mm: tuple[float, float] = (22.0, 10.0),
) -> dict[str, Any]:
    """HIFU-6: q = 2αI₀ exp(−r²/a² − z²/b²), no perfusion, ΔT at the focus at ``times_s``.

    Anisotropic cells (Δz = ``axial_ratio`` × Δx, the source being b/a = 5 times longer along z);
    the step is the automatic one, so Δt ∝ Δx². Snapshots land exactly on the reference times.
    """
    p = HIFU6
    sims: dict[float, list[float]] = {t: [] for t in times_s}
    steps = []
    for h_mm in spacings_mm:
        h = h_mm * 1e-3
        hz = axial_ratio * h
        z, y, x = _grid((half_width_mm[0] * 1e-3, half_width_mm[1] * 1e-3, half_width_mm[1] * 1e-3), (hz, h, h))
        q = (
            2.0
            * p["alpha_np_m"]
            * p["intensity_w_m2"]
            * np.exp(-(x * x + y * y) / p["a_m"] ** 2 - z * z / p["b_m"] ** 2)
        )
        med = ThermalMedium.uniform(q.shape, (hz, h, h), p["k"], p["rho"], p["c"], 0.0)
        solver = BioheatSolver(med)
        T = np.full(q.shape, 37.0, np.float32)
        run = solver.advance(T, max(times_s), source_w_m3=q.astype(np.float32), snapshot_times_s=times_s)
        steps.append(run.steps)
        cz, cy = (s // 2 for s in q.shape[:2])
        for t in times_s:
            sims[t].append(float(run.snapshots[t][cz, cy, cy] - 37.0))
    out: dict[str, Any] = {"spacings_mm": list(spacings_mm), "steps": steps}
    for t in times_s:
        exact = gaussian_source_exact(t)
        errors = [s - exact for s in sims[t]]
        out[f"dT_{t:g}s"] = {
            "simulated": sims[t],
            "exact": exact,
            "reference": p["reference_K"].get(t),
            "errors": errors,
            "rel_error_finest": abs(errors[-1]) / exact,
            "orders": observed_orders(errors),
        }
    return out


# ------------------------------------------------------------------------------- conservation and BCs
def case_energy(n: int = 24, heat_s: float = 30.0, total_s: float = 60.0, compensated: bool = False) -> dict[str, Any]:
    """Insulated box, heterogeneous ρ, c, k, no perfusion, a source on for ``heat_s``: Σ ρc ΔT dV vs ∫Q dV dt.

    Sums are float64. With plain float32 temperatures the balance closes to ~1e-5 (increments below
    half a float32 ulp at 37 °C, 1.9e-6 K, are dropped in the slowly warming far field); with
    ``compensated=True`` (per-voxel Kahan residual) to ~1e-7.
    """
    rng = np.random.default_rng(7)
    shape = (n, n + 2, n + 4)
    h = 1e-3
    k = rng.uniform(0.2, 0.6, shape).astype(np.float32)
    rho = rng.uniform(900, 1100, shape).astype(np.float32)
    c = rng.uniform(2300, 3800, shape).astype(np.float32)
    med = ThermalMedium(k, rho, c, np.zeros(shape, np.float32), (h, h, h))
    q = np.zeros(shape, np.float32)
    q[n // 3 : n // 2, n // 3 : n // 2, n // 4 : n // 2] = 2e6
    solver = BioheatSolver(med, compensated=compensated)
    T = np.full(shape, 37.0, np.float32)
    T0 = T.astype(np.float64)
    run1 = solver.advance(T, heat_s, source_w_m3=q)
    run2 = solver.advance(T, total_s - heat_s)
    stored = float(np.sum(med.heat_capacity_j_m3k() * (T.astype(np.float64) - T0)) * h**3)
    injected = run1.source_energy_j + run2.source_energy_j
    return {
        "stored_j": stored,
        "injected_j": injected,
        "rel_error": abs(stored - injected) / injected,
        "max_rise_K": float(T.max() - 37.0),
        "steps": run1.steps + run2.steps,
    }


def case_robin_slab(n: int = 20, h_w_m2k: float = 50.0, ambient_c: float = 20.0, use_mask: bool = False):
    """1-D steady slab: Dirichlet cell at i = 0 (T₀), convective exit at the far side (box face or ambient mask).

    The exact profile is linear with flux (T₀ − T_amb)/(L/k + 1/h); finite volumes reproduce linear
    profiles exactly, so the error is the solver's rounding.
    """
    h = 1e-3
    k = LIVER_K
    ni = n + (3 if use_mask else 0)
    shape = (1, 1, ni)
    med = ThermalMedium.uniform(shape, h, k, LIVER_RHO, LIVER_C, 0.0)
    dmask = np.zeros(shape, bool)
    dmask[..., 0] = True
    if use_mask:
        amb = np.zeros(shape, bool)
        amb[..., n:] = True
        robin = RobinBoundary(h_w_m2k, ambient_c, mask=amb)
    else:
        robin = RobinBoundary(h_w_m2k, ambient_c, box_faces=("i+",))
    solver = BioheatSolver(med, dirichlet_mask=dmask, dirichlet_temperature_c=60.0, robin=robin)
    T = solver.steady_state(dtype=np.float64)
    length = (n - 0.5) * h  # Dirichlet centre → exit face
    flux = (60.0 - ambient_c) / (length / k + 1.0 / h_w_m2k)
    x = np.arange(n) * h
    exact = 60.0 - flux * x / k
    # and the explicit scheme converges to the same profile
    T2 = np.full(shape, 37.0, np.float32)
    solver.advance(T2, 8 * (n * h) ** 2 / (k / (LIVER_RHO * LIVER_C)))
    return {
        "steady_max_error_K": float(np.max(np.abs(T[0, 0, :n] - exact))),
        "explicit_max_error_K": float(np.max(np.abs(T2[0, 0, :n] - exact))),
        "exit_temperature_exact": float(exact[-1]),
        "exit_temperature": float(T2[0, 0, n - 1]),
    }


def case_vessel_slab(n: int = 20, diameter_m: float = 4e-3, nusselt: float = 4.36) -> dict[str, Any]:
    """1-D steady slab between a Dirichlet cell (60 °C) and vessel blood (37 °C) behind a wall h = Nu k_b/D."""
    h = 1e-3
    k = LIVER_K
    shape = (1, 1, n)
    med = ThermalMedium.uniform(shape, h, k, LIVER_RHO, LIVER_C, 0.0)
    vmask = np.zeros(shape, bool)
    vmask[..., 0] = True
    dmask = np.zeros(shape, bool)
    dmask[..., -1] = True
    solver = BioheatSolver(
        med,
        dirichlet_mask=dmask,
        dirichlet_temperature_c=60.0,
        vessels=VesselBoundary(vmask, diameter_m, nusselt),
    )
    hw = nusselt * med.blood_conductivity_w_mk / diameter_m
    T = np.full(shape, 37.0, np.float32)
    alpha = k / (LIVER_RHO * LIVER_C)
    solver.advance(T, 8 * (n * h) ** 2 / alpha)
    length = (n - 1 - 0.5) * h  # Dirichlet centre → vessel wall
    flux = (60.0 - 37.0) / (length / k + 1.0 / hw)
    x = (np.arange(n) - (n - 1)) * h  # Dirichlet centre at 0
    exact = 60.0 + flux * x / k
    return {
        "wall_h_w_m2k": hw,
        "max_error_K": float(np.max(np.abs(T[0, 0, 1:] - exact[1:]))),
        "vessel_temperature": float(T[0, 0, 0]),
        "wall_flux_w_m2": flux,
        "simulated_flux_w_m2": float(k * (T[0, 0, 2] - T[0, 0, 1]) / h),
    }


def case_dirichlet_perfused_slab(spacings_mm: Sequence[float] = (1.0, 0.5, 0.25), length_mm: float = 10.0):
    """1-D steady perfused slab between two Dirichlet cells (50 °C and 37 °C): cosh/sinh profile, order 2."""
    k, w = LIVER_K, V1_W
    lam = math.sqrt(w / k)
    L = length_mm * 1e-3
    errors = []
    for h_mm in spacings_mm:
        h = h_mm * 1e-3
        n = round(L / h) + 1
        shape = (1, 1, n)
        med = ThermalMedium.uniform(shape, h, k, LIVER_RHO, LIVER_C, w / BLOOD_RHO_C)
        dmask = np.zeros(shape, bool)
        dmask[..., 0] = dmask[..., -1] = True
        temps = np.full(shape, 37.0, np.float32)
        temps[..., 0] = 50.0
        solver = BioheatSolver(med, dirichlet_mask=dmask, dirichlet_temperature_c=temps)
        T = solver.steady_state(dtype=np.float64)
        x = np.arange(n) * h
        exact = 37.0 + 13.0 * np.sinh(lam * (L - x)) / math.sinh(lam * L)
        mid = _at(x, L / 2)
        errors.append(float(T[0, 0, mid] - exact[mid]))
    return {"errors_mid_K": errors, "orders": observed_orders(errors)}


def case_conductivity_slab(n: int = 21, a_k: float = 0.01, t_hot: float = 90.0) -> dict[str, Any]:
    """1-D steady slab with k(T) = k37(1 + a_k(T − 37)) between Dirichlet cells at 37 and ``t_hot`` °C.

    The Kirchhoff variable U = ∫k dT is linear in x, so T(x) solves a quadratic; the explicit run
    with lagged conductances must converge to it (second-order face averaging error only).
    """
    h = 1e-3
    k37 = LIVER_K
    shape = (1, 1, n)
    med = ThermalMedium.uniform(
        shape, h, k37, LIVER_RHO, LIVER_C, 0.0, conductivity_coeff_1_k=a_k, property_range_c=(0.0, 100.0)
    )
    dmask = np.zeros(shape, bool)
    dmask[..., 0] = dmask[..., -1] = True
    temps = np.full(shape, 37.0, np.float32)
    temps[..., -1] = t_hot
    solver = BioheatSolver(med, dirichlet_mask=dmask, dirichlet_temperature_c=temps)
    T = np.full(shape, 37.0, np.float32)
    alpha = k37 / (LIVER_RHO * LIVER_C)
    run = solver.advance(T, 2.5 * (n * h) ** 2 / alpha)  # slowest Dirichlet mode decays as e^(−π² α t / L²)
    x = np.arange(n) / (n - 1)
    u_hot = (t_hot - 37.0) + a_k * (t_hot - 37.0) ** 2 / 2
    u = u_hot * x  # U/k37 linear; solve θ + a θ²/2 = u
    theta = (-1.0 + np.sqrt(1.0 + 2.0 * a_k * u)) / a_k
    exact = 37.0 + theta
    constant_k = 37.0 + (t_hot - 37.0) * x
    return {
        "max_error_K": float(np.max(np.abs(T[0, 0] - exact))),
        "midpoint": float(T[0, 0, n // 2]),
        "midpoint_exact": float(exact[n // 2]),
        "midpoint_constant_k": float(constant_k[n // 2]),
        "refreshes": run.property_refreshes,
    }


def case_heat_capacity_energy(n: int = 16, a_c: float = 0.004) -> dict[str, Any]:
    """Insulated box with c(T) = c37(1 + a_c(T − 37)): the enthalpy Σ ρ∫c dT dV equals the injected energy."""
    h = 1e-3
    shape = (n, n, n)
    med = ThermalMedium.uniform(shape, h, LIVER_K, LIVER_RHO, LIVER_C, 0.0, specific_heat_coeff_1_k=a_c)
    q = np.zeros(shape, np.float32)
    q[n // 4 : n // 2, n // 4 : n // 2, n // 4 : n // 2] = 3e6
    solver = BioheatSolver(med, refresh_every_steps=1)
    T = np.full(shape, 37.0, np.float32)
    run = solver.advance(T, 40.0, source_w_m3=q)
    theta = T.astype(np.float64) - 37.0
    enthalpy = float(np.sum(LIVER_RHO * LIVER_C * (theta + a_c * theta**2 / 2)) * h**3)
    constant_c = float(np.sum(LIVER_RHO * LIVER_C * theta) * h**3)
    return {
        "enthalpy_j": enthalpy,
        "injected_j": run.source_energy_j,
        "rel_error": abs(enthalpy - run.source_energy_j) / run.source_energy_j,
        "rel_error_if_c_constant": abs(constant_c - run.source_energy_j) / run.source_energy_j,
        "max_rise_K": float(theta.max()),
    }


# ------------------------------------------------------------------------------- the report rows
_row = verification_row


def _order_row(case_id: str, quantity: str, order: float, expected: float = 2.0) -> dict[str, Any]:
    return _row(case_id, quantity, order, expected, 0.15, "expected order of the scheme")


def verification_cases(quick: bool = False) -> list[dict[str, Any]]:
    """Every bioheat verification row for ``make validate`` (full resolution unless ``quick``)."""
    rows: list[dict[str, Any]] = []
    fine = (1.0, 0.5, 0.25)  # V1's tolerance is stated at h = 0.25 mm
    for w, label in ((V1_W, "w = 3.6e4"), (0.0, "w = 0")):
        res = case_point_source(fine, perfusion_w_m3k=w, radii_mm=(5.0, 10.0), half_width_mm=12.0)
        refs = {5.0: 82.1, 10.0: 11.0} if w else {5.0: 306.0, 10.0: 153.0}
        for r in (5.0, 10.0):
            d = res[f"theta_{r:g}mm"]
            rows.append(
                _row("V1", f"θ({r:g} mm) K, {label}, h {fine[-1]} mm", d["simulated"][-1], refs[r], 0.01, SRC_THERMAL)
            )
        rows.append(_order_row("V1", f"observed order in h, θ(5 mm), {label}", res["theta_5mm"]["orders"][-1]))
    for w, label in ((0.0, "w = 0"), (V1_W, "w = 3.6e4")):
        res = case_green(
            (1.0, 0.5, 0.25),
            perfusion_w_m3k=w,
            t0_s=10.0,
            t1_s=40.0 if quick else 120.0,
            half_width_mm=18.0 if quick else 28.0,
            dt_study_spacing_mm=0.5,
        )
        for p in (0.0, 3.0):
            d = res[f"theta_{p:g}mm"]
            rows.append(
                _row(
                    "V2",
                    f"θ(r={p:g} mm, t={res['t1_s']:g} s) K, {label}",
                    d["simulated"][-1],
                    d["exact"],
                    0.01,
                    SRC_THERMAL,
                )
            )
        rows.append(_order_row("V2", f"observed order in h (Δt ∝ h²), centre, {label}", res["theta_0mm"]["orders"][-1]))
        rows.append(_order_row("V2", f"observed order in Δt at h 0.5 mm, {label}", res["dt_order"], expected=1.0))
    sph = case_heated_sphere((1.0, 0.5, 0.25))
    for p in (0.0, 6.0):
        d = sph[f"theta_{p:g}mm"]
        rows.append(
            _row(
                "IN-BIOHEAT-SPHERE",
                f"θ(r={p:g} mm) K, heated sphere",
                d["simulated"][-1],
                d["exact"],
                0.01,
                SRC_THERMAL,
            )
        )
    rows.append(_order_row("IN-BIOHEAT-SPHERE", "observed order in h, θ(6 mm)", sph["theta_6mm"]["orders"][-1]))
    g = case_gaussian_source((0.4, 0.2, 0.1) if quick else (0.2, 0.1, 0.05))
    for t in (0.1, 1.0, 3.0, 10.0):
        d = g[f"dT_{t:g}s"]
        rows.append(
            _row("HIFU-6", f"ΔT at focus, t = {t:g} s (K)", d["simulated"][-1], d["reference"], 0.01, SRC_HIFU6)
        )
    rows.append(_order_row("HIFU-6", "observed order in Δx (Δt ∝ Δx²), ΔT(1 s)", g["dT_1s"]["orders"][-1]))
    for comp, tol in ((False, 1e-5), (True, 1e-7)):
        e = case_energy(compensated=comp)
        label = "compensated float32" if comp else "float32"
        ratio = e["stored_j"] / e["injected_j"]
        rows.append(
            _row(
                "IN-BIOHEAT-ENERGY",
                f"stored / injected energy, insulated box, {label}",
                ratio,
                1.0,
                tol,
                "conservation",
            )
        )
    c = case_heat_capacity_energy()
    ratio = c["enthalpy_j"] / c["injected_j"]
    rows.append(_row("IN-BIOHEAT-CT", "enthalpy / injected energy, c(T)", ratio, 1.0, 1e-3, "conservation"))
    kt = case_conductivity_slab()
    rise, exact_rise = kt["midpoint"] - 37.0, kt["midpoint_exact"] - 37.0
    rows.append(
        _row("IN-BIOHEAT-KT", "midpoint rise (K), k(T) slab", rise, exact_rise, 1e-3, "Kirchhoff transform, exact")
    )
    for mask in (False, True):
        rb = case_robin_slab(use_mask=mask)
        rows.append(
            _row(
                "IN-BIOHEAT-ROBIN",
                f"exit-cell T (°C), Robin {'ambient mask' if mask else 'box face'}",
                rb["exit_temperature"],
                rb["exit_temperature_exact"],
                1e-4,
                "1-D linear profile, exact",
            )
        )
    vs = case_vessel_slab()
    rows.append(
        _row(
            "IN-BIOHEAT-VESSEL",
            "wall heat flux (W/m²), Nu k_b/D wall",
            vs["simulated_flux_w_m2"],
            vs["wall_flux_w_m2"],
            1e-3,
            "1-D linear profile, exact",
        )
    )
    dp = case_dirichlet_perfused_slab()
    rows.append(
        _order_row("IN-BIOHEAT-DIRICHLET", "observed order, perfused slab between held cells", dp["orders"][-1])
    )
    return rows
