"""Full-wave microwave fields of coaxial interstitial antennas: axisymmetric frequency-domain FDFD (TM mode).

An interstitial MW antenna is a body of revolution fed by its TEM coax, so its field has only E_r, E_z and
H_φ (thermal.md §1.3: the field's standard model is time-harmonic Maxwell in an axisymmetric domain). With
the time convention e^{jωt} and ε = ε₀ε_r − jσ/ω per cell:

    ∇×H = jωεE  (E_r = −∂_zH_φ/(jωε),  E_z = (1/r)∂_r(rH_φ)/(jωε)),    ∂_zE_r − ∂_rE_z = −jωμ₀H_φ.

**Discretisation (finite integration on a staggered r–z grid).** H_φ sits at cell centres, E_r on the
horizontal cell edges, E_z on the vertical ones (the axis included). Ampère is applied in integral form on
the dual faces (annuli and cylinder strips, so the axis needs no special case: the E_z edge on the axis
sees the disc of radius r_c[0]), Faraday on each primal cell. Permittivities are averaged over the dual
faces by area, which is exact for E tangential to a material interface. Every material interface lies
on a grid edge (the grid builder puts breakpoints there), conductors (PEC) are whole cells whose edges
carry E = 0, and only H_φ is solved for: one complex 5-point sparse system, factorised with SuperLU.
On smoothly graded grids the scheme is second-order accurate (measured in
:mod:`insitu.physics.microwave_verification`).

**Open boundaries.** Perfectly matched layers by complex coordinate stretching: inside the PML the real
coordinates r, z are replaced by r̃ = r − jS·d/(m+1)·(u/d)^{m+1} (u the depth into the layer), which is
reflectionless for the continuous problem in cylindrical coordinates too (r̃ enters the circumferences).
The z-stretch of the top layer is *not* applied inside the feed coax, whose outer conductor separates it
from the tissue: the coax runs through the top layer to the port undisturbed.

**Port.** The feed line ends at the top boundary in a TEM port. In a uniform coax the discrete TEM mode
is exact (rH_φ constant across the dielectric, E_z = 0) and obeys the 1-D recursion
H_{k+1} + H_{k−1} = (2 − k²Δz²)H_k, so its one-cell propagation factor λ = e^{−jβ̃Δz} is known exactly. The
ghost row above the port holds the incident wave (given) plus the reflected wave continued by λ: a
reflection-free discrete port that also separates the two waves, giving S11 at the port plane. Power
delivered = −½Re∮E×H* through the port; the discrete Poynting identity makes
P_delivered = P_absorbed + P_out (out = into the PMLs) hold to solver precision.

Power density Q = ½σ|E|² is assembled edge by edge (each edge's dual volume split between its two cells,
as electric.py does face by face), so Σ Q·vol equals the absorbed power of the discrete scheme.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

from insitu.errors import PhysicsError
from insitu.physics.dielectric import (
    EPSILON_0,
    MU_0,
    MW_TISSUES,
    check_frequency,
    cole_cole,
    dielectric_properties,
    heated_dielectric,
)
from insitu.tissue.library import load_library

__all__ = [
    "PEC",
    "AxisymmetricFDFD",
    "CoaxialAntenna",
    "FieldSolution",
    "Medium",
    "MicrowaveModel",
    "MicrowaveSolution",
    "choked_cooled_slot_antenna",
    "coolant_water",
    "dipole_915mhz_antenna",
    "emprint_like_antenna",
    "graded_edges",
    "ji_brace_monopole_antenna",
    "neuwave_like_antenna",
    "quarter_wavelength_m",
    "sar_to_volume",
]

C0_M_S = 1.0 / math.sqrt(EPSILON_0 * MU_0)
PML_REFLECTION = 1e-8  # design round-trip reflection of the continuous PML
PML_ORDER = 3  # polynomial grading of the stretch: s(u) = 1 − jS(u/d)^m


# --------------------------------------------------------------------------------------------
# materials
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Medium:
    """A homogeneous non-magnetic medium: relative permittivity, conductivity (S/m), density (kg/m³; 0 = no SAR)."""

    name: str
    eps_r: float
    sigma_s_m: float = 0.0
    density_kg_m3: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps_r) and self.eps_r >= 1.0 and math.isfinite(self.sigma_s_m)):
            raise PhysicsError(f"medium {self.name!r}: ε_r {self.eps_r} / σ {self.sigma_s_m} invalid", "ε_r ≥ 1, σ ≥ 0")
        if self.sigma_s_m < 0.0 or self.density_kg_m3 < 0.0:
            raise PhysicsError(f"medium {self.name!r} has negative σ or density", "give σ ≥ 0 S/m and ρ ≥ 0 kg/m³")


PEC = "pec"  # perfect electric conductor (copper, silver-plated conductors: skin depth ≈ 1 µm ≪ any cell)


def coolant_water(frequency_hz: float, temperature_c: float = 20.0) -> Medium:
    """Circulating cooling water (room temperature) as a single Debye relaxation.

    Pure water, recalled (Kaatze 1989): ε_s = 87.9·e^{−0.00458 T}, ε∞ ≈ 5.2, τ ≈ 17.7 ps·e^{−0.0265 T}·…;
    here the simple interpolation ε_s(20 °C) = 80.2, τ(20 °C) = 9.4 ps, ε_s(37 °C) = 74.2, τ(37 °C) = 6.3 ps,
    linear in T between (status: **recalled**). At 20 °C and 2.45 GHz this gives ε_r ≈ 78.4, σ ≈ 1.4 S/m
    (the "ε_r ≈ 78" of cooled-antenna models).
    """
    w = (min(max(temperature_c, 20.0), 37.0) - 20.0) / 17.0
    eps_s = 80.2 + w * (74.2 - 80.2)
    tau = 9.4e-12 + w * (6.3e-12 - 9.4e-12)
    eps_inf = 5.2
    omega = 2.0 * math.pi * frequency_hz
    eps = eps_inf + (eps_s - eps_inf) / (1.0 + 1j * omega * tau)
    return Medium("coolant water", float(eps.real), float(-omega * EPSILON_0 * eps.imag), 0.0, "Debye, recalled")


MaterialSpec = Medium | str  # a Medium, PEC, or a tissue name (Gabriel 4-Cole–Cole at the solve frequency)


# --------------------------------------------------------------------------------------------
# grid
# --------------------------------------------------------------------------------------------


def graded_edges(
    breakpoints_m: Sequence[float],
    h_max_m: float,
    fine_points_m: Sequence[float] = (),
    h_fine_m: float | None = None,
    growth: float = 1.15,
    uniform_last: bool = False,
) -> np.ndarray:
    """Cell edges with every breakpoint on an edge and spacing h(x) = min(h_max, h_fine + (growth − 1)·dist).

    dist is the distance to the nearest fine point, so spacing grows geometrically (ratio ≈ ``growth``) away
    from the fine features. Within each interval the edges equidistribute ∫dx/h. ``uniform_last`` makes the
    last interval uniformly spaced (the port layer needs an exactly uniform line).
    """
    pts = np.unique(np.asarray(breakpoints_m, dtype=np.float64))
    if pts.size < 2 or not np.all(np.isfinite(pts)):
        raise PhysicsError("a grid axis needs at least two finite breakpoints", "check the geometry dimensions")
    if not (h_max_m > 0.0 and math.isfinite(h_max_m)):
        raise PhysicsError(f"grid spacing {h_max_m!r} m is not positive", "give a positive spacing in metres")
    fine = np.asarray(fine_points_m, dtype=np.float64)
    h0 = h_max_m if h_fine_m is None else min(h_fine_m, h_max_m)

    def spacing(x: np.ndarray) -> np.ndarray:
        if fine.size == 0:
            return np.full_like(x, h_max_m)
        d = np.min(np.abs(x[:, None] - fine[None, :]), axis=1)
        return np.minimum(h_max_m, h0 + (growth - 1.0) * d)

    edges = [pts[0]]
    for n_int, (a, b) in enumerate(itertools.pairwise(pts)):
        if uniform_last and n_int == pts.size - 2:
            n = max(1, math.ceil((b - a) / float(spacing(np.array([a]))[0]) - 1e-9))
            edges.extend(a + (b - a) * np.arange(1, n + 1) / n)
            continue
        x = np.linspace(a, b, 4001)
        inv = 1.0 / spacing(x)
        s = np.concatenate([[0.0], np.cumsum(0.5 * (inv[1:] + inv[:-1]) * np.diff(x))])
        n = max(1, math.ceil(s[-1] - 1e-6))
        inner = np.interp(s[-1] * np.arange(1, n) / n, s, x)
        edges.extend(inner)
        edges.append(b)
    out = np.asarray(edges, dtype=np.float64)
    out[-1] = pts[-1]
    return out


def _stretch(x: np.ndarray, start: float, depth: float, direction: int, strength: float) -> np.ndarray:
    """Complex-stretched coordinate x̃ = x − j·dir·S·d/(m+1)·(u/d)^{m+1}, u = depth into the layer (≥ 0)."""
    if depth <= 0.0 or strength == 0.0:
        return x.astype(np.complex128)
    u = np.clip((x - start) * direction, 0.0, None) / depth
    return x - 1j * direction * strength * depth / (PML_ORDER + 1) * u ** (PML_ORDER + 1)


# --------------------------------------------------------------------------------------------
# the solver core
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run SuperLU with one BLAS thread: its small dense kernels gain nothing from threads, and OpenBLAS's
    thread spin-waits made the same factorisation take 0.05 s or 15 s at random on a shared 2-core machine
    (measured: OPENBLAS_NUM_THREADS=1 removed the outliers)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass
class FieldSolution:
    """Fields of one solve (SI, complex phasors, peak amplitudes): H_φ per cell, E_r/E_z per edge, Q per cell."""

    solver: AxisymmetricFDFD
    h_phi_a_m: np.ndarray  # (Nr, Nz) at cell centres
    e_r_v_m: np.ndarray  # (Nr, Nz+1) on horizontal edges
    e_z_v_m: np.ndarray  # (Nr+1, Nz) on vertical edges
    power_density_w_m3: np.ndarray  # (Nr, Nz) Q = ½σ|E|², edge-consistent
    s11: complex | None = None
    incident_w: float = 0.0
    delivered_w: float = 0.0

    @property
    def s11_db(self) -> float:
        """20·log10|S11| (dB)."""
        return 20.0 * math.log10(max(abs(self.s11), 1e-300)) if self.s11 is not None else math.nan

    def e_magnitude_v_m(self) -> np.ndarray:
        """|E| per cell (peak), from the same edge weights as Q (√(2Q/σ) where σ > 0)."""
        return np.sqrt(self.solver.cell_e2(self.e_r_v_m, self.e_z_v_m))

    def balance(self, physical: np.ndarray | None = None) -> dict[str, float]:
        """Energy balance over the cells in ``physical`` (default: every non-PML cell).

        Returns delivered (through the port), absorbed (edges inside the region, exact), absorbed_cells
        (Σ Q·vol over the region's cells), outflow (into the PMLs through the region's boundary) and
        residual = (delivered − absorbed − outflow)/delivered, which the discrete Poynting identity makes
        ≈ solver precision.
        """
        s = self.solver
        mask = s.physical if physical is None else physical
        absorbed = s.edge_loss(self.e_r_v_m, self.e_z_v_m, mask)
        inflow, port = s.inward_flux(self.h_phi_a_m, self.e_r_v_m, self.e_z_v_m, mask)
        outflow = port - inflow
        cells = float(np.sum(self.power_density_w_m3[mask] * s.cell_volume_m3[mask], dtype=np.float64))
        ref = max(abs(port), self.incident_w, 1e-300)
        return {
            "delivered_w": port,
            "absorbed_w": absorbed,
            "absorbed_cells_w": cells,
            "outflow_w": outflow,
            "residual": (port - absorbed - outflow) / ref,
        }


class AxisymmetricFDFD:
    """The r–z FDFD operator for given cell materials; solves for a TEM port drive and/or an axial current.

    ``r_edges_m`` starts at 0 (the axis); ``z_edges_m`` increases toward the feed, and the port (if any) is
    the top boundary. ``eps_r``/``sigma_s_m``/``pec`` are per cell (Nr, Nz). PML thicknesses are in cells,
    counted from the outer r boundary and both z ends. ``port_radii_m`` = (a, b, wall_outer): the coax
    inner and outer conductor radii at the top boundary and the outer radius of its outer conductor (the
    top PML is not applied inside it).
    """

    def __init__(
        self,
        r_edges_m: np.ndarray,
        z_edges_m: np.ndarray,
        eps_r: np.ndarray,
        sigma_s_m: np.ndarray,
        pec: np.ndarray,
        frequency_hz: float,
        pml_cells: tuple[int, int, int] = (0, 0, 0),
        port_radii_m: tuple[float, float, float] | None = None,
        pml_k_ref_per_m: float | None = None,
    ) -> None:
        self.frequency_hz = check_frequency(frequency_hz)
        self.omega = 2.0 * math.pi * self.frequency_hz
        re = np.asarray(r_edges_m, dtype=np.float64)
        ze = np.asarray(z_edges_m, dtype=np.float64)
        if re.ndim != 1 or ze.ndim != 1 or re.size < 3 or ze.size < 3 or re[0] != 0.0:
            raise PhysicsError("bad r–z grid", "r edges must start at 0 (the axis); need ≥ 2 cells per axis")
        if np.any(np.diff(re) <= 0) or np.any(np.diff(ze) <= 0):
            raise PhysicsError("grid edges are not strictly increasing", "sort the edges and remove duplicates")
        nr, nz = re.size - 1, ze.size - 1
        self.shape = (nr, nz)
        self.r_edges_m, self.z_edges_m = re, ze
        self.r_centres_m = 0.5 * (re[1:] + re[:-1])
        self.z_centres_m = 0.5 * (ze[1:] + ze[:-1])
        eps_r = np.asarray(eps_r, dtype=np.float64)
        sigma = np.asarray(sigma_s_m, dtype=np.float64)
        pec = np.asarray(pec, dtype=bool)
        for name, arr in (("eps_r", eps_r), ("sigma_s_m", sigma), ("pec", pec)):
            if arr.shape != self.shape:
                raise PhysicsError(f"{name} has shape {arr.shape}, the grid {self.shape}", "give one value per cell")
        if not (np.all(np.isfinite(eps_r[~pec])) and np.all(np.isfinite(sigma[~pec]))):
            raise PhysicsError("a permittivity or conductivity is not finite", "check the tissue temperatures")
        if np.any(eps_r[~pec] < 1.0) or np.any(sigma[~pec] < 0.0):
            raise PhysicsError("ε_r < 1 or σ < 0 in a cell", "ε_r ≥ 1 and σ ≥ 0 S/m everywhere")
        self.eps_r, self.sigma_s_m, self.pec = eps_r, sigma, pec
        self.eps_f_m = EPSILON_0 * eps_r - 1j * sigma / self.omega
        self.pml_cells = tuple(int(c) for c in pml_cells)
        self.port_radii_m = port_radii_m
        self._build_geometry(pml_k_ref_per_m)
        self._build_operator()
        self._lu: spla.SuperLU | None = None

    # -- geometry -----------------------------------------------------------------------------
    def _build_geometry(self, k_ref: float | None) -> None:
        nr, nz = self.shape
        re, ze = self.r_edges_m, self.z_edges_m
        rc, zc = self.r_centres_m, self.z_centres_m
        pr, pzl, pzh = self.pml_cells
        if pr < 0 or pzl < 0 or pzh < 0 or pr >= nr or pzl + pzh >= nz:
            raise PhysicsError(f"PML cells {self.pml_cells} do not fit a {nr}×{nz} grid", "use thinner PMLs")
        if k_ref is None:
            eps_max = float(np.max(self.eps_r[~self.pec])) if np.any(~self.pec) else 1.0
            k_ref = self.omega * math.sqrt(eps_max) / C0_M_S
        self.pml_k_ref_per_m = k_ref

        def strength(depth: float) -> float:
            return math.log(1.0 / PML_REFLECTION) * (PML_ORDER + 1) / (2.0 * k_ref * depth) if depth > 0 else 0.0

        r0, dr_pml = re[nr - pr], re[nr] - re[nr - pr]
        self.rt_e = _stretch(re, r0, dr_pml, 1, strength(dr_pml))
        self.rt_c = _stretch(rc, r0, dr_pml, 1, strength(dr_pml))
        zlo, dzl = ze[pzl], ze[pzl] - ze[0]
        zhi, dzh = ze[nz - pzh], ze[nz] - ze[nz - pzh]
        sl, sh = strength(dzl), strength(dzh)
        ze_t = ze + (_stretch(ze, zlo, dzl, -1, sl) - ze) + (_stretch(ze, zhi, dzh, 1, sh) - ze)  # disjoint layers
        zc_t = zc + (_stretch(zc, zlo, dzl, -1, sl) - zc) + (_stretch(zc, zhi, dzh, 1, sh) - zc)
        # per-cell z lengths: stretched everywhere except inside the feed coax within the top layer
        unstretched = np.zeros(self.shape, dtype=bool)
        if self.port_radii_m is not None and pzh > 0:
            wall = self.port_radii_m[2]
            unstretched[np.ix_(rc < wall, np.arange(nz) >= nz - pzh)] = True
        lo_t, hi_t = (zc_t - ze_t[:-1]), (ze_t[1:] - zc_t)
        lo_r, hi_r = (zc - ze[:-1]), (ze[1:] - zc)
        self.lo = np.where(unstretched, lo_r[None, :], lo_t[None, :])  # (Nr, Nz) complex lower half-length
        self.hi = np.where(unstretched, hi_r[None, :], hi_t[None, :])
        self.dz = self.lo + self.hi
        self.dr = np.diff(self.rt_e)  # (Nr,) complex
        self.a_minus = np.pi * (self.rt_e[1:] ** 2 - self.rt_c**2)  # part of cell i outside r_c[i]
        self.a_plus = np.pi * (self.rt_c**2 - self.rt_e[:-1] ** 2)  # part of cell i inside r_c[i]
        in_pml_r = np.arange(nr) >= nr - pr
        in_pml_z = (np.arange(nz) < pzl) | (np.arange(nz) >= nz - pzh)
        self.physical = ~(in_pml_r[:, None] | (in_pml_z[None, :] & ~unstretched)) & ~self.pec
        # real geometry for power bookkeeping (valid in the physical region)
        self.cell_volume_m3 = np.pi * (re[1:] ** 2 - re[:-1] ** 2)[:, None] * np.diff(ze)[None, :]
        self._a_minus_real = np.pi * (re[1:] ** 2 - rc**2)
        self._a_plus_real = np.pi * (rc**2 - re[:-1] ** 2)
        self._check_port()

    def _check_port(self) -> None:
        self.port_cells = np.zeros(self.shape[0], dtype=bool)
        if self.port_radii_m is None:
            return
        a, b, wall = self.port_radii_m
        if not 0.0 <= a < b < wall:
            raise PhysicsError(f"port radii {self.port_radii_m} are not 0 ≤ a < b < wall", "check the coax radii")
        rc, top = self.r_centres_m, self.shape[1] - 1
        cells = (rc > a) & (rc < b)
        if not np.any(cells):
            raise PhysicsError("no grid cell lies inside the feed coax dielectric", "refine the grid near the coax")
        if np.any(self.pec[cells, top]) or not np.all(self.pec[(rc > b) & (rc < wall), top]):
            raise PhysicsError("the top row is not a coax (dielectric between PEC walls)", "check the feed geometry")
        if a > 0.0 and not np.all(self.pec[rc < a, top]):
            raise PhysicsError("the coax inner conductor does not reach the port", "extend it to the top boundary")
        eps_port = self.eps_f_m[cells, top]
        if np.ptp(eps_port.real) > 1e-9 * abs(eps_port[0]) or np.ptp(eps_port.imag) > 1e-9 * abs(eps_port[0]):
            raise PhysicsError("the coax dielectric is not uniform at the port", "use one coax dielectric")
        dz = self.dz[cells, top]
        if np.ptp(dz.real) > 0 or np.any(dz.imag != 0):
            raise PhysicsError("the port row is stretched or uneven", "keep the PML out of the feed coax")
        self.port_cells = cells
        self.port_eps = complex(eps_port[0])
        self.port_dz = float(dz[0].real)
        k2 = self.omega**2 * MU_0 * self.port_eps
        roots = np.roots([1.0, -(2.0 - k2 * self.port_dz**2), 1.0])
        # the +z travelling root: |λ| < 1 (lossy) or, lossless, e^{−jβ̃Δz} with Im λ < 0
        lam = min(roots, key=lambda z: (round(abs(z), 12), z.imag))
        self.port_lambda = complex(lam)
        self.port_beta = complex(1j * np.log(lam) / self.port_dz)  # β̃ − jα̃ (discrete)

    # -- operator -----------------------------------------------------------------------------
    def _build_operator(self) -> None:
        nr, nz = self.shape
        jw = 1j * self.omega
        eps, pec = self.eps_f_m, self.pec
        # E_r edges (i, k), k = 0..Nz: E_r = Yr·(H[i,k−1] − H[i,k])
        yr = np.zeros((nr, nz + 1), dtype=np.complex128)
        inner = jw * (eps[:, :-1] * self.hi[:, :-1] + eps[:, 1:] * self.lo[:, 1:])
        ok = ~(pec[:, :-1] | pec[:, 1:])
        yr[:, 1:-1][ok] = 1.0 / inner[ok]
        if self.port_radii_m is not None:
            yr[self.port_cells, nz] = 1.0 / (jw * self.port_eps * self.port_dz)
        # E_z edges (i, k), i = 0..Nr: E_z = Yz·(r̃c[i]H[i,k] − r̃c[i−1]H[i−1,k])
        yz = np.zeros((nr + 1, nz), dtype=np.complex128)
        axis = jw * eps[0, :] * self.a_plus[0]
        yz[0, ~pec[0, :]] = 2.0 * np.pi / axis[~pec[0, :]]
        inner_z = jw * (eps[:-1, :] * self.a_minus[:-1, None] + eps[1:, :] * self.a_plus[1:, None])
        okz = ~(pec[:-1, :] | pec[1:, :])
        yz[1:-1, :][okz] = 2.0 * np.pi / inner_z[okz]
        self.yr, self.yz = yr, yz
        # assemble the cell equations Δr̃(E_r[k+1] − E_r[k]) − Δz̃(E_z[i+1] − E_z[i]) + jωμΔr̃Δz̃H = 0
        idx = np.arange(nr * nz).reshape(nr, nz)
        dr = self.dr[:, None]
        dz = self.dz
        rc = self.rt_c
        diag = dr * (yr[:, 1:] + yr[:, :-1]) + dz * rc[:, None] * (yz[1:, :] + yz[:-1, :]) + jw * MU_0 * dr * dz
        if self.port_radii_m is not None:
            diag[self.port_cells, nz - 1] -= (dr[self.port_cells, 0] * yr[self.port_cells, nz]) * self.port_lambda
        rows, cols, vals = [idx.ravel()], [idx.ravel()], [diag.ravel()]
        # up (k+1) and down (k−1)
        rows.append(idx[:, :-1].ravel())
        cols.append(idx[:, 1:].ravel())
        vals.append((-dr * yr[:, 1:-1]).ravel())
        rows.append(idx[:, 1:].ravel())
        cols.append(idx[:, :-1].ravel())
        vals.append((-dr * yr[:, 1:-1]).ravel())
        # right (i+1) and left (i−1)
        rows.append(idx[:-1, :].ravel())
        cols.append(idx[1:, :].ravel())
        vals.append((-dz[:-1, :] * yz[1:-1, :] * rc[1:, None]).ravel())
        rows.append(idx[1:, :].ravel())
        cols.append(idx[:-1, :].ravel())
        vals.append((-dz[1:, :] * yz[1:-1, :] * rc[:-1, None]).ravel())
        # row scaling 1/(Δr̃Δz̃) keeps the entries O(1/h²) like a Laplacian
        scale = (1.0 / (dr * dz)).ravel()
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        v = np.concatenate(vals) * scale[r]
        free = ~pec.ravel()
        self._free = free
        self._scale = scale
        a = sp.csr_matrix((v, (r, c)), shape=(nr * nz, nr * nz))
        self.matrix = a[free][:, free].tocsc()

    def _factor(self, robust: bool = False) -> spla.SuperLU:
        """SuperLU of the system: minimum-degree ordering on A + Aᵀ (the stencil is structurally symmetric)
        with relaxed pivoting, 5–30× faster than the default here; ``robust`` = COLAMD with full pivoting."""
        if robust:
            self._lu = spla.splu(self.matrix, permc_spec="COLAMD")
        elif self._lu is None:
            opts = {"SymmetricMode": True}
            self._lu = spla.splu(self.matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.1, options=opts)
        return self._lu

    def _solve_linear(self, rhs: np.ndarray) -> np.ndarray:
        """x with A x = rhs; one step of iterative refinement, and full pivoting if the backward error
        ‖Ax − b‖/(‖A‖‖x‖ + ‖b‖) stays above 1e-12."""
        norm_a = spla.norm(self.matrix, 1)

        def backward_error(x: np.ndarray) -> float:
            r = np.linalg.norm(self.matrix @ x - rhs, 1)
            return float(r / (norm_a * np.linalg.norm(x, 1) + np.linalg.norm(rhs, 1)))

        with _single_threaded_blas():
            lu = self._factor()
            x = lu.solve(rhs)
            x = x + lu.solve(rhs - self.matrix @ x)
            if not backward_error(x) < 1e-12:
                x = self._factor(robust=True).solve(rhs)
                if not backward_error(x) < 1e-10:
                    raise PhysicsError("the microwave linear system did not solve accurately", "check the geometry")
        return x

    def port_incident_power_w(self) -> float:
        """Power of the unit incident TEM wave (rH_φ = 1 A at the top row) through the port plane."""
        h = 1.0 / self.r_centres_m[self.port_cells]
        e = self.yr[self.port_cells, -1] * (h - h / self.port_lambda)
        w = 2.0 * np.pi * self.r_centres_m[self.port_cells] * self.dr[self.port_cells].real
        return float(-0.5 * np.sum(e * np.conj(h) * w).real)

    def solve(self, port_power_w: float | None = None, axis_current_a: np.ndarray | None = None) -> FieldSolution:
        """Fields for a TEM port drive of ``port_power_w`` incident (forward) power and/or an axial line current.

        ``axis_current_a`` (Nz,) is a current (A, peak) threading the axis disc of each cell row (a z-directed
        filament), used to verify against dipole fields.
        """
        nr, nz = self.shape
        b = np.zeros((nr, nz), dtype=np.complex128)
        amp = 0.0
        if port_power_w is not None:
            if self.port_radii_m is None:
                raise PhysicsError("a port power was given but the model has no port", "give port_radii_m")
            if not (math.isfinite(port_power_w) and port_power_w >= 0.0):
                raise PhysicsError(f"input power {port_power_w!r} W is negative or not finite", "give P ≥ 0 W")
            amp = math.sqrt(port_power_w / self.port_incident_power_w())
            h_inc = amp / self.r_centres_m[self.port_cells]
            b[self.port_cells, nz - 1] += (
                self.dr[self.port_cells]
                * self.yr[self.port_cells, nz]
                * h_inc
                * (1.0 / self.port_lambda - self.port_lambda)
            )
        if axis_current_a is not None:
            cur = np.asarray(axis_current_a, dtype=np.complex128)
            if cur.shape != (nz,):
                raise PhysicsError(f"axis current has shape {cur.shape}, need ({nz},)", "one value per z cell")
            b[0, :] += self.dz[0, :] * self.yz[0, :] * cur / (2.0 * np.pi)
        rhs = (b.ravel() * self._scale)[self._free]
        h = np.zeros(nr * nz, dtype=np.complex128)
        if np.any(rhs != 0):
            h[self._free] = self._solve_linear(rhs)
        h = h.reshape(nr, nz)
        e_r, e_z = self.edge_fields(h, amp, axis_current_a)
        q = 0.5 * self.sigma_s_m * self.cell_e2(e_r, e_z)
        q[self.pec] = 0.0
        sol = FieldSolution(self, h, e_r, e_z, q)
        if port_power_w is not None and amp > 0:
            w = self.dr[self.port_cells].real
            c_tot = np.sum(h[self.port_cells, -1] * w) / np.sum(w / self.r_centres_m[self.port_cells])
            sol.s11 = complex(-self.port_lambda * (c_tot - amp) / amp)
            sol.incident_w = float(port_power_w)
            rw = 2.0 * np.pi * self.r_centres_m[self.port_cells] * w
            sol.delivered_w = float(-0.5 * np.sum(e_r[self.port_cells, -1] * np.conj(h[self.port_cells, -1]) * rw).real)
        elif port_power_w is not None:
            sol.s11, sol.incident_w = 0j, 0.0
        return sol

    def edge_fields(
        self, h: np.ndarray, port_amplitude: float = 0.0, axis_current_a: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """E_r (Nr, Nz+1) and E_z (Nr+1, Nz) from H_φ, with the port's ghost row and any axial current."""
        nr, nz = self.shape
        e_r = np.zeros((nr, nz + 1), dtype=np.complex128)
        e_r[:, 1:-1] = self.yr[:, 1:-1] * (h[:, :-1] - h[:, 1:])
        if self.port_radii_m is not None:
            pc = self.port_cells
            h_inc = port_amplitude / self.r_centres_m[pc]
            ghost = h_inc / self.port_lambda + (h[pc, -1] - h_inc) * self.port_lambda
            e_r[pc, -1] = self.yr[pc, -1] * (h[pc, -1] - ghost)
        e_z = np.zeros((nr + 1, nz), dtype=np.complex128)
        rch = self.rt_c[:, None] * h
        e_z[0, :] = self.yz[0, :] * rch[0, :]
        if axis_current_a is not None:
            e_z[0, :] -= self.yz[0, :] * np.asarray(axis_current_a) / (2.0 * np.pi)
        e_z[1:-1, :] = self.yz[1:-1, :] * (rch[1:, :] - rch[:-1, :])
        return e_r, e_z

    # -- power bookkeeping (real geometry; meaningful in the physical region) --------------------
    def cell_e2(self, e_r: np.ndarray, e_z: np.ndarray) -> np.ndarray:
        """|E|² per cell: each edge's |E|² weighted by the share of its dual volume inside the cell."""
        dz = np.diff(self.z_edges_m)[None, :]
        lo = (self.z_centres_m - self.z_edges_m[:-1])[None, :]
        hi = (self.z_edges_m[1:] - self.z_centres_m)[None, :]
        er2 = (np.abs(e_r[:, :-1]) ** 2 * lo + np.abs(e_r[:, 1:]) ** 2 * hi) / dz
        area = (self._a_plus_real + self._a_minus_real)[:, None]
        ez2 = (
            np.abs(e_z[:-1, :]) ** 2 * self._a_plus_real[:, None]
            + np.abs(e_z[1:, :]) ** 2 * self._a_minus_real[:, None]
        )
        return er2 + ez2 / area

    def edge_loss(self, e_r: np.ndarray, e_z: np.ndarray, mask: np.ndarray) -> float:
        """½Σσ̄|E|²V over the edges whose neighbouring cells are all in ``mask`` (exact discrete loss)."""
        s, rc = self.sigma_s_m, self.r_centres_m
        dr = np.diff(self.r_edges_m)
        lo = (self.z_centres_m - self.z_edges_m[:-1])[None, :]
        hi = (self.z_edges_m[1:] - self.z_centres_m)[None, :]
        both_r = mask[:, :-1] & mask[:, 1:]
        vr = 2.0 * np.pi * (rc * dr)[:, None] * (s[:, :-1] * hi[:, :-1] + s[:, 1:] * lo[:, 1:])
        loss = np.sum((np.abs(e_r[:, 1:-1]) ** 2 * vr)[both_r])
        dz = np.diff(self.z_edges_m)[None, :]
        both_z = mask[:-1, :] & mask[1:, :]
        vz = (s[:-1, :] * self._a_minus_real[:-1, None] + s[1:, :] * self._a_plus_real[1:, None]) * dz
        loss += np.sum((np.abs(e_z[1:-1, :]) ** 2 * vz)[both_z])
        v0 = s[0, :] * self._a_plus_real[0] * dz[0]
        loss += np.sum((np.abs(e_z[0, :]) ** 2 * v0)[mask[0, :]])
        return float(0.5 * loss)

    def inward_flux(self, h: np.ndarray, e_r: np.ndarray, e_z: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
        """(net inward power through the boundary of ``mask``, the port's share of it), exact discrete form."""
        rc = self.r_centres_m
        dr = np.diff(self.r_edges_m)
        wr = (2.0 * np.pi * rc * dr)[:, None]
        hc = np.conj(h)
        flux = 0.0
        # horizontal edges between (i,k−1) below and (i,k) above
        below, above = mask[:, :-1], mask[:, 1:]
        t = e_r[:, 1:-1] * wr
        flux += np.sum((-t * hc[:, :-1])[below & ~above].real)  # top of a cell in the set
        flux += np.sum((t * hc[:, 1:])[above & ~below].real)  # bottom of a cell in the set
        # top boundary (the port): top edge of row Nz−1
        port = float(0.5 * np.sum((-e_r[:, -1] * wr[:, 0] * hc[:, -1])[mask[:, -1]].real))
        flux += np.sum((e_r[:, 0] * wr[:, 0] * hc[:, 0])[mask[:, 0]].real)  # bottom boundary (E_r = 0 there)
        # vertical edges between (i−1,k) left and (i,k) right
        dz = np.diff(self.z_edges_m)[None, :]
        left, right = mask[:-1, :], mask[1:, :]
        ez = e_z[1:-1, :] * dz * 2.0 * np.pi
        flux += np.sum((ez * rc[:-1, None] * hc[:-1, :])[left & ~right].real)
        flux += np.sum((-ez * rc[1:, None] * hc[1:, :])[right & ~left].real)
        flux += np.sum((e_z[-1, :] * dz[0] * 2.0 * np.pi * rc[-1] * hc[-1, :])[mask[-1, :]].real)
        return float(0.5 * flux) + port, port


# --------------------------------------------------------------------------------------------
# antennas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoaxialAntenna:
    """An interstitial coaxial MW antenna, axisymmetric, tip at z = 0 and the feed toward +z (metres).

    ``kind``:
    - ``"slot"``: the outer conductor runs to the tip, where a conducting cap shorts it to the inner
      conductor; an annular slot of ``slot_width_m`` cut in the outer conductor with its distal edge at
      ``radiator_length_m`` from the tip radiates (the gap-fed dipole whose distal arm is shorted to the
      inner conductor; the classic single-slot interstitial antenna).
    - ``"monopole"``: the coax ends at ``radiator_length_m`` from the tip and the inner conductor continues
      to the tip, bare (``monopole_sheath=False``) or in the coax dielectric.

    Optional choke: a conducting sleeve over the outer conductor (``choke_*``; open distal end at
    ``choke_start_m`` from the tip, shorted proximal end), filled with ``choke_eps_r``.
    Optional catheter: a closed tube of outer radius ``catheter_outer_radius_m`` and wall
    ``catheter_thickness_m`` reaching ``catheter_tip_m`` beyond the tip, its lumen filled with cooling water
    when ``cooled`` (else with the catheter material).
    ``sources`` names where each dimension comes from and its status.
    """

    name: str
    frequency_hz: float
    inner_radius_m: float
    dielectric_radius_m: float
    dielectric_eps_r: float
    outer_conductor_thickness_m: float
    kind: Literal["slot", "monopole"]
    radiator_length_m: float
    slot_width_m: float = 1.0e-3
    monopole_sheath: bool = False
    choke_start_m: float | None = None
    choke_length_m: float = 0.0
    choke_gap_m: float = 0.0
    choke_thickness_m: float = 0.0
    choke_eps_r: float = 2.1
    catheter_outer_radius_m: float | None = None
    catheter_thickness_m: float = 0.0
    catheter_eps_r: float = 2.1
    catheter_tip_m: float = 0.0
    cooled: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_frequency(self.frequency_hz)
        a, b, t = self.inner_radius_m, self.dielectric_radius_m, self.outer_conductor_thickness_m
        nums = (a, b, t, self.dielectric_eps_r, self.radiator_length_m, self.slot_width_m)
        if not all(math.isfinite(float(v)) for v in nums):
            raise PhysicsError(f"antenna {self.name!r} has a non-finite dimension", "give finite sizes in metres")
        if not 0.0 < a < b:
            raise PhysicsError(
                f"antenna {self.name!r}: coax inner radius {a} m is not below the outer (dielectric) radius {b} m",
                "give 0 < inner_radius_m < dielectric_radius_m",
            )
        if t <= 0.0 or self.radiator_length_m <= 0.0 or self.dielectric_eps_r < 1.0:
            raise PhysicsError(
                f"antenna {self.name!r}: outer conductor, radiator length or coax ε_r invalid",
                "give a positive thickness and length and ε_r ≥ 1",
            )
        if self.kind not in ("slot", "monopole"):
            raise PhysicsError(f"unknown antenna kind {self.kind!r}", 'use "slot" or "monopole"')
        if self.kind == "slot" and not 0.0 < self.slot_width_m:
            raise PhysicsError("the slot width must be positive", "give slot_width_m > 0")
        if self.choke_start_m is not None:
            self._check_choke()
        if self.catheter_outer_radius_m is not None:
            inner = self.catheter_outer_radius_m - self.catheter_thickness_m
            if self.catheter_thickness_m <= 0.0 or inner <= self.shield_radius_m:
                raise PhysicsError(
                    f"antenna {self.name!r}: the catheter lumen (r < {inner} m) does not clear the conductors "
                    f"(r ≤ {self.shield_radius_m} m)",
                    "make the catheter wider or thinner-walled",
                )

    def _check_choke(self) -> None:
        """The choke is a dielectric-filled sleeve longer than its shorting wall, behind the radiating section."""
        sizes = (self.choke_start_m, self.choke_length_m, self.choke_gap_m, self.choke_thickness_m, self.choke_eps_r)
        if not all(math.isfinite(float(v)) for v in sizes):
            raise PhysicsError(f"antenna {self.name!r} has a non-finite choke dimension", "give finite sizes in metres")
        if self.choke_gap_m <= 0.0 or self.choke_thickness_m <= 0.0 or self.choke_eps_r < 1.0:
            raise PhysicsError(
                f"antenna {self.name!r}: choke gap {self.choke_gap_m} m, wall {self.choke_thickness_m} m or "
                f"ε_r {self.choke_eps_r} invalid",
                "give choke_gap_m > 0, choke_thickness_m > 0 and choke_eps_r ≥ 1",
            )
        if self.choke_length_m <= self.choke_thickness_m:
            raise PhysicsError(
                f"antenna {self.name!r}: choke length {self.choke_length_m} m is not longer than its shorting wall "
                f"({self.choke_thickness_m} m)",
                "give choke_length_m = the dielectric-filled length + choke_thickness_m",
            )
        radiator_end = self.radiator_length_m + (self.slot_width_m if self.kind == "slot" else 0.0)
        if self.choke_start_m < radiator_end:
            raise PhysicsError(
                f"antenna {self.name!r}: the choke's open end ({self.choke_start_m} m from the tip) covers the "
                f"radiating section (to {radiator_end} m)",
                f"give choke_start_m ≥ {radiator_end} m",
            )

    @property
    def wall_radius_m(self) -> float:
        """Outer radius of the coax outer conductor."""
        return self.dielectric_radius_m + self.outer_conductor_thickness_m

    @property
    def shield_radius_m(self) -> float:
        """Outermost conductor radius (outer conductor or choke sleeve)."""
        if self.choke_start_m is None:
            return self.wall_radius_m
        return self.wall_radius_m + self.choke_gap_m + self.choke_thickness_m

    def regions(self, z_top_m: float, coolant: Medium, coax: Medium, catheter: Medium) -> list[tuple]:
        """Painting list [(r0, r1, z0, z1, material)] applied in order over the tissue."""
        a, b, w = self.inner_radius_m, self.dielectric_radius_m, self.wall_radius_m
        t = self.outer_conductor_thickness_m
        out: list[tuple] = []
        if self.catheter_outer_radius_m is not None:
            ro = self.catheter_outer_radius_m
            ri = ro - self.catheter_thickness_m
            z_end = -self.catheter_tip_m
            out.append((0.0, ro, z_end, z_top_m, catheter))
            lumen = coolant if self.cooled else catheter
            out.append((0.0, ri, z_end + self.catheter_thickness_m, z_top_m, lumen))
        if self.kind == "slot":
            out.append((b, w, 0.0, z_top_m, PEC))  # outer conductor to the tip
            out.append((a, b, 0.0, z_top_m, coax))
            out.append((0.0, a, 0.0, z_top_m, PEC))
            out.append((0.0, w, -t, 0.0, PEC))  # short-circuit cap
            z0 = self.radiator_length_m
            out.append((b, w, z0, z0 + self.slot_width_m, coax))  # the slot, filled with the coax dielectric
        else:
            zc = self.radiator_length_m
            out.append((b, w, zc, z_top_m, PEC))
            out.append((a, b, zc if not self.monopole_sheath else 0.0, z_top_m, coax))
            out.append((0.0, a, 0.0, z_top_m, PEC))
        if self.choke_start_m is not None:
            z0, z1 = self.choke_start_m, self.choke_start_m + self.choke_length_m
            g = w + self.choke_gap_m
            out.append((w, g, z0, z1, Medium("choke dielectric", self.choke_eps_r)))
            out.append((g, g + self.choke_thickness_m, z0, z1, PEC))
            out.append((w, g + self.choke_thickness_m, z1 - self.choke_thickness_m, z1, PEC))
        return out

    def r_breakpoints(self) -> list[float]:
        pts = [self.inner_radius_m, self.dielectric_radius_m, self.wall_radius_m]
        if self.choke_start_m is not None:
            pts += [self.wall_radius_m + self.choke_gap_m, self.shield_radius_m]
        if self.catheter_outer_radius_m is not None:
            pts += [self.catheter_outer_radius_m - self.catheter_thickness_m, self.catheter_outer_radius_m]
        return pts

    def z_breakpoints(self) -> list[float]:
        pts = [0.0, self.radiator_length_m]
        if self.kind == "slot":
            pts += [-self.outer_conductor_thickness_m, self.radiator_length_m + self.slot_width_m]
        if self.choke_start_m is not None:
            z1 = self.choke_start_m + self.choke_length_m
            pts += [self.choke_start_m, z1, z1 - self.choke_thickness_m]
        if self.catheter_outer_radius_m is not None:
            pts += [-self.catheter_tip_m, -self.catheter_tip_m + self.catheter_thickness_m]
        return pts


_UT047 = "UT-047 semi-rigid coax (centre 0.287 mm, PTFE 0.94 mm, jacket 1.19 mm diameters), recalled"
_UT085 = (
    "UT-085 coax radii 0.255 / 0.84 / 1.1 mm as in the Ji & Brace 2011 monopole geometry restated in "
    "github.com/sheldonkhall/MITA-model mesh/ji-brace-2011.geo (confirmed in that code restatement)"
)


def emprint_like_antenna(frequency_hz: float = 2.45e9) -> CoaxialAntenna:
    """A generic water-cooled 2.45 GHz slot antenna in a 13-gauge catheter ("Emprint-like", not vendor data).

    Sizes: 13 G shaft, outer diameter 2.41 mm (gauge table, recalled); UT-047 coax (recalled); slot 1 mm wide
    with its distal edge 5 mm from the shorted tip (assumed: ≈ a quarter wavelength in the water-loaded
    surroundings); catheter wall 0.2 mm, ε_r 3.0 (a polymer/glass-fibre composite, 2.5–4.5; recalled);
    closed catheter tip 2 mm beyond the antenna. The vendor's choke/"thermosphere" design is not public and
    is not modelled: this antenna reproduces the class (cooled, slot-fed, 13 G), not the device. The same antenna
    with a quarter-wave choke is :func:`choked_cooled_slot_antenna`.
    """
    return CoaxialAntenna(
        name="emprint-like cooled slot 2.45 GHz",
        frequency_hz=frequency_hz,
        inner_radius_m=0.1435e-3,
        dielectric_radius_m=0.47e-3,
        dielectric_eps_r=2.03,
        outer_conductor_thickness_m=0.125e-3,
        kind="slot",
        radiator_length_m=5.0e-3,
        slot_width_m=1.0e-3,
        catheter_outer_radius_m=1.205e-3,
        catheter_thickness_m=0.2e-3,
        catheter_eps_r=3.0,
        catheter_tip_m=2.0e-3,
        cooled=True,
        sources={
            "coax": _UT047,
            "PTFE ε_r 2.03": "PTFE dielectric constant 2.0–2.1, recalled",
            "shaft": "13 gauge = 2.413 mm outer diameter, recalled (Emprint antennas are 13 G, recalled)",
            "slot, catheter": "assumed generic values (status: recalled/assumed), not vendor data",
        },
    )


def quarter_wavelength_m(eps_r: float, frequency_hz: float = 2.45e9) -> float:
    """λ/4 of a TEM wave in a lossless dielectric: c/(4f√ε_r) (PTFE ε_r 2.1 at 2.45 GHz: 21.1 mm)."""
    return C0_M_S / (4.0 * check_frequency(frequency_hz) * math.sqrt(eps_r))


# The choked cooled antenna's choke (choked_cooled_slot_antenna): a PTFE-filled sleeve shorted at its proximal end
CHOKE_EPS_R = 2.1  # PTFE 2.0–2.1, recalled; Longo et al. 2003 as restated in MITA-model use 2.1 (confirmed there)
CHOKE_GAP_M = 0.2e-3  # outer conductor (r 0.595 mm) to sleeve (r 0.795 mm): assumed, fits the 13 G lumen
CHOKE_WALL_M = 0.1e-3  # sleeve and shorting wall: assumed (thin-wall tube); PEC is exact at skin depth ≈ 1.3 µm
CHOKE_LINE_M = 13.5e-3  # dielectric-filled length: the in-situ quarter-wave resonance (derived, see the builder)
CHOKE_OPEN_END_M = 17.5e-3  # open end from the tip: the best input match at 2.45 GHz in liver (derived)


def choked_cooled_slot_antenna() -> CoaxialAntenna:
    """The Emprint-like cooled slot antenna with a quarter-wave choke (a generic design, not a vendor's).

    Radiating section, coax, coolant and catheter are those of :func:`emprint_like_antenna`; a PTFE-filled
    conducting sleeve (gap 0.2 mm, wall 0.1 mm, outer radius 0.895 mm: a 0.11 mm coolant channel remains in the
    1.005 mm lumen) is shorted to the outer conductor at its proximal end. A shorted line a quarter wave long shows an
    open circuit at its mouth, so the current on the outside of the outer conductor — the antenna's proximal arm,
    which without a choke runs back along the shaft as a guided wave (measured with this solver: wavelength 26 mm,
    current 1/e length 21 mm) — stops at the mouth, and the antenna becomes a dipole from the tip to the mouth.

    Design, at 2.45 GHz in liver at 37 °C (full-wave, this solver; status derived):
    - **choke length**: λ/4 in PTFE is 21.1 mm, but the open end sits in the coolant water (ε_r ≈ 78 against 2.1):
      its fringe capacitance loads the line (≈ 3.5 pF across the 12 Ω choke line, about 0.25 mm of water-filled
      line), so the sleeve resonates — the shaft current beyond it is smallest — at a dielectric length of
      13.5 mm (0.64 of the free λ/4); a free-λ/4 sleeve at the same place leaves 9 % of the power > 30 mm back
      (13 % without a choke, 3 % with this one). Without the water (an uncooled lumen) the free λ/4 is the better
      choke, as a shorted line should be.
    - **open end**: 17.5 mm from the tip (the proximal arm 11.5 mm behind the slot), the best input match (S11 ≈
      −11 dB) with that choke; the match varies by < 0.5 dB for ±1 mm.
    Nothing here is fitted to ablation-zone data. The backward power (tissue > 30 mm behind the tip) falls from
    13 % to 3 % of the absorbed power (tests/test_microwave.py). The price: the strong field at the choke's mouth
    lies in the lossy coolant, which takes 18 % of the delivered power (10 % without the choke).
    """
    base = emprint_like_antenna()
    return replace(
        base,
        name="choked cooled slot 2.45 GHz",
        choke_start_m=CHOKE_OPEN_END_M,
        choke_length_m=CHOKE_LINE_M + CHOKE_WALL_M,
        choke_gap_m=CHOKE_GAP_M,
        choke_thickness_m=CHOKE_WALL_M,
        choke_eps_r=CHOKE_EPS_R,
        sources={
            **base.sources,
            "choke principle": "a shorted λ/4 coaxial sleeve blocks shield currents: Ladd & Quick 2000, Magn Reson Med "
            "43:615 (λ/4 coaxial chokes on catheter cables; abstract read, confirmed); choked interstitial MW "
            "antennas: Longo et al. 2003 IEEE TBME 50:82 and Bertram et al. 2006 BioMed Eng OnLine 5:15 (abstracts)",
            "choke dielectric": "PTFE ε_r 2.1: Longo et al. 2003 as restated in github.com/sheldonkhall/MITA-model "
            "mesh/tosoratti-2003.geo (22 mm PTFE choke over 0.595 mm coax; confirmed in that restatement)",
            "choke gap, wall": "assumed (0.2 / 0.1 mm, to fit the 13 G lumen)",
            "choke length, open end": "derived: in-situ resonance and best match, full-wave sweep with this solver",
        },
    )


def dipole_915mhz_antenna() -> CoaxialAntenna:
    """A 915 MHz gap-fed dipole (distal arm shorted to the inner conductor) on UT-085 coax, in a PTFE sheath.

    The distal arm (tip to gap) is 14 mm ≈ λ/4 in liver at 915 MHz (λ ≈ 48 mm: c/(f√46.8), derived) with a
    1 mm gap; catheter 0.15 mm PTFE-like wall (ε_r 2.1) over the 1.1 mm coax jacket. Dimensions are typical of
    published 915 MHz interstitial dipoles (recalled), not a specific device.
    """
    return CoaxialAntenna(
        name="915 MHz dipole",
        frequency_hz=915e6,
        inner_radius_m=0.255e-3,
        dielectric_radius_m=0.84e-3,
        dielectric_eps_r=2.03,
        outer_conductor_thickness_m=0.26e-3,
        kind="slot",
        radiator_length_m=14.0e-3,
        slot_width_m=1.0e-3,
        catheter_outer_radius_m=1.3e-3,
        catheter_thickness_m=0.15e-3,
        catheter_eps_r=2.1,
        catheter_tip_m=1.0e-3,
        cooled=False,
        sources={"coax": _UT085, "arm, gap, sheath": "λ/4 design (derived) and typical values (recalled)"},
    )


def neuwave_like_antenna() -> CoaxialAntenna:
    """A generic 17-gauge gas-cooled 2.45 GHz antenna ("NeuWave-like", not vendor data).

    17 G shaft (1.47 mm, ISO 9626); UT-034-class coax (0.20 / 0.66 / 0.86 mm diameters, recalled); slot 1 mm wide, its
    distal edge 6 mm from the tip (assumed); catheter wall 0.1 mm, ε_r 2.1. The CO₂-cooled lumen is modelled as the
    catheter's dielectric (ε_r 2.1 instead of gas, ε_r 1: assumed), so the EM model is the uncooled variant; the
    cooling is the thermal wall. Status: recalled/assumed throughout.
    """
    return CoaxialAntenna(
        name="neuwave-like gas-cooled slot 2.45 GHz",
        frequency_hz=2.45e9,
        inner_radius_m=0.1e-3,
        dielectric_radius_m=0.33e-3,
        dielectric_eps_r=2.03,
        outer_conductor_thickness_m=0.1e-3,
        kind="slot",
        radiator_length_m=6.0e-3,
        slot_width_m=1.0e-3,
        catheter_outer_radius_m=0.735e-3,
        catheter_thickness_m=0.1e-3,
        catheter_eps_r=2.1,
        catheter_tip_m=1.5e-3,
        cooled=False,
        sources={
            "shaft": "17 gauge = 1.47 mm outer diameter (ISO 9626); NeuWave 17 G probes recalled",
            "coax": "UT-034 class semi-rigid coax, recalled",
            "slot, catheter, lumen": "assumed generic values, not vendor data",
        },
    )


def ji_brace_monopole_antenna() -> CoaxialAntenna:
    """The 2.45 GHz monopole of Ji & Brace 2011: UT-085 coax whose bare inner conductor extends 13 mm.

    Geometry as restated in github.com/sheldonkhall/MITA-model mesh/ji-brace-2011.geo (inner 0.255 mm,
    dielectric 0.84 mm, jacket 1.1 mm radius; 13 mm bare inner conductor; dielectric ε_r 2.05): confirmed in
    that code restatement, not in the paper.
    """
    return CoaxialAntenna(
        name="Ji & Brace 2011 monopole",
        frequency_hz=2.45e9,
        inner_radius_m=0.255e-3,
        dielectric_radius_m=0.84e-3,
        dielectric_eps_r=2.05,
        outer_conductor_thickness_m=0.26e-3,
        kind="monopole",
        radiator_length_m=13.0e-3,
        sources={"geometry": _UT085},
    )


# --------------------------------------------------------------------------------------------
# the antenna-in-tissue model
# --------------------------------------------------------------------------------------------


@dataclass
class MicrowaveSolution:
    """Fields and power bookkeeping of an antenna in tissue (SI; fields are peak phasors)."""

    model: MicrowaveModel
    fields: FieldSolution
    input_power_w: float

    @property
    def s11(self) -> complex:
        """Reflection coefficient at the port plane (voltage wave ratio)."""
        return complex(self.fields.s11)

    @property
    def s11_db(self) -> float:
        return self.fields.s11_db

    @property
    def delivered_w(self) -> float:
        """Power into the antenna: P_in·(1 − |S11|²) (computed as the port's Poynting flux)."""
        return self.fields.delivered_w

    @property
    def power_density_w_m3(self) -> np.ndarray:
        """Q = ½σ|E|² per (r, z) cell (W/m³; 0 in conductors)."""
        return self.fields.power_density_w_m3

    @property
    def sar_w_kg(self) -> np.ndarray:
        """SAR = Q/ρ per cell in tissue (W/kg); 0 in antenna, catheter and coolant cells."""
        rho = self.model.density_kg_m3
        out = np.zeros_like(rho)
        np.divide(self.power_density_w_m3, rho, out=out, where=rho > 0)
        return out

    def absorbed_w(self) -> dict[str, float]:
        """Σ Q·vol by material over the physical (non-PML) cells."""
        vol = self.fields.solver.cell_volume_m3
        phys = self.fields.solver.physical
        out: dict[str, float] = {}
        for name in np.unique(self.model.material_names[phys]):
            m = phys & (self.model.material_names == name)
            out[str(name)] = float(np.sum(self.power_density_w_m3[m] * vol[m], dtype=np.float64))
        return out

    def balance(self) -> dict[str, float]:
        """Energy balance: incident, reflected, delivered, absorbed, outflow (into the PMLs), residual."""
        bal = self.fields.balance()
        bal["incident_w"] = self.input_power_w
        bal["reflected_w"] = self.input_power_w * abs(self.s11) ** 2
        bal["delivered_expected_w"] = self.input_power_w * (1.0 - abs(self.s11) ** 2)
        return bal

    @property
    def r_centres_m(self) -> np.ndarray:
        return self.model.solver.r_centres_m

    @property
    def z_centres_m(self) -> np.ndarray:
        return self.model.solver.z_centres_m


class MicrowaveModel:
    """An antenna in a homogeneous tissue cylinder, on a graded r–z grid with PMLs; solve() gives fields and SAR.

    The tissue region is r ≤ ``tissue_radius_m``, −``below_tip_m`` ≤ z ≤ ``above_tip_m`` (tip at z = 0; defaults
    30, 40, 20 mm at 2.45 GHz and twice that below 1.5 GHz);
    PMLs of ``pml_m`` surround it and the feed coax runs through the top layer to the port. Spacing:
    ``h_fine_m`` at conductor and catheter surfaces and slot/tip edges, growing by ``growth`` per cell to
    ``h_max_m``.
    """

    def __init__(
        self,
        antenna: CoaxialAntenna,
        tissue: str = "liver",
        tissue_radius_m: float | None = None,
        above_tip_m: float | None = None,
        below_tip_m: float | None = None,
        pml_m: float = 8e-3,
        h_fine_m: float = 0.1e-3,
        h_max_m: float = 1.0e-3,
        growth: float = 1.2,
        temperature_c: np.ndarray | None = None,
        temperature_mode: str = "relative",
    ) -> None:
        self.antenna = antenna
        self.tissue = tissue
        f = antenna.frequency_hz
        self.frequency_hz = f
        cole_cole(tissue)  # unknown tissue → one-line error now
        # default domain: 30/40/20 mm at 2.45 GHz; twice that below 1.5 GHz, where liver attenuates about half as
        # fast (field 1/e length 21 mm at 2.45 GHz, 43 mm at 915 MHz, from the Gabriel values: derived)
        scale = 2.0 if f < 1.5e9 else 1.0
        tissue_radius_m = 30e-3 * scale if tissue_radius_m is None else tissue_radius_m
        above_tip_m = 40e-3 * scale if above_tip_m is None else above_tip_m
        below_tip_m = 20e-3 * scale if below_tip_m is None else below_tip_m
        for name, v in (("tissue_radius_m", tissue_radius_m), ("above_tip_m", above_tip_m), ("pml_m", pml_m)):
            if not (math.isfinite(v) and v > 0):
                raise PhysicsError(f"{name} = {v!r} is not positive", "give the domain sizes in metres")
        if tissue_radius_m <= 2 * antenna.shield_radius_m or above_tip_m <= antenna.radiator_length_m + 2e-3:
            raise PhysicsError("the tissue domain does not clear the antenna", "enlarge tissue_radius_m/above_tip_m")
        ant_r = antenna.r_breakpoints()
        ant_z = antenna.z_breakpoints()
        r_bp = [0.0, *ant_r, tissue_radius_m, tissue_radius_m + pml_m]
        z_top = above_tip_m + pml_m
        z_bp = [-below_tip_m - pml_m, -below_tip_m, *ant_z, above_tip_m, z_top]
        if min(z_bp) < -below_tip_m - pml_m or min(ant_z) <= -below_tip_m:
            raise PhysicsError("the catheter reaches below the tissue domain", "increase below_tip_m")
        self.r_edges_m = graded_edges(r_bp, h_max_m, ant_r, h_fine_m, growth)
        self.z_edges_m = graded_edges(z_bp, h_max_m, ant_z, h_fine_m, growth, uniform_last=True)
        rc = 0.5 * (self.r_edges_m[1:] + self.r_edges_m[:-1])
        zc = 0.5 * (self.z_edges_m[1:] + self.z_edges_m[:-1])
        nr, nz = rc.size, zc.size
        eps37, sig37 = dielectric_properties(tissue, f)
        rho_t = load_library().tissue(MW_TISSUES.get(tissue, tissue)).density_kg_m3
        self.tissue_mask = np.ones((nr, nz), dtype=bool)
        eps = np.full((nr, nz), eps37)
        sig = np.full((nr, nz), sig37)
        pec = np.zeros((nr, nz), dtype=bool)
        rho = np.full((nr, nz), rho_t)
        names = np.full((nr, nz), tissue, dtype=object)
        coax = Medium("coax dielectric", antenna.dielectric_eps_r)
        cath = Medium("catheter", antenna.catheter_eps_r)
        cool = coolant_water(f)
        for r0, r1, z0, z1, mat in antenna.regions(z_top, cool, coax, cath):
            m = ((rc >= r0) & (rc <= r1))[:, None] & ((zc >= z0) & (zc <= z1))[None, :]
            self.tissue_mask &= ~m
            rho[m] = 0.0
            if mat == PEC:
                pec |= m
                names[m] = "pec"
                continue
            pec &= ~m
            eps[m], sig[m] = mat.eps_r, mat.sigma_s_m
            names[m] = mat.name
        self._base = (eps.copy(), sig.copy(), pec.copy())
        self.material_names = names
        self.density_kg_m3 = rho
        pml_r = int(np.sum(rc > tissue_radius_m))
        pml_lo = int(np.sum(zc < -below_tip_m))
        pml_hi = int(np.sum(zc > above_tip_m))
        self.pml_cells = (pml_r, pml_lo, pml_hi)
        self.port_radii_m = (antenna.inner_radius_m, antenna.dielectric_radius_m, antenna.wall_radius_m)
        self.temperature_mode = temperature_mode
        self.solver = self._make_solver(temperature_c)

    @property
    def shape(self) -> tuple[int, int]:
        """(Nr, Nz) cells."""
        return (self.r_edges_m.size - 1, self.z_edges_m.size - 1)

    def _make_solver(self, temperature_c: np.ndarray | None) -> AxisymmetricFDFD:
        eps, sig, pec = (a.copy() for a in self._base)
        if temperature_c is not None:
            t = np.asarray(temperature_c, dtype=np.float64)
            if t.shape != self.shape:
                raise PhysicsError(
                    f"temperature map has shape {t.shape}, the model grid {self.shape}",
                    "give one temperature (°C) per (r, z) cell of model.r_edges_m × model.z_edges_m",
                )
            e_t, s_t = heated_dielectric(self.tissue, self.frequency_hz, t[self.tissue_mask], self.temperature_mode)
            eps[self.tissue_mask], sig[self.tissue_mask] = e_t, s_t
        return AxisymmetricFDFD(
            self.r_edges_m,
            self.z_edges_m,
            eps,
            sig,
            pec,
            self.frequency_hz,
            self.pml_cells,
            self.port_radii_m,
        )

    def solve(self, input_power_w: float = 1.0) -> MicrowaveSolution:
        """Fields for ``input_power_w`` of forward (generator) power; the antenna takes P·(1 − |S11|²)."""
        if not (isinstance(input_power_w, int | float) and math.isfinite(input_power_w) and input_power_w >= 0):
            raise PhysicsError(f"input power {input_power_w!r} W is negative or not finite", "give P ≥ 0 W")
        return MicrowaveSolution(self, self.solver.solve(port_power_w=float(input_power_w)), float(input_power_w))

    def with_temperature(self, temperature_c: np.ndarray, mode: str | None = None) -> MicrowaveModel:
        """A copy whose tissue cells take ε_r(T), σ(T) (Ji & Brace sigmoid; see dielectric.heated_dielectric)."""
        other = object.__new__(MicrowaveModel)
        other.__dict__.update(self.__dict__)
        if mode is not None:
            other.temperature_mode = mode
        other.solver = other._make_solver(temperature_c)
        return other


# --------------------------------------------------------------------------------------------
# mapping to a voxel grid
# --------------------------------------------------------------------------------------------


def sar_to_volume(
    values_rz: np.ndarray,
    r_centres_m: np.ndarray,
    z_centres_m: np.ndarray,
    points_m: np.ndarray,
    tip_m: Sequence[float],
    axis_direction: Sequence[float],
) -> np.ndarray:
    """Sample an axisymmetric (r, z) cell field at 3-D points (bilinear in r and z).

    ``points_m`` (..., 3), ``tip_m`` (3,) and ``axis_direction`` (3,, pointing from the tip toward the feed,
    any length) share one Cartesian frame in metres (component order is the caller's, e.g. voxel centres
    in (z, y, x)). Returns an array of shape ``points_m.shape[:-1]``; points outside the solved cylinder get
    0, points nearer the axis than the first cell centre take the first column's value.
    """
    from scipy.interpolate import RegularGridInterpolator

    pts = np.asarray(points_m, dtype=np.float64)
    u = np.asarray(axis_direction, dtype=np.float64)
    tip = np.asarray(tip_m, dtype=np.float64)
    if pts.shape[-1] != 3 or u.shape != (3,) or tip.shape != (3,):
        raise PhysicsError("points, tip and axis must be 3-vectors", "give points as (..., 3) and 3-vectors")
    norm = float(np.linalg.norm(u))
    if not (math.isfinite(norm) and norm > 0):
        raise PhysicsError("the antenna axis direction is zero or not finite", "give a nonzero direction")
    u = u / norm
    vals = np.asarray(values_rz, dtype=np.float64)
    rc = np.asarray(r_centres_m, dtype=np.float64)
    zc = np.asarray(z_centres_m, dtype=np.float64)
    if vals.shape != (rc.size, zc.size):
        raise PhysicsError(f"field shape {vals.shape} does not match ({rc.size}, {zc.size})", "pass r/z centres")
    d = pts.reshape(-1, 3) - tip
    z = d @ u
    r = np.linalg.norm(d - z[:, None] * u[None, :], axis=1)
    interp = RegularGridInterpolator((rc, zc), vals, method="linear", bounds_error=False, fill_value=0.0)
    inside = (r <= rc[-1]) & (z >= zc[0]) & (z <= zc[-1])
    out = np.zeros(r.size)
    out[inside] = interp(np.column_stack([np.maximum(r[inside], rc[0]), z[inside]]))
    return out.reshape(pts.shape[:-1])
