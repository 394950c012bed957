"""HIFU verification cases (hifu.md §8): the field engine against exact solutions, and the heating it drives.

* **HIFU-1** O'Neil on-axis, "KW-bowl" (R = D = 30 mm, 1 MHz, water 1500 m/s, 1000 kg/m³, p₀ = 1 MPa): Rayleigh
  integral onto a plane 2 mm in front of the rim, then the hybrid angular spectrum march (λ/4 lateral, λ/4 between
  planes) — the production path, in water. Peak 17.135 MPa at 28.9 mm, p(R) = 16.836 MPa.
* **HIFU-2** O'Neil focal-plane −6 dB width, KW-bowl and JC-like (R = 15 cm, D = 12 cm at 0.8 and 1.6 MHz): the
  plane is propagated to z = R in one exact spectral step (zero-padded) and the width read from a cubic spline of the
  profile. The reference 2J₁(ζ)/ζ formula is itself a small-angle approximation (hifu.md §1.1); the observed order of
  the width on refinement (λ/2 → λ/4 → λ/8) is reported separately, as the self-convergence of our own width.
* **HIFU-5** 1-D layered plane wave: water → liver transmission, 10 cm of liver at 0.5 dB/cm/MHz, and water → bone
  reflection, marched by the same code with labels varying along the beam (exact for any step: checked at two).
* **HIFU-6** Gaussian-ellipsoid heat source in the Pennes solver against the closed form, with the observed order in
  the grid spacing (the explicit step follows dx², so this is the order in dx and dt together); and CEM43 identities.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from insitu.physics import acoustics as ac
from insitu.validation.report import Row

KW = {"R": 0.030, "D": 0.030, "f": 1.0e6, "c": 1500.0, "rho": 1000.0, "p0": 1.0e6}
KW_PEAK_PA, KW_PEAK_Z_M, KW_FOCUS_PA = 17.135e6, 0.0289, 16.836e6
SOURCE_STANDOFF_M = 2.0e-3  # source plane this far in front of the rim
SRC1 = "hifu.md §8 case 1 / §4.1 (O'Neil 1949; k-Wave focusedBowlONeil)"
SRC2 = "hifu.md §8 case 2 / §2.3 (O'Neil focal-plane 2J1(ζ)/ζ, computed M)"
SRC5 = "hifu.md §8 case 5 / §3 (closed-form normal-incidence transmission, power-law attenuation)"
SRC6 = "hifu.md §8 case 6 (closed form after HITU LinearHeating.m; CEM43 Sapareto–Dewey)"


# ------------------------------------------------------------------------------------------------ case 1
def kw_axis(dx_fraction: int = 4, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(z from the apex, |p| on the axis) of the KW-bowl by Rayleigh → plane → HAS march in water."""
    bowl = ac.SphericalBowl(KW["R"], KW["D"])
    wavelength = KW["c"] / KW["f"]
    dx = wavelength / dx_fraction
    z0 = bowl.depth_m + SOURCE_STANDOFF_M
    plane = ac.source_plane(bowl, KW["f"], KW["c"], z0, dx, n)
    tables = ac.MediumTables.layers([KW["c"]], [KW["rho"]], [0.0])
    labels = np.zeros((n, n), np.uint8)
    dz = wavelength / 4
    n_planes = int((0.05 - z0) / dz) + 1
    field = ac.march(plane.field(np.array([KW["p0"]])), dx, dz, n_planes, KW["f"], tables, lambda _: labels, z0_m=z0)
    return field.z_m, np.abs(field.harmonics[0].axis_pa)


def _parabolic_peak(z: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(p))
    y0, y1, y2 = p[i - 1 : i + 2]
    d = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(y1 - 0.25 * (y0 - y2) * d), float(z[i] + d * (z[1] - z[0]))


def case1_rows(dx_fraction: int = 4, n: int = 256) -> list[Row]:
    z, p = kw_axis(dx_fraction, n)
    ref = ac.oneil_axial_pa(z, KW["R"], KW["D"] / 2, KW["f"], KW["c"], KW["p0"])
    peak, z_peak = _parabolic_peak(z, p)
    error = (p - ref) / ref.max()
    far = z > z[0] + 2 * KW["c"] / KW["f"]  # evanescent near-field of the plane: 2λ
    note = f"λ/{dx_fraction}, {n}² planes"
    at_focus = float(np.interp(KW["R"], z, p))
    return [
        Row.within("HIFU-1", f"peak on-axis pressure (Pa), {note}", peak, KW_PEAK_PA, 0.005, SRC1),
        Row.within("HIFU-1", "peak position from the apex (mm)", z_peak * 1e3, KW_PEAK_Z_M * 1e3, 0.01, SRC1),
        Row.within("HIFU-1", "pressure at the geometric focus (Pa)", at_focus, KW_FOCUS_PA, 0.01, SRC1),
        Row.below("HIFU-1", "axial L2 error (fraction of the peak)", float(np.sqrt(np.mean(error**2))), 0.01, SRC1),
        Row.below("HIFU-1", "axial L∞ error beyond 2λ from the plane (fraction)", float(np.abs(error[far]).max()),
                  0.015, SRC1 + "; ASM-from-a-near-plane tolerance 1.5 %"),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ case 2
def width_6db_m(profile: np.ndarray, x: np.ndarray) -> float:
    """Full width where a symmetric profile (peak at x = 0, index n // 2) falls to half its peak (cubic spline)."""
    c = len(x) // 2
    spline = CubicSpline(x[c:], profile[c:])
    half = 0.5 * profile[c]
    i = c
    while profile[i + 1] > half:
        i += 1
    return 2.0 * brentq(lambda s: float(spline(s)) - half, x[i], x[i + 1])


def focal_width_m(radius_m: float, diameter_m: float, frequency_hz: float, dx_fraction: float, c: float = 1500.0):
    """−6 dB width in the geometric focal plane (mean of the x and y profiles) by Rayleigh → plane → exact step."""
    import scipy.fft as sfft

    bowl = ac.SphericalBowl(radius_m, diameter_m)
    dx = c / frequency_hz / dx_fraction
    n = sfft.next_fast_len(int((diameter_m + 0.03) / dx))
    z0 = bowl.depth_m + SOURCE_STANDOFF_M
    plane = ac.source_plane(bowl, frequency_hz, c, z0, dx, n)
    p = np.abs(ac.march_water(plane.field(np.ones(1)), dx, [radius_m - z0], frequency_hz, c)[0])
    x = ac.plane_coordinates_m(n, dx)
    return 0.5 * (width_6db_m(p[n // 2, :], x) + width_6db_m(p[:, n // 2], x))


CASE2 = (("KW-bowl 1 MHz", 0.030, 0.030, 1.0e6, 2.12e-3), ("JC-like 0.8 MHz", 0.15, 0.12, 0.8e6, 3.31e-3),
         ("JC-like 1.6 MHz", 0.15, 0.12, 1.6e6, 1.65e-3))  # fmt: skip


def case2_rows(dx_fraction: int = 4, refine: bool = True) -> list[Row]:
    rows = []
    for name, r, d, f, printed in CASE2:
        exact = ac.oneil_width_6db_m(r, d / 2, f, 1500.0)
        width = focal_width_m(r, d, f, dx_fraction)
        # the read-out is sub-cell (spline), so the 2 % bound applies, not hifu.md's looser "one grid cell"
        rows.append(Row.within("HIFU-2", f"−6 dB width (mm), {name}, λ/{dx_fraction}", width * 1e3, exact * 1e3,
                               0.02, f"{SRC2}; printed {printed * 1e3:.2f} mm"))  # fmt: skip
    # the same width from the Rayleigh integral evaluated directly in the focal plane: the exact answer of our model
    # (O'Neil's 2J₁(ζ)/ζ is a small-angle approximation), isolating the plane + spectral-step error
    x = np.linspace(0.0, 2.0e-3, 201)
    bowl = ac.SphericalBowl(KW["R"], KW["D"])
    direct = np.abs(ac.rayleigh_points(bowl, np.stack([x, 0 * x, np.full_like(x, KW["R"])], 1), KW["f"], KW["c"]))
    spline = CubicSpline(x, direct)
    rayleigh_width = 2.0 * brentq(lambda s: float(spline(s)) - 0.5 * direct[0], 0.0, x[-1])
    rows.append(Row.within("HIFU-2", f"−6 dB width (mm), KW-bowl, λ/{dx_fraction} vs the direct Rayleigh integral",
                           focal_width_m(0.030, 0.030, 1.0e6, dx_fraction) * 1e3, rayleigh_width * 1e3, 0.005,
                           SRC2 + "; reference: Rayleigh quadrature at z = R"))  # fmt: skip
    if refine:  # self-convergence of the KW-bowl width: order from λ/2, λ/4, λ/8
        w = [focal_width_m(0.030, 0.030, 1.0e6, frac) for frac in (2, 4, 8)]
        order = math.log2(abs(w[0] - w[1]) / max(abs(w[1] - w[2]), 1e-30))
        rows.append(Row.in_range("HIFU-2", "observed order of the width on refinement (λ/2, λ/4, λ/8)", order,
                                 1.5, 12.0, SRC2 + "; cubic-spline read-out, expected ≥ 2"))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ case 5
WATER = (1500.0, 1000.0)
LIVER = (1578.0, 1060.0, 0.5)  # c, ρ, dB/cm/MHz (y = 1)
BONE = (2800.0, 1850.0)


def layered_plane_wave(dz_m: float, liver_db_cm_mhz: float, frequency_hz: float = 1.0e6, n: int = 8):
    """A plane wave marched through 10 mm of water and 120 mm of liver; returns (z, |p| on the axis, index of the
    first liver plane). No absorbing layer: the plane wave is laterally uniform (periodic is exact)."""
    alpha = float(ac.attenuation_np_m(liver_db_cm_mhz, 1.0, frequency_hz))
    tables = ac.MediumTables.layers([WATER[0], LIVER[0]], [WATER[1], LIVER[1]], [0.0, alpha])
    first_liver = round(0.010 / dz_m)
    n_planes = first_liver + round(0.120 / dz_m) + 1
    water = np.zeros((n, n), np.uint8)
    liver = np.ones((n, n), np.uint8)
    field = ac.march(np.ones((n, n), np.complex64), 1e-3, dz_m, n_planes, frequency_hz, tables,
                     lambda i: liver if i >= first_liver else water, absorbing_cells=0)  # fmt: skip
    return field.z_m, np.abs(field.harmonics[0].axis_pa), first_liver


def case5_rows() -> list[Row]:
    rows = []
    z1, z2 = WATER[0] * WATER[1], LIVER[0] * LIVER[1]
    for dz in (0.5e-3, 0.25e-3):
        _, p, first = layered_plane_wave(dz, 0.0)
        t = float(p[first] / p[first - 1])
        note = f"dz = {dz * 1e3:g} mm"
        rows.append(Row.within("HIFU-5", f"pressure transmission water→liver, {note}", t, 1.0544, 1e-3, SRC5))
        rows.append(Row.within("HIFU-5", f"intensity transmission water→liver, {note}", t * t * z1 / z2, 0.99704,
                               1e-3, SRC5))  # fmt: skip
        _, p, first = layered_plane_wave(dz, LIVER[2])
        ten_cm = first + round(0.100 / dz)
        ratio = float(p[ten_cm] / p[first])
        rows.append(Row.within("HIFU-5", f"pressure ratio over 10 cm of liver, {note}", ratio, 0.5623, 1e-3, SRC5))
        rows.append(Row.within("HIFU-5", f"intensity ratio over 10 cm of liver, {note}", ratio**2, 0.3162, 1e-3, SRC5))
    reflection = float(ac.pressure_reflection(z1, z2))
    rows.append(Row.within("HIFU-5", "pressure reflection water→liver", reflection, 0.0544, 1e-3, SRC5))
    rows.append(Row.within("HIFU-5", "pressure reflection water→cortical bone (2800/1850)",
                           float(ac.pressure_reflection(z1, BONE[0] * BONE[1])), 0.551, 1e-3, SRC5))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ case 6
GAUSS = {"alpha": 5.0, "i0": 1.0e7, "a": 1.0e-3, "b": 5.0e-3, "k": 0.52, "rho": 1060.0, "cp": 3600.0}
GAUSS_TIMES_S = (0.1, 1.0, 3.0, 10.0)
GAUSS_PRINTED_K = (2.550, 20.81, 45.96, 86.47)


def gaussian_rise_k(t_s: float) -> float:
    """Closed form ΔT(0, t) = αI₀a²b/(kd)·[atanh(d/b) − atanh(d/√(b² + 4κt))], d = √(b² − a²) (hifu.md §8)."""
    g = GAUSS
    kappa = g["k"] / (g["rho"] * g["cp"])
    d = math.sqrt(g["b"] ** 2 - g["a"] ** 2)
    lead = g["alpha"] * g["i0"] * g["a"] ** 2 * g["b"] / (g["k"] * d)
    return lead * (math.atanh(d / g["b"]) - math.atanh(d / math.sqrt(g["b"] ** 2 + 4 * kappa * t_s)))


def gaussian_heating(dx_m: float, half_lateral_m: float = 6e-3, half_axial_m: float = 18e-3) -> dict[float, float]:
    """ΔT at the centre at GAUSS_TIMES_S from the Pennes solver (no perfusion, box faces at the initial
    temperature), q = 2αI₀·exp(−r²/a² − z²/b²) sampled at voxel centres; the centre is a voxel centre."""
    from insitu.physics.bioheat import BioheatSolver, RobinBoundary, ThermalMedium

    g = GAUSS
    nl = 2 * round(half_lateral_m / dx_m) + 1
    na = 2 * round(half_axial_m / dx_m) + 1
    z = (np.arange(na) - na // 2) * dx_m
    y = (np.arange(nl) - nl // 2) * dx_m
    q = 2 * g["alpha"] * g["i0"] * np.exp(-(y[None, :, None] ** 2 + y[None, None, :] ** 2) / g["a"] ** 2
                                          - z[:, None, None] ** 2 / g["b"] ** 2)  # fmt: skip
    medium = ThermalMedium.uniform((na, nl, nl), dx_m, g["k"], g["rho"], g["cp"], arterial_temperature_c=37.0)
    solver = BioheatSolver(medium, robin=RobinBoundary(h_w_m2k=math.inf, ambient_c=37.0, box_faces=("all",)))
    temperature = np.full((na, nl, nl), 37.0, dtype=np.float32)
    run = solver.advance(temperature, GAUSS_TIMES_S[-1], source_w_m3=q.astype(np.float32),
                         snapshot_times_s=GAUSS_TIMES_S)  # fmt: skip
    return {t: float(run.snapshots[t][na // 2, nl // 2, nl // 2]) - 37.0 for t in GAUSS_TIMES_S}


def cem43_minutes(temperature_c: float, duration_s: float, dt_s: float = 0.5) -> float:
    """CEM43 from the damage accumulator at a constant temperature (one voxel)."""
    from insitu.physics.damage import DamageAccumulator

    acc = DamageAccumulator((1, 1, 1), models=("cem43",))
    t = np.full((1, 1, 1), temperature_c, dtype=np.float32)
    acc.observe(t)
    for _ in range(round(duration_s / dt_s)):
        acc.update(t, dt_s)
    name = next(n for n in acc.field_names() if "cem43" in n)
    return float(acc.state(name).ravel()[0])


def case6_rows(spacings_m: tuple[float, ...] = (0.5e-3, 0.25e-3, 0.125e-3)) -> list[Row]:
    rows = []
    errors = []
    for dx in spacings_m:
        rise = gaussian_heating(dx)
        errors.append(abs(rise[10.0] / gaussian_rise_k(10.0) - 1.0))
        if dx == spacings_m[-1]:
            for t, printed in zip(GAUSS_TIMES_S, GAUSS_PRINTED_K, strict=True):
                exact = gaussian_rise_k(t)
                rows.append(Row.within("HIFU-6", f"ΔT at the focus after {t:g} s (K), dx = {dx * 1e3:g} mm",
                                       rise[t], exact, 0.01, f"{SRC6}; printed {printed:g} K"))  # fmt: skip
    if len(spacings_m) >= 2:
        order = math.log(errors[-2] / errors[-1]) / math.log(spacings_m[-2] / spacings_m[-1])
        rows.append(Row.in_range("HIFU-6", "observed order in dx (dt ∝ dx²) of ΔT(10 s)", order, 1.7, 2.5, SRC6))
    rows.append(Row.within("HIFU-6", "CEM43 of 10 s at 56 °C (min)", cem43_minutes(56.0, 10.0), 1365.3, 1e-3, SRC6))
    rows.append(Row.within("HIFU-6", "CEM43 of 240 min at 43 °C (min)", cem43_minutes(43.0, 14400.0, 60.0), 240.0,
                           1e-3, SRC6))  # fmt: skip
    return rows


def hifu_rows() -> list[Row]:
    """Every HIFU verification row (hifu.md §8 cases 1, 2, 5, 6)."""
    return [*case1_rows(), *case2_rows(), *case5_rows(), *case6_rows()]
