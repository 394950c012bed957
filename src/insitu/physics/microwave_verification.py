"""Verification of :mod:`insitu.physics.microwave` against closed-form solutions, with measured orders.

Cases (each takes its grid spacings so tests run coarse grids and ``make validate`` finer ones; the observed
order between h and h/2 is p = log2(e(h)/e(h/2))):

- **coax, matched** (IN-MW-COAX): a coax (a = 0.5 mm, b = 1.5 mm) filled with a lossy dielectric
  (ε_r 2, σ 0.05 S/m at 2.45 GHz), fed by the TEM port and ending in a PML. Exact: S11 = 0, propagation
  constant γ = jω√(με_c), characteristic impedance Z0 = η_c/(2π)·ln(b/a) with η_c = √(μ/ε_c).
- **coax, short-circuited** (IN-MW-SHORT): lossless fill (ε_r 2), PEC short L = 20 mm below the port.
  Exact: |S11| = 1 and S11 = −e^{−2jkL}.
- **line current in liver** (IN-MW-DIPOLE): a uniform current filament I₀ on the axis over |z| ≤ ℓ/2
  (ℓ = 2 mm) in homogeneous liver at 2.45 GHz (Gabriel ε_r 43.03, σ 1.686 S/m), PMLs all round. Exact:
  the superposition of Hertzian dipoles, H_φ = ∫ I₀/(4π)·(jk/R + 1/R²)·e^{−jkR}·(r/R) dz′ and the
  corresponding E (Gauss–Legendre in z′, converged to 1e-12), compared at 3 ≤ r ≤ 10 mm, |z| ≤ 8 mm,
  i.e. the near and intermediate zone (kr ≈ 1–3.5) where SAR falls off from ~r⁻⁴ toward the
  attenuated far-field law.
- **antenna energy balance** (IN-MW-BALANCE): the Emprint-like antenna in liver: delivered power through the
  port equals absorbed + outflow into the PMLs (discrete Poynting identity), and equals P_in·(1 − |S11|²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from insitu.physics.bioheat_verification import observed_orders
from insitu.physics.dielectric import EPSILON_0, MU_0, dielectric_properties
from insitu.physics.microwave import AxisymmetricFDFD, MicrowaveModel, emprint_like_antenna, graded_edges

__all__ = [
    "case_antenna_balance",
    "case_coax_matched",
    "case_coax_short",
    "case_line_current",
    "line_current_fields",
    "microwave_rows",
]

FREQ_HZ = 2.45e9
COAX_A_M, COAX_B_M, COAX_WALL_M = 0.5e-3, 1.5e-3, 1.75e-3
SRC_COAX = "TEM coax line: γ = jω√(με_c), Z0 = η_c·ln(b/a)/(2π) (closed form, exact)"
SRC_SHORT = "short-circuited lossless line: S11 = −e^{−2jkL} (closed form, exact)"
SRC_DIPOLE = "superposed Hertzian dipoles (filament current) in lossy liver, Gabriel 1996 ε_r/σ (closed form)"


def _coax_solver(h_m: float, eps_r: float, sigma_s_m: float, length_m: float, short: bool) -> AxisymmetricFDFD:
    """A uniform coax along z, port on top; PEC short at the bottom or a 4 mm PML below."""
    a, b, w = COAX_A_M, COAX_B_M, COAX_WALL_M
    re = graded_edges([0.0, a, b, w], h_m)
    pml = 0.0 if short else 4e-3
    ze = graded_edges([0.0, pml, pml + length_m] if pml else [0.0, length_m], h_m, uniform_last=True)
    nr, nz = re.size - 1, ze.size - 1
    rc, zc = 0.5 * (re[1:] + re[:-1]), 0.5 * (ze[1:] + ze[:-1])
    pec = np.zeros((nr, nz), dtype=bool)
    pec[(rc < a) | (rc > b), :] = True
    n_pml = int(np.sum(zc < pml))
    eps = np.full((nr, nz), eps_r)
    sig = np.full((nr, nz), sigma_s_m)
    return AxisymmetricFDFD(re, ze, eps, sig, pec, FREQ_HZ, (0, n_pml, 0), (a, b, w))


def case_coax_matched(
    spacings_m: Sequence[float] = (0.25e-3, 0.125e-3, 0.0625e-3),
    eps_r: float = 2.0,
    sigma_s_m: float = 0.05,
    length_m: float = 16e-3,
) -> dict[str, Any]:
    """|S11|, relative errors of γ (from the TEM amplitude between two planes) and of Z0 (= −V/I) per spacing."""
    omega = 2.0 * math.pi * FREQ_HZ
    eps_c = EPSILON_0 * eps_r - 1j * sigma_s_m / omega
    gamma = 1j * omega * np.sqrt(MU_0 * eps_c)
    z0 = np.sqrt(MU_0 / eps_c) / (2.0 * math.pi) * math.log(COAX_B_M / COAX_A_M)
    out: dict[str, Any] = {"spacings_m": list(spacings_m), "gamma_exact": complex(gamma), "z0_exact_ohm": complex(z0)}
    out.update(s11_abs=[], gamma_error=[], z0_error=[], z0_ohm=[], balance_residual=[])
    for h in spacings_m:
        solver = _coax_solver(h, eps_r, sigma_s_m, length_m, short=False)
        sol = solver.solve(port_power_w=1.0)
        pc = solver.port_cells
        w = np.diff(solver.r_edges_m)[pc]
        amp = (sol.h_phi_a_m[pc, :] * w[:, None]).sum(axis=0) / np.sum(w / solver.r_centres_m[pc])
        zc = solver.z_centres_m
        k1, k2 = int(np.searchsorted(zc, 8e-3)), int(np.searchsorted(zc, 16e-3))  # 4 mm above the PML → port − 4 mm
        g = np.log(amp[k2] / amp[k1]) / (zc[k2] - zc[k1])  # incident wave ∝ e^{γz} (travelling −z)
        k = k2
        v = np.sum(sol.e_r_v_m[pc, k] * w)
        i_edge = 2.0 * math.pi * 0.5 * (amp[k - 1] + amp[k])
        z_num = -v / i_edge
        out["s11_abs"].append(abs(sol.s11))
        out["gamma_error"].append(abs(g - gamma) / abs(gamma))
        out["z0_error"].append(abs(z_num - z0) / abs(z0))
        out["z0_ohm"].append(complex(z_num))
        out["balance_residual"].append(sol.balance()["residual"])
    out["gamma_orders"] = observed_orders(out["gamma_error"])
    out["z0_orders"] = observed_orders(out["z0_error"])
    return out


def case_coax_short(
    spacings_m: Sequence[float] = (0.25e-3, 0.125e-3, 0.0625e-3), eps_r: float = 2.0, length_m: float = 20e-3
) -> dict[str, Any]:
    """|S11| − 1 and |S11 − (−e^{−2jkL})| per spacing for a lossless short-circuited line."""
    k = 2.0 * math.pi * FREQ_HZ * math.sqrt(MU_0 * EPSILON_0 * eps_r)
    exact = -np.exp(-2j * k * length_m)
    out: dict[str, Any] = {"spacings_m": list(spacings_m), "s11_exact": complex(exact), "s11_abs": [], "error": []}
    for h in spacings_m:
        sol = _coax_solver(h, eps_r, 0.0, length_m, short=True).solve(port_power_w=1.0)
        out["s11_abs"].append(abs(sol.s11))
        out["error"].append(abs(sol.s11 - exact))
    out["orders"] = observed_orders(out["error"])
    return out


def line_current_fields(
    r_m: np.ndarray, z_m: np.ndarray, current_a: float, length_m: float, eps_c_f_m: complex, omega: float, n: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact (H_φ, E_r, E_z) of a uniform filament current on the axis over |z′| ≤ L/2 (e^{jωt}; Gauss–Legendre)."""
    k = omega * np.sqrt(MU_0 * eps_c_f_m)
    x, w = np.polynomial.legendre.leggauss(n)
    zp = 0.5 * length_m * x
    wz = 0.5 * length_m * w
    r = np.asarray(r_m, dtype=np.float64)[..., None]
    dz = np.asarray(z_m, dtype=np.float64)[..., None] - zp
    big_r = np.sqrt(r * r + dz * dz)
    g = np.exp(-1j * k * big_r)
    sin_t, cos_t = r / big_r, dz / big_r
    pre = current_a * wz / (4.0 * np.pi)
    h = pre * (1j * k / big_r + 1.0 / big_r**2) * g * sin_t
    jwe = 1j * omega * eps_c_f_m
    e_rad = 2.0 * pre / jwe * (1.0 / big_r**3 + 1j * k / big_r**2) * g * cos_t  # E_R (spherical)
    e_th = pre / jwe * (1.0 / big_r**3 + 1j * k / big_r**2 - k * k / big_r) * g * sin_t  # E_θ
    e_r = e_rad * sin_t + e_th * cos_t
    e_z = e_rad * cos_t - e_th * sin_t
    return h.sum(axis=-1), e_r.sum(axis=-1), e_z.sum(axis=-1)


def case_line_current(
    spacings_m: Sequence[float] = (0.5e-3, 0.25e-3, 0.125e-3),
    tissue: str = "liver",
    length_m: float = 2e-3,
    domain_m: float = 20e-3,
    pml_m: float = 6e-3,
) -> dict[str, Any]:
    """Relative L2 errors of H_φ and of Q = ½σ|E|² in 3 ≤ r ≤ 10 mm, |z| ≤ 8 mm, per spacing; SAR fall-off."""
    eps_r, sigma = dielectric_properties(tissue, FREQ_HZ)
    omega = 2.0 * math.pi * FREQ_HZ
    eps_c = EPSILON_0 * eps_r - 1j * sigma / omega
    out: dict[str, Any] = {"spacings_m": list(spacings_m), "eps_r": eps_r, "sigma_s_m": sigma}
    out.update(h_error=[], q_error=[], falloff=[], falloff_exact=None)
    for h in spacings_m:
        re = graded_edges([0.0, domain_m, domain_m + pml_m], h)
        ze = graded_edges([-domain_m - pml_m, -domain_m, -length_m / 2, length_m / 2, domain_m, domain_m + pml_m], h)
        nr, nz = re.size - 1, ze.size - 1
        rc, zc = 0.5 * (re[1:] + re[:-1]), 0.5 * (ze[1:] + ze[:-1])
        pml = (int(np.sum(rc > domain_m)), int(np.sum(zc < -domain_m)), int(np.sum(zc > domain_m)))
        solver = AxisymmetricFDFD(
            re, ze, np.full((nr, nz), eps_r), np.full((nr, nz), sigma), np.zeros((nr, nz), bool), FREQ_HZ, pml
        )
        current = np.where(np.abs(zc) < length_m / 2, 1.0, 0.0)
        sol = solver.solve(axis_current_a=current)
        region = ((rc >= 3e-3) & (rc <= 10e-3))[:, None] & (np.abs(zc) <= 8e-3)[None, :]
        rr, zz = np.meshgrid(rc, zc, indexing="ij")
        h_ex, er_ex, ez_ex = line_current_fields(rr[region], zz[region], 1.0, length_m, eps_c, omega)
        vol = solver.cell_volume_m3[region]
        dh = sol.h_phi_a_m[region] - h_ex
        out["h_error"].append(float(np.sqrt(np.sum(np.abs(dh) ** 2 * vol) / np.sum(np.abs(h_ex) ** 2 * vol))))
        q_ex = 0.5 * sigma * (np.abs(er_ex) ** 2 + np.abs(ez_ex) ** 2)
        q = sol.power_density_w_m3[region]
        out["q_error"].append(float(np.sqrt(np.sum((q - q_ex) ** 2 * vol) / np.sum(q_ex**2 * vol))))
        # SAR fall-off along the row next to the mid-plane: Q(4 mm)/Q(8 mm) (cell centres, interpolated in r)
        row = int(np.argmin(np.abs(zc)))
        q_row = sol.power_density_w_m3[:, row]
        ratio = np.interp(4e-3, rc, q_row) / np.interp(8e-3, rc, q_row)
        _, er4, ez4 = line_current_fields(np.array([4e-3, 8e-3]), np.array([zc[row]] * 2), 1.0, length_m, eps_c, omega)
        q_pts = np.abs(er4) ** 2 + np.abs(ez4) ** 2
        out["falloff"].append(float(ratio))
        out["falloff_exact"] = float(q_pts[0] / q_pts[1])
    out["h_orders"] = observed_orders(out["h_error"])
    out["q_orders"] = observed_orders(out["q_error"])
    return out


def case_antenna_balance(h_fine_m: float = 0.1e-3, h_max_m: float = 1.0e-3, power_w: float = 100.0) -> dict[str, Any]:
    """Energy bookkeeping of the Emprint-like antenna in liver at ``power_w`` forward power."""
    sol = MicrowaveModel(emprint_like_antenna(), h_fine_m=h_fine_m, h_max_m=h_max_m).solve(power_w)
    bal = sol.balance()
    bal["s11_db"] = sol.s11_db
    bal["absorbed_by_material_w"] = sol.absorbed_w()
    return bal


def microwave_rows(fine: bool = True) -> list:
    """The microwave verification rows (``insitu.validation.report.Row``) for ``make validate``."""
    from insitu.validation.report import Row

    coax_h = (0.25e-3, 0.125e-3, 0.0625e-3) if fine else (0.25e-3, 0.125e-3)
    dip_h = (0.5e-3, 0.25e-3, 0.125e-3) if fine else (0.5e-3, 0.25e-3)
    m = case_coax_matched(coax_h)
    s = case_coax_short(coax_h)
    d = case_line_current(dip_h)
    b = case_antenna_balance()
    hh = f"h = {coax_h[-1] * 1e3:g} mm"
    hd = f"h = {dip_h[-1] * 1e3:g} mm"
    order = "staggered FIT, smooth grid: second order expected"
    z0_tol = 1e-3 if fine else 5e-3  # Z0 error ∝ h²: 0.8 % at 0.25 mm, 0.2 % at 0.125 mm, 0.05 % at 0.0625 mm
    rows = [
        Row.below("IN-MW-COAX", f"|S11| of a matched lossy coax (PML end), {hh}", m["s11_abs"][-1], 1e-4, SRC_COAX),
        Row.within("IN-MW-COAX", f"1 + |γ error|/|γ|, {hh}", 1.0 + m["gamma_error"][-1], 1.0, 1e-3, SRC_COAX),
        Row.within("IN-MW-COAX", f"1 + |Z0 error|/|Z0|, {hh}", 1.0 + m["z0_error"][-1], 1.0, z0_tol, SRC_COAX),
        Row.within("IN-MW-COAX", "observed order in h, γ error", m["gamma_orders"][-1], 2.0, 0.15, order),
        Row.within("IN-MW-COAX", "observed order in h, Z0 error", m["z0_orders"][-1], 2.0, 0.15, order),
        Row.within("IN-MW-SHORT", f"|S11| of a short-circuited lossless coax, {hh}", s["s11_abs"][-1], 1.0, 1e-9,
                   SRC_SHORT),
        Row.below("IN-MW-SHORT", f"|S11 − (−e^(−2jkL))|, L = 20 mm, {hh}", s["error"][-1], 1e-4, SRC_SHORT),
        Row.within("IN-MW-SHORT", "observed order in h, S11 phase error", s["orders"][-1], 2.0, 0.15, order),
        Row.below("IN-MW-DIPOLE", f"relative L2 error of H_φ, 3–10 mm from a 2 mm line current in liver, {hd}",
                  d["h_error"][-1], 0.01, SRC_DIPOLE),
        Row.below("IN-MW-DIPOLE", f"relative L2 error of Q = ½σ|E|², same region, {hd}", d["q_error"][-1], 0.02,
                  SRC_DIPOLE),
        Row.within("IN-MW-DIPOLE", "observed order in h, H_φ error", d["h_orders"][-1], 2.0, 0.25, order),
        Row.within("IN-MW-DIPOLE", "observed order in h, Q error", d["q_orders"][-1], 2.0, 0.25, order),
        Row.within("IN-MW-DIPOLE", f"SAR fall-off Q(4 mm)/Q(8 mm) at the mid-plane, {hd}", d["falloff"][-1],
                   d["falloff_exact"], 0.01 if fine else 0.03, SRC_DIPOLE),
        Row.below("IN-MW-BALANCE", "|delivered − absorbed − outflow| / incident, Emprint-like antenna, 100 W",
                  abs(b["residual"]), 1e-9, "discrete Poynting identity (exact)"),
        Row.within("IN-MW-BALANCE", "delivered power (W) vs P_in·(1 − |S11|²), 100 W", b["delivered_w"],
                   b["delivered_expected_w"], 1e-6, "TEM port power bookkeeping (exact for a lossless feed)"),
    ]  # fmt: skip
    return rows
