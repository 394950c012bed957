"""Verification of :mod:`insitu.physics.electric` against the spherical electrode (thermal.md §5.4 item 5, V3).

A sphere of radius a at V0 in uniform σ with its return on a concentric sphere of radius b has the
exact solution

    V = V0·a(b − r) / (r(b − a)),  Q = σV0²a²b² / ((b − a)²r⁴),  P = 4πσV0²·ab/(b − a),

which tends to V0·a/r, σV0²a²/r⁴ and 4πσaV0² (1.66 W for σ 0.33 S/m, a 1 mm, V0 20 V) as b → ∞.
Both spheres are placed with sub-voxel accuracy (Shortley–Weller face fractions), so the error is
the discretisation error alone. The problem is solved on one octant: the sphere's centre sits on a
grid vertex in the corner of the box and the box's zero-flux faces are the symmetry planes, which is
exactly the full problem at an eighth of the cost.

Each ``case_*`` function takes its grids as arguments so that tests run coarse grids and
``make validate`` (:func:`rows` with ``fine=True``) finer ones. Observed order between grids h and
h/2: p = log2(e(h)/e(h/2)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from insitu.physics.applicator import MetalSegment
from insitu.physics.bioheat_verification import observed_orders
from insitu.physics.electric import RFField
from insitu.physics.electrode_raster import face_candidates, rasterize_metal
from insitu.physics.verification import verification_row

__all__ = [
    "case_coaxial",
    "case_constant_power",
    "case_sphere",
    "rows",
    "shell_joule_exact",
    "shell_potential_exact",
    "shell_power_exact",
    "surface_ground",
]

SIGMA_S_M = 0.33  # thermal.md §5.4-5 example
RADIUS_M = 1.0e-3
V0_V = 20.0
POWER_INFINITE_W = 4.0 * math.pi * SIGMA_S_M * RADIUS_M * V0_V**2  # 1.659 W, the §5.4-5 worked number
SRC_V3 = "thermal.md §5.4-5 (closed form, exact; finite return shell b)"
SRC_COAX = "coaxial conductor, R·L = ln(b/a)/(2πσ) (closed form, exact)"


def shell_power_exact(sigma_s_m: float, a_m: float, b_m: float, v0_v: float) -> float:
    """P = 4πσV0²·ab/(b − a): power between concentric spheres a (at V0) and b (at 0)."""
    return 4.0 * math.pi * sigma_s_m * v0_v**2 * a_m * b_m / (b_m - a_m)


def shell_potential_exact(r_m: np.ndarray, a_m: float, b_m: float, v0_v: float) -> np.ndarray:
    """V = V0·a(b − r)/(r(b − a)) between the spheres."""
    return v0_v * a_m * (b_m - r_m) / (r_m * (b_m - a_m))


def shell_joule_exact(r_m: np.ndarray, sigma_s_m: float, a_m: float, b_m: float, v0_v: float) -> np.ndarray:
    """Q = σV0²a²/r⁴·(b/(b − a))² between the spheres."""
    return sigma_s_m * (v0_v * a_m * b_m / (b_m - a_m)) ** 2 / r_m**4


def _exit_distance(origin: np.ndarray, direction: np.ndarray, radius_m: float) -> np.ndarray:
    """Distance along unit ``direction`` (projected coordinates) from points inside a circle/sphere to its edge."""
    od = np.einsum("ij,ij->i", origin, direction)
    dd = np.einsum("ij,ij->i", direction, direction)
    c = np.einsum("ij,ij->i", origin, origin) - radius_m**2
    return (-od + np.sqrt(od * od - dd * c)) / dd


def surface_ground(
    shape: Sequence[int],
    spacing_m: Sequence[float],
    centre_m: Sequence[float],
    radius_m: float,
    axis: int | None = None,
    theta_min: float = 0.01,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ground on r ≥ radius about a centre (a sphere, or a cylinder along ``axis``): voxel mask and θ per face.

    θ is the exact distance from a free voxel's centre to the surface along the face normal, in spacings, on the
    faces between free and ground voxels (1 elsewhere), for :class:`RFField`'s ``ground_face_fraction``.
    """
    n = tuple(int(s) for s in shape)
    h = np.asarray(spacing_m, dtype=float)
    keep = np.ones(3) if axis is None else np.where(np.arange(3) == axis, 0.0, 1.0)
    coords = [(np.arange(n[d]) * h[d] - centre_m[d]) * keep[d] for d in range(3)]
    z, y, x = np.meshgrid(*coords, indexing="ij")
    ground = np.sqrt(z * z + y * y + x * x) >= radius_m
    fractions = tuple(np.ones(tuple(n[e] + (e == d) for e in range(3)), np.float32) for d in range(3))
    for d in range(3):
        if not keep[d]:
            continue
        idx, sign = face_candidates(~ground, ground, d)
        origin = (idx * h - np.asarray(centre_m)) * keep
        direction = np.zeros_like(origin)
        direction[:, d] = sign
        theta = np.clip(_exit_distance(origin, direction, radius_m) / h[d], theta_min, 1.0)
        face = idx.copy()
        face[:, d] += (sign > 0).astype(np.int64)
        fractions[d][tuple(face.T)] = theta
    return ground, fractions  # type: ignore[return-value]


def _octant_sphere(
    cells_per_radius: int, ratio: float, theta_min: float = 0.01
) -> tuple[RFField, np.ndarray, float, float]:
    """The V3 octant at h = a / cells_per_radius with the return at b = ratio·a: field, r per voxel, h, b."""
    a = RADIUS_M
    h = a / cells_per_radius
    b = ratio * a
    n = math.ceil(b / h + 0.5) + 1  # at least one ground layer along each axis
    centre = (-0.5 * h,) * 3  # a grid vertex: the box's faces are symmetry planes
    raster = rasterize_metal([MetalSegment(centre, centre, a)], (n, n, n), (h, h, h), theta_min)
    ground, fractions = surface_ground((n, n, n), (h, h, h), centre, b, theta_min=theta_min)
    axis = (np.arange(n) + 0.5) * h
    r = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    field = RFField((h, h, h), raster, ground, ground_face_fraction=fractions)
    return field, r, h, b


def case_sphere(
    cells_per_radius: Sequence[int] = (4, 8, 16),
    ratio: float = 8.0,
    probe_radii: Sequence[float] = (1.5, 2.0, 3.0),
    rtol: float = 1e-8,
    theta_min: float = 0.01,
) -> dict[str, Any]:
    """V3: power, potential RMS and Joule source of the spherical electrode on grids h = a / cells_per_radius."""
    a, sigma, v0 = RADIUS_M, SIGMA_S_M, V0_V
    out: dict[str, Any] = {"cells_per_radius": list(cells_per_radius), "ratio": ratio, "power_w": [], "iterations": []}
    out.update(power_error=[], rms_error=[], conductance_s=[], **{f"joule_error_{p:g}a": [] for p in probe_radii})
    for m in cells_per_radius:
        field, r, h, b = _octant_sphere(m, ratio, theta_min)
        sol = field.solve_unit(sigma, {0: 1.0}, rtol=rtol)
        exact_p = shell_power_exact(sigma, a, b, v0)
        power = 8.0 * sol.power_w(v0)
        free = ~field.fixed
        v_err = v0 * sol.potential_v[free].astype(np.float64) - shell_potential_exact(r[free], a, b, v0)
        out["power_w"].append(power)
        out["power_error"].append(power / exact_p - 1.0)
        out["rms_error"].append(float(np.sqrt(np.mean(v_err**2))) / v0)
        out["conductance_s"].append(8.0 * sol.conductance_s)
        out["iterations"].append(sol.info.iterations)
        q = sol.joule_w_m3_per_v2.astype(np.float64) * v0**2
        for p in probe_radii:
            shell = free & (np.abs(r - p * a) <= 0.5 * h)
            ratio_q = q[shell] / shell_joule_exact(r[shell], sigma, a, b, v0)
            out[f"joule_error_{p:g}a"].append(float(np.mean(ratio_q)) - 1.0)
        out["b_m"] = b
        out["power_exact_w"] = exact_p
    out["power_orders"] = observed_orders(out["power_error"])
    out["rms_orders"] = observed_orders(out["rms_error"])
    return out


def case_constant_power(cells_per_radius: int = 8, ratio: float = 8.0, power_w: float = POWER_INFINITE_W) -> dict:
    """Constant-power control: V = √(P / conductance) must deliver P (Σ Q·vol) and match the exact drive voltage."""
    field, _, h, b = _octant_sphere(cells_per_radius, ratio)
    sol = field.solve_unit(SIGMA_S_M, {0: 1.0}, rtol=1e-8)
    octant_power = power_w / 8.0
    volts = sol.voltage_for_power(octant_power)
    deposited = 8.0 * float(np.sum(sol.joule_w_m3_per_v2, dtype=np.float64)) * h**3 * volts**2
    exact_v = math.sqrt(power_w / shell_power_exact(SIGMA_S_M, RADIUS_M, b, 1.0))
    return {"voltage_v": volts, "voltage_exact_v": exact_v, "deposited_w": deposited, "target_w": power_w}


def case_coaxial(cells_per_radius: int = 4, ratio: float = 6.0, length_cells: int = 4) -> dict[str, Any]:
    """Resistance per length of a coaxial pair (inner radius a at 1 V, outer b grounded), on one quadrant."""
    a = RADIUS_M
    h = a / cells_per_radius
    b = ratio * a
    n = math.ceil(b / h + 0.5) + 1
    centre = (0.0, -0.5 * h, -0.5 * h)
    seg = MetalSegment((-a, centre[1], centre[2]), ((length_cells + 1) * h + a, centre[1], centre[2]), a)
    shape = (length_cells, n, n)
    raster = rasterize_metal([seg], shape, (h, h, h))
    ground, fractions = surface_ground(shape, (h, h, h), centre, b, axis=0)
    field = RFField((h, h, h), raster, ground, ground_face_fraction=fractions)
    sol = field.solve_unit(SIGMA_S_M, {0: 1.0}, rtol=1e-8)
    per_length = 4.0 * sol.conductance_s / (length_cells * h)  # S·m⁻¹: current per volt per metre
    exact = math.log(b / a) / (2.0 * math.pi * SIGMA_S_M)
    return {"resistance_ohm_m": 1.0 / per_length, "exact_ohm_m": exact, "rel_error": exact * per_length - 1.0}


def rows(fine: bool = True) -> list[dict[str, Any]]:
    """The electric verification rows for ``make validate`` (h down to a/16 when ``fine``, a/8 otherwise)."""
    grids = (4, 8, 16) if fine else (2, 4, 8)
    res = case_sphere(grids)
    cp = case_constant_power(grids[-1])
    coax = case_coaxial(grids[-1])
    at = f"h = a/{grids[-1]}"
    order = "Shortley–Weller electrode faces: second order expected"
    table = [
        ("V3", f"power (W), sphere a 1 mm at 20 V, σ 0.33, return b = 8a, {at}", res["power_w"][-1],
         res["power_exact_w"], 5e-3, SRC_V3),
        ("V3", f"observed order in h, power error, a/{grids[-2]} → a/{grids[-1]}", res["power_orders"][-1], 2.0,
         0.15, order),
        ("V3", f"observed order in h, RMS potential error, a/{grids[-2]} → a/{grids[-1]}", res["rms_orders"][-1],
         2.0, 0.15, order),
        ("V3", f"1 + RMS potential error / V0, {at}", 1.0 + res["rms_error"][-1], 1.0, 1e-3, SRC_V3),
        ("V3", "deposited power (W) at V = √(P/G), P = 1.66 W", cp["deposited_w"], cp["target_w"], 1e-6,
         "constant-power control: P = G·V²"),
        ("V3", f"drive voltage (V) for P = 1.66 W, {at}", cp["voltage_v"], cp["voltage_exact_v"], 5e-3, SRC_V3),
        ("IN-RF-COAX", f"resistance per length (Ω·m), b = 6a, {at}", coax["resistance_ohm_m"], coax["exact_ohm_m"],
         0.01, SRC_COAX),
    ]  # fmt: skip
    for p in (1.5, 2.0, 3.0):
        err = res[f"joule_error_{p:g}a"][-1]
        table.append(("V3", f"mean Q / exact at r = {p:g}a, {at}", 1.0 + err, 1.0, 0.01, SRC_V3))
    return [verification_row(*row) for row in table]
