"""Linear continuous-wave fields of focused ultrasound transducers through heterogeneous tissue.

The field is computed in two stages (hifu.md §1.2):

1. **Source → plane in the coupling water.** The transducer (a spherical bowl, an annular array of rings on a bowl,
   or a phased array of flat circular elements on a bowl) radiates into water; its pressure on a plane normal to the
   axis a few millimetres in front of the rim is the Rayleigh integral p(x) = (−ik/2π)·∫ p₀ e^{ikr}/r dS
   (time factor e^{−iωt}, p₀ = ρcu₀ the source pressure). Axisymmetric channels (a bowl, a ring) are integrated once
   along a radius (Gauss–Legendre in the polar angle, the periodic trapezoid rule in azimuth) and the profile is
   interpolated onto the plane after removing the converging-wave phase; identical flat elements share one table of
   their own (axisymmetric) field, looked up in each element's frame. Each channel's plane field is kept, so
   electronic steering (element phases) is a weighted sum, not a new integral.
2. **Plane → volume through tissue: the hybrid angular spectrum method** (Vyas & Christensen, IEEE TUFFC 59:1093,
   2012; hifu.md §1.2). Plane by plane along the beam: an exact spectral step in a reference medium (the |p|²-weighted
   mean slowness of the plane; evanescent components dropped — the band-limited propagator), then per point a phase
   screen for the local speed of sound, the power-law attenuation (midpoint rule between the planes), and the normal-
   incidence pressure transmission coefficient 2Z₂/(Z₁+Z₂) where the tissue changes; a lateral absorbing layer keeps
   the periodic FFT from wrapping the beam around. One-way: reflected waves are dropped (their energy is lost, not
   deposited), as in every HAS code.

Heat source: q = 2·α_abs·I = α_abs·|p|²/(ρc) (hifu.md §1.3), with α in Np/m at the frequency from the tissue library's
power law α₀·f^y. The library holds attenuation only; absorption is taken equal to it (``ABSORPTION_FRACTION``).

Nonlinear harmonics come later: fields are returned per harmonic (:class:`Harmonic`, order 1 today) and the heat
source is a sum over harmonics, so a nonlinear marcher only adds orders.

Frames: the transducer frame has the bowl's apex at the origin and the axis +z, the geometric focus at (0, 0, R).
The beam grid's planes are indexed ``[j, i]`` (y, x) with the axis at index ``n // 2``. SI throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numba as nb
import numpy as np
import scipy.fft as sfft
from scipy.interpolate import CubicSpline
from scipy.special import j1

from insitu.errors import PhysicsError

# 1 dB = ln(10)/20 Np (definition); 1 dB/cm = 11.513 Np/m (hifu.md units note)
NP_PER_DB = math.log(10.0) / 20.0
# The tissue library stores attenuation; absorption (what heats) is a fraction of it. HITU's default tissue uses 0.9
# (hifu.md §1.3, P); we take 1.0 for every tissue: an upper bound on heating (scattering is not separated), honest
# status "assumption". Rib heating is then not underestimated.
ABSORPTION_FRACTION = 1.0
# 2J₁(ζ)/ζ = 1/2 at ζ = 2.2151 (hifu.md §1.1: −6 dB lateral width 1.41·λR/D; computed, M)
ZETA_6DB = 2.215170
FFT_WORKERS = 2
# Quadrature of the Rayleigh integral (our choices, checked against O'Neil in tests/test_acoustics.py): Gauss–Legendre
# panels of half a wavelength with 4 nodes along the bowl's arc; azimuth sampled every λ/4 of arc (the periodic
# trapezoid rule converges spectrally once the samples resolve k·ρ_source, which λ/4 does twice over).
GL_NODES_PER_PANEL = 4
PANEL_WAVELENGTHS = 0.5
AZIMUTH_WAVELENGTHS = 0.25
PROFILE_WAVELENGTHS = 0.2  # radial profile sampling before the cubic spline
ELEMENT_TABLE_WAVELENGTHS = 1.0 / 6.0  # element table sampling before bilinear look-up (0.1 % at the focus, tests)
ABSORBING_CELLS = 16  # lateral absorbing layer of the marching window
ABSORBING_STRENGTH = 30.0  # σ_max·(layer width): ≈ 10 Np one-way for waves crossing it at 45°


def attenuation_np_m(alpha_db_cm_mhz: float | np.ndarray, exponent: float | np.ndarray, frequency_hz: float):
    """Power-law attenuation α₀·(f/1 MHz)^y from dB cm⁻¹ MHz⁻ʸ to Np/m."""
    return np.asarray(alpha_db_cm_mhz) * (frequency_hz / 1e6) ** np.asarray(exponent) * 100.0 * NP_PER_DB


def pressure_transmission(z1: float | np.ndarray, z2: float | np.ndarray):
    """Normal-incidence pressure transmission coefficient 2Z₂/(Z₁+Z₂) from impedance Z₁ into Z₂."""
    return 2.0 * np.asarray(z2) / (np.asarray(z1) + np.asarray(z2))


def pressure_reflection(z1: float | np.ndarray, z2: float | np.ndarray):
    """Normal-incidence pressure reflection coefficient (Z₂−Z₁)/(Z₁+Z₂)."""
    return (np.asarray(z2) - np.asarray(z1)) / (np.asarray(z1) + np.asarray(z2))


# ------------------------------------------------------------------------------------------------ analytic
def bowl_depth_m(radius_of_curvature_m: float, aperture_radius_m: float) -> float:
    """Rim height h = R − √(R² − a²) of a spherical cap."""
    return radius_of_curvature_m - math.sqrt(radius_of_curvature_m**2 - aperture_radius_m**2)


def oneil_axial_pa(
    z_m: np.ndarray,
    radius_of_curvature_m: float,
    aperture_radius_m: float,
    frequency_hz: float,
    sound_speed_m_s: float,
    source_pressure_pa: float = 1.0,
    inner_radius_m: float = 0.0,
) -> np.ndarray:
    """O'Neil's on-axis amplitude |p(z)| of a uniform bowl (z from the apex), p = p₀/(1 − z/R)·(e^{ikB_in} − e^{ikB});
    with an inner hole the inner cap is subtracted (hifu.md §1.1; exact in the Rayleigh sense)."""
    z = np.asarray(z_m, dtype=np.float64)
    k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
    big_r = radius_of_curvature_m

    def rim_distance(a: float) -> np.ndarray:
        h = bowl_depth_m(big_r, a)
        return np.sqrt((z - h) ** 2 + a**2)

    b_out = rim_distance(aperture_radius_m)
    b_in = rim_distance(inner_radius_m) if inner_radius_m > 0 else z
    denominator = 1.0 - z / big_r
    near = np.abs(denominator) < 1e-9
    safe = np.where(near, 1.0, denominator)
    value = np.abs((np.exp(1j * k * b_in) - np.exp(1j * k * b_out)) / safe)
    focal = k * (
        bowl_depth_m(big_r, aperture_radius_m) - (bowl_depth_m(big_r, inner_radius_m) if inner_radius_m else 0)
    )
    return source_pressure_pa * np.where(near, focal, value)


def oneil_focal_plane_pa(
    x_m: np.ndarray,
    radius_of_curvature_m: float,
    aperture_radius_m: float,
    frequency_hz: float,
    sound_speed_m_s: float,
    source_pressure_pa: float = 1.0,
) -> np.ndarray:
    """O'Neil's focal-plane amplitude p₀·kh·|2J₁(ζ)/ζ|, ζ = k·x·a/R (ka ≫ 1, small angles; hifu.md §1.1)."""
    k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
    zeta = k * np.abs(np.asarray(x_m, dtype=np.float64)) * aperture_radius_m / radius_of_curvature_m
    safe = np.where(zeta < 1e-12, 1.0, zeta)
    airy = np.where(zeta < 1e-12, 1.0, 2.0 * j1(safe) / safe)
    return source_pressure_pa * k * bowl_depth_m(radius_of_curvature_m, aperture_radius_m) * np.abs(airy)


def oneil_width_6db_m(
    radius_of_curvature_m: float, aperture_radius_m: float, frequency_hz: float, sound_speed_m_s: float
) -> float:
    """−6 dB lateral width of the focal-plane Airy pattern: 2·2.2152·R/(k·a) ≈ 1.41·λR/D."""
    k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
    return 2.0 * ZETA_6DB * radius_of_curvature_m / (k * aperture_radius_m)


# ------------------------------------------------------------------------------------------------ transducers
@dataclass(frozen=True)
class SphericalBowl:
    """A uniformly vibrating spherical cap (optionally with a central hole): one channel."""

    radius_of_curvature_m: float
    aperture_diameter_m: float
    inner_diameter_m: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.inner_diameter_m < self.aperture_diameter_m <= 2.0 * self.radius_of_curvature_m):
            raise PhysicsError(
                f"bowl R = {self.radius_of_curvature_m} m, aperture {self.aperture_diameter_m} m, hole "
                f"{self.inner_diameter_m} m is not a spherical cap",
                "give 0 ≤ hole < aperture ≤ 2R (metres)",
            )

    @property
    def aperture_radius_m(self) -> float:
        return 0.5 * self.aperture_diameter_m

    @property
    def depth_m(self) -> float:
        return bowl_depth_m(self.radius_of_curvature_m, self.aperture_radius_m)

    @property
    def ring_edges_m(self) -> tuple[float, ...]:
        return (0.5 * self.inner_diameter_m, self.aperture_radius_m)

    @property
    def n_channels(self) -> int:
        return len(self.ring_edges_m) - 1

    @property
    def channel_areas_m2(self) -> np.ndarray:
        """Cap area 2πR·Δh per ring."""
        r = self.radius_of_curvature_m
        h = np.array([bowl_depth_m(r, a) for a in self.ring_edges_m])
        return 2.0 * math.pi * r * np.diff(h)

    @property
    def area_m2(self) -> float:
        return float(self.channel_areas_m2.sum())

    def focusing_weights(self, focus_m: np.ndarray, frequency_hz: float, sound_speed_m_s: float) -> np.ndarray:
        """Channel weights (complex, unit modulus) that focus at ``focus_m`` (transducer frame); a bowl has one."""
        focus = np.asarray(focus_m, dtype=float)
        if np.hypot(focus[0], focus[1]) > 1e-9 or abs(focus[2] - self.radius_of_curvature_m) > 1e-9:
            raise PhysicsError("a single bowl focuses at its geometric focus only", "move the transducer instead")
        return np.ones(1, dtype=np.complex128)


@dataclass(frozen=True)
class AnnularArray(SphericalBowl):
    """Concentric rings on a spherical bowl, one channel each: electronic focusing along the axis.

    ``ring_edges`` are the aperture radii (m) of the ring boundaries, increasing; the first may be a central hole.
    """

    ring_edges: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        edges = np.asarray(self.ring_edges, dtype=float)
        if edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
            raise PhysicsError(f"ring edges {self.ring_edges} are not increasing radii", "give at least two radii (m)")
        object.__setattr__(self, "aperture_diameter_m", 2.0 * float(edges[-1]))
        object.__setattr__(self, "inner_diameter_m", 2.0 * float(edges[0]))
        super().__post_init__()

    @property
    def ring_edges_m(self) -> tuple[float, ...]:
        return tuple(float(e) for e in self.ring_edges)

    def focusing_weights(self, focus_m: np.ndarray, frequency_hz: float, sound_speed_m_s: float) -> np.ndarray:
        """Ring phases that align each ring's mid-area point on ``focus_m`` (on the axis)."""
        focus = np.asarray(focus_m, dtype=float)
        if np.hypot(focus[0], focus[1]) > 1e-9:
            raise PhysicsError("an annular array steers along its axis only", "move the transducer sideways")
        r = self.radius_of_curvature_m
        edges = np.asarray(self.ring_edges_m)
        h = np.array([bowl_depth_m(r, a) for a in edges])
        h_mid = 0.5 * (h[:-1] + h[1:])  # equal-area midpoint in height (cap area ∝ h)
        rho_mid = np.sqrt(r**2 - (r - h_mid) ** 2)
        k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
        path = np.hypot(rho_mid, focus[2] - h_mid)
        geometric = np.hypot(rho_mid, r - h_mid)
        return np.exp(-1j * k * (path - geometric))


@dataclass(frozen=True, eq=False)
class PhasedArray:
    """Flat circular elements on a spherical bowl, each facing the centre of curvature: 3-D electronic steering."""

    radius_of_curvature_m: float
    element_centres_m: np.ndarray  # (N, 3), transducer frame
    element_diameter_m: float
    aperture_diameter_m: float
    inner_diameter_m: float = 0.0

    @classmethod
    def spiral(
        cls,
        n_elements: int,
        radius_of_curvature_m: float,
        aperture_diameter_m: float,
        element_diameter_m: float,
        inner_diameter_m: float = 0.0,
    ) -> PhasedArray:
        """A deterministic layout: a golden-angle (Fibonacci) spiral, equal cap area per element."""
        r = radius_of_curvature_m
        h_in = bowl_depth_m(r, 0.5 * inner_diameter_m) if inner_diameter_m > 0 else 0.0
        h_out = bowl_depth_m(r, 0.5 * aperture_diameter_m)
        # keep whole elements on the cap: shrink the band by half an element at each edge
        margin = 0.5 * element_diameter_m * math.sin(math.asin(0.5 * aperture_diameter_m / r))
        lo, hi = h_in + margin if inner_diameter_m > 0 else 0.0, h_out - margin
        n = np.arange(n_elements)
        z = lo + (hi - lo) * (n + 0.5) / n_elements  # cap area ∝ height (Archimedes): equal area per element
        rho = np.sqrt(r**2 - (r - z) ** 2)
        phi = n * math.pi * (3.0 - math.sqrt(5.0))
        centres = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
        gaps = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        if gaps.min() < element_diameter_m:
            raise PhysicsError(
                f"{n_elements} elements of {element_diameter_m * 1e3:.1f} mm overlap on this bowl (closest centres "
                f"{gaps.min() * 1e3:.1f} mm apart)",
                "use fewer or smaller elements",
            )
        return cls(r, centres, element_diameter_m, aperture_diameter_m, inner_diameter_m)

    @property
    def aperture_radius_m(self) -> float:
        return 0.5 * self.aperture_diameter_m

    @property
    def depth_m(self) -> float:
        return bowl_depth_m(self.radius_of_curvature_m, self.aperture_radius_m)

    @property
    def n_channels(self) -> int:
        return int(self.element_centres_m.shape[0])

    @property
    def normals(self) -> np.ndarray:
        """Unit normals from each element towards the centre of curvature."""
        towards = np.array([0.0, 0.0, self.radius_of_curvature_m]) - self.element_centres_m
        return towards / np.linalg.norm(towards, axis=1, keepdims=True)

    @property
    def channel_areas_m2(self) -> np.ndarray:
        return np.full(self.n_channels, math.pi * (0.5 * self.element_diameter_m) ** 2)

    @property
    def area_m2(self) -> float:
        return float(self.channel_areas_m2.sum())

    def focusing_weights(self, focus_m: np.ndarray, frequency_hz: float, sound_speed_m_s: float) -> np.ndarray:
        """Element phases that bring every element's wave in phase at ``focus_m`` (transducer frame)."""
        k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
        path = np.linalg.norm(np.asarray(focus_m, dtype=float) - self.element_centres_m, axis=1)
        return np.exp(-1j * k * path)


Transducer = SphericalBowl | AnnularArray | PhasedArray


# ------------------------------------------------------------------------------------------------ Rayleigh
@nb.njit(parallel=True, fastmath=True, cache=True)
def _rayleigh_sum(src, weight, points, k):  # pragma: no cover - numba
    """Σ w·e^{ikr}/r over sources for each point (the −ik/2π factor is applied by the caller)."""
    m = points.shape[0]
    n = src.shape[0]
    out = np.zeros(m, dtype=np.complex128)
    for j in nb.prange(m):
        re = 0.0
        im = 0.0
        px, py, pz = points[j, 0], points[j, 1], points[j, 2]
        for i in range(n):
            dx = px - src[i, 0]
            dy = py - src[i, 1]
            dz = pz - src[i, 2]
            r = math.sqrt(dx * dx + dy * dy + dz * dz)
            a = weight[i] / r
            re += a * math.cos(k * r)
            im += a * math.sin(k * r)
        out[j] = complex(re, im)
    return out


def _gauss_panels(lo: float, hi: float, panel: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [lo, hi] in panels no longer than ``panel``."""
    n_panels = max(1, math.ceil((hi - lo) / panel))
    x, w = np.polynomial.legendre.leggauss(GL_NODES_PER_PANEL)
    edges = np.linspace(lo, hi, n_panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[:-1] + edges[1:])
    return (mid[:, None] + half[:, None] * x).ravel(), (half[:, None] * w).ravel()


def _half_azimuths(radius_m: float, wavelength_m: float) -> tuple[np.ndarray, float]:
    """Azimuths in (0, π) of a symmetric trapezoid rule over the full circle (each sample counts twice)."""
    n = max(16, 2 * math.ceil(math.pi * radius_m / (AZIMUTH_WAVELENGTHS * wavelength_m)))
    phi = (np.arange(n // 2) + 0.5) * 2.0 * math.pi / n
    return phi, 2.0 * (2.0 * math.pi / n)


def _ring_patches(r_curv: float, a_in: float, a_out: float, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature points (half circle) and weights (area, doubled) of a band of a spherical cap."""
    theta, w_theta = _gauss_panels(
        math.asin(a_in / r_curv), math.asin(a_out / r_curv), PANEL_WAVELENGTHS * wavelength / r_curv
    )
    points, weights = [], []
    for t, wt in zip(theta, w_theta, strict=True):
        rho = r_curv * math.sin(t)
        phi, w_phi = _half_azimuths(rho, wavelength)
        z = r_curv - r_curv * math.cos(t)
        points.append(np.stack([rho * np.cos(phi), rho * np.sin(phi), np.full(phi.size, z)], axis=1))
        weights.append(np.full(phi.size, r_curv**2 * math.sin(t) * wt * w_phi))
    return np.concatenate(points), np.concatenate(weights)


def _disc_patches(radius: float, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature points (half disc, z = 0) and weights (area, doubled) of a flat disc."""
    rho_nodes, w_rho = _gauss_panels(0.0, radius, PANEL_WAVELENGTHS * wavelength)
    points, weights = [], []
    for rho, wr in zip(rho_nodes, w_rho, strict=True):
        phi, w_phi = _half_azimuths(rho, wavelength)
        points.append(np.stack([rho * np.cos(phi), rho * np.sin(phi), np.zeros(phi.size)], axis=1))
        weights.append(np.full(phi.size, rho * wr * w_phi))
    return np.concatenate(points), np.concatenate(weights)


def rayleigh_points(
    transducer: Transducer, points_m: np.ndarray, frequency_hz: float, sound_speed_m_s: float, weights=None
) -> np.ndarray:
    """Complex pressure per unit source pressure at ``points_m`` (N, 3; transducer frame) by direct Rayleigh
    quadrature of every channel (reference and tests; the planes use the faster profile/table route)."""
    wavelength = sound_speed_m_s / frequency_hz
    k = 2.0 * math.pi / wavelength
    weights = np.ones(transducer.n_channels) if weights is None else np.asarray(weights)
    points = np.ascontiguousarray(points_m, dtype=np.float64)
    total = np.zeros(points.shape[0], dtype=np.complex128)
    if isinstance(transducer, PhasedArray):
        disc, w_disc = _disc_patches(0.5 * transducer.element_diameter_m, wavelength)
        full = np.concatenate([disc, disc * np.array([1.0, -1.0, 1.0])])
        w_full = np.concatenate([w_disc, w_disc]) * 0.5
        for centre, normal, wc in zip(transducer.element_centres_m, transducer.normals, weights, strict=True):
            u, v = _perpendiculars(normal)
            src = centre + full[:, :1] * u + full[:, 1:2] * v
            total += wc * _rayleigh_sum(np.ascontiguousarray(src), w_full, points, k)
    else:
        edges = transducer.ring_edges_m
        for n in range(transducer.n_channels):
            src, w = _ring_patches(transducer.radius_of_curvature_m, edges[n], edges[n + 1], wavelength)
            full = np.concatenate([src, src * np.array([1.0, -1.0, 1.0])])
            total += weights[n] * _rayleigh_sum(full, np.concatenate([w, w]) * 0.5, points, k)
    return total * (-1j * k / (2.0 * math.pi))


def _perpendiculars(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing ``axis`` to a right-handed frame."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


@dataclass
class SourcePlane:
    """Each channel's pressure (per pascal of source pressure) on an n×n plane at ``z_m`` from the apex."""

    z_m: float
    dx_m: float
    n: int
    frequency_hz: float
    sound_speed_m_s: float
    channels: np.ndarray  # (n_channels, n, n) complex64, [j, i] = (y, x), axis at n // 2
    channel_areas_m2: np.ndarray

    def field(self, weights: np.ndarray) -> np.ndarray:
        """The plane's pressure for channel weights (complex source pressures, Pa)."""
        weights = np.asarray(weights, dtype=np.complex64)
        if weights.shape != (self.channels.shape[0],):
            raise PhysicsError(f"{weights.size} channel weights for {self.channels.shape[0]} channels", "give one each")
        return np.tensordot(weights, self.channels, axes=1).astype(np.complex64)


def plane_coordinates_m(n: int, dx_m: float) -> np.ndarray:
    """Lateral coordinates of an n-point axis with the beam axis at index n // 2."""
    return (np.arange(n) - n // 2) * dx_m


def source_plane(
    transducer: Transducer, frequency_hz: float, sound_speed_m_s: float, z_m: float, dx_m: float, n: int
) -> SourcePlane:
    """Every channel's Rayleigh field on the plane z = ``z_m`` (transducer frame), n×n points ``dx_m`` apart."""
    if z_m <= transducer.depth_m:
        raise PhysicsError(
            f"source plane at {z_m * 1e3:.1f} mm lies inside the bowl (rim at {transducer.depth_m * 1e3:.1f} mm)",
            "put the plane in front of the rim",
        )
    wavelength = sound_speed_m_s / frequency_hz
    k = 2.0 * math.pi / wavelength
    x = plane_coordinates_m(n, dx_m)
    xx, yy = np.meshgrid(x, x)  # [j, i]
    rho = np.hypot(xx, yy)
    if isinstance(transducer, PhasedArray):
        channels = _element_planes(transducer, k, wavelength, z_m, x)
    else:
        step = PROFILE_WAVELENGTHS * wavelength
        radii = np.arange(0.0, rho.max() + 3 * step, step)
        line = np.stack([radii, np.zeros_like(radii), np.full(radii.size, z_m)], axis=1)
        r_curv = transducer.radius_of_curvature_m
        # remove the converging wave's phase (towards the geometric focus) before interpolating, restore after
        demod = np.exp(1j * k * np.hypot(radii, r_curv - z_m))
        remod = np.exp(-1j * k * np.hypot(rho, r_curv - z_m))
        edges = transducer.ring_edges_m
        channels = np.empty((transducer.n_channels, n, n), dtype=np.complex64)
        for c in range(transducer.n_channels):
            src, w = _ring_patches(r_curv, edges[c], edges[c + 1], wavelength)
            profile = _rayleigh_sum(src, w, line, k) * (-1j * k / (2.0 * math.pi)) * demod
            spline_re, spline_im = CubicSpline(radii, profile.real), CubicSpline(radii, profile.imag)
            channels[c] = ((spline_re(rho) + 1j * spline_im(rho)) * remod).astype(np.complex64)
    return SourcePlane(z_m, dx_m, n, frequency_hz, sound_speed_m_s, channels, transducer.channel_areas_m2)


@nb.njit(parallel=True, cache=True)
def _element_lookup(table, rho0, drho, z0, dz, centres, normals, us, vs, x, zplane, k, out):  # pragma: no cover
    """Each element's field on the plane from the shared (ρ', z') table of e^{-ikr}·r·p (bilinear)."""
    n_el = centres.shape[0]
    n = x.shape[0]
    nr, nz = table.shape
    for e in nb.prange(n_el):
        cx, cy, cz = centres[e, 0], centres[e, 1], centres[e, 2]
        nx_, ny_, nz_ = normals[e, 0], normals[e, 1], normals[e, 2]
        for j in range(n):
            for i in range(n):
                dx = x[i] - cx
                dy = x[j] - cy
                dzz = zplane - cz
                along = dx * nx_ + dy * ny_ + dzz * nz_
                r2 = dx * dx + dy * dy + dzz * dzz
                perp = math.sqrt(max(r2 - along * along, 0.0))
                fr = (perp - rho0) / drho
                fz = (along - z0) / dz
                if along <= z0 or fr >= nr - 1 or fz >= nz - 1:
                    out[e, j, i] = 0.0
                    continue
                ir = int(fr)
                iz = int(fz)
                tr = fr - ir
                tz = fz - iz
                val = (
                    table[ir, iz] * (1 - tr) * (1 - tz)
                    + table[ir + 1, iz] * tr * (1 - tz)
                    + table[ir, iz + 1] * (1 - tr) * tz
                    + table[ir + 1, iz + 1] * tr * tz
                )
                r = math.sqrt(r2)
                out[e, j, i] = val * complex(math.cos(k * r), math.sin(k * r)) / r


def _element_planes(array: PhasedArray, k: float, wavelength: float, z_m: float, x: np.ndarray) -> np.ndarray:
    """Per-element plane fields of a phased array (identical flat discs: one axisymmetric table, looked up)."""
    normals = array.normals
    centres = array.element_centres_m
    # the table's range: along-normal and perpendicular distances of the plane from every element (both extreme at
    # the plane's corners: the first is linear, the second convex over the plane)
    corners = np.array([[x[0], x[0], z_m], [x[0], x[-1], z_m], [x[-1], x[0], z_m], [x[-1], x[-1], z_m]])
    d = corners[None, :, :] - centres[:, None, :]
    along = np.einsum("ecx,ex->ec", d, normals)
    perp = np.sqrt(np.maximum(np.einsum("ecx,ecx->ec", d, d) - along**2, 0.0))
    step = ELEMENT_TABLE_WAVELENGTHS * wavelength
    z_lo = max(0.5 * wavelength, float(along.min()) - step)
    z_axis = np.arange(z_lo, float(along.max()) + 3 * step, step)
    rho_axis = np.arange(0.0, float(perp.max()) + 3 * step, step)
    rr, zz = np.meshgrid(rho_axis, z_axis, indexing="ij")
    points = np.stack([rr.ravel(), np.zeros(rr.size), zz.ravel()], axis=1)
    disc, w = _disc_patches(0.5 * array.element_diameter_m, wavelength)
    p = _rayleigh_sum(disc, w, points, k) * (-1j * k / (2.0 * math.pi))
    r = np.hypot(rr.ravel(), zz.ravel())
    table = (p * r * np.exp(-1j * k * r)).reshape(rr.shape).astype(np.complex128)
    us = np.zeros_like(normals)
    out = np.empty((array.n_channels, x.size, x.size), dtype=np.complex64)
    _element_lookup(table, 0.0, step, z_lo, step, centres, normals, us, us, x, z_m, k, out)
    return out


# ------------------------------------------------------------------------------------------------ media
@dataclass(frozen=True)
class MediumTables:
    """Per-label acoustic properties at one frequency: what the marcher reads (SI; α in Np/m)."""

    speed_m_s: np.ndarray
    density_kg_m3: np.ndarray
    attenuation_np_m: np.ndarray
    absorption_np_m: np.ndarray
    names: tuple[str, ...] = ()

    @classmethod
    def from_library(cls, library, frequency_hz: float, absorption_fraction: float = ABSORPTION_FRACTION):
        """The tissue library's speed, density and power-law attenuation at ``frequency_hz`` for every tissue."""
        c = library.property_table("speed_of_sound_m_s")
        rho = library.property_table("density_kg_m3")
        alpha = attenuation_np_m(
            library.property_table("attenuation_db_cm_mhz"),
            library.property_table("attenuation_exponent"),
            frequency_hz,
        )
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(rho)) and np.all(np.isfinite(alpha))):
            missing = [n for n, v in zip(library.names, c + rho + alpha, strict=True) if not np.isfinite(v)]
            raise PhysicsError(f"tissues {missing} lack acoustic properties", "complete them in tissues.yaml")
        return cls(c, rho, alpha, alpha * absorption_fraction, tuple(library.names))

    @classmethod
    def layers(cls, speeds, densities, attenuations_np_m, absorption_fraction: float = 1.0) -> MediumTables:
        """Tables from explicit per-label values (verification cases)."""
        a = np.asarray(attenuations_np_m, dtype=float)
        return cls(np.asarray(speeds, float), np.asarray(densities, float), a, a * absorption_fraction)

    @property
    def impedance(self) -> np.ndarray:
        return self.speed_m_s * self.density_kg_m3

    def heat_factor(self) -> np.ndarray:
        """q/|p|² = α_abs/(ρc) per label (W m⁻³ Pa⁻²)."""
        return self.absorption_np_m / self.impedance


# ------------------------------------------------------------------------------------------------ marching
@dataclass
class Harmonic:
    """One harmonic of the field: order n (1 = the drive frequency) and, when kept, |p| on the beam grid."""

    order: int
    frequency_hz: float
    amplitude_pa: np.ndarray | None = None  # (n_planes, n, n) float32 when kept
    axis_pa: np.ndarray | None = None  # complex pressure on the beam axis, one per plane


@dataclass
class BeamField:
    """The result of one march: per-harmonic fields and what the heating needs."""

    dx_m: float
    dz_m: float
    n: int
    z0_m: float  # distance of plane 0 from the transducer's apex
    harmonics: list[Harmonic] = field(default_factory=list)
    plane_max_pa: np.ndarray | None = None  # max |p| per plane (all harmonics' fundamental)
    source_power_w: float = 0.0
    absorbed_power_w: float = 0.0  # Σ q·dV on the beam grid

    @property
    def z_m(self) -> np.ndarray:
        """Distance of every plane from the apex."""
        return self.z0_m + self.dz_m * np.arange(self.plane_max_pa.size)


def plane_power_w(p: np.ndarray, dx_m: float, frequency_hz: float, sound_speed_m_s: float, density: float) -> float:
    """Acoustic power through a plane: Σ over propagating plane-wave components of |P̂|²·cos θ/(2ρc)."""
    n = p.shape[0]
    k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
    spectrum = sfft.fft2(p.astype(np.complex128), workers=FFT_WORKERS)
    kx = 2.0 * math.pi * sfft.fftfreq(n, dx_m)
    kr2 = kx[None, :] ** 2 + kx[:, None] ** 2
    cos_theta = np.sqrt(np.clip(1.0 - kr2 / k**2, 0.0, None))
    return float(np.sum(np.abs(spectrum) ** 2 * cos_theta) * dx_m**2 / n**2 / (2.0 * density * sound_speed_m_s))


@nb.njit(cache=True, fastmath=True)
def _propagator(kr2, k_ref, dz, out):  # pragma: no cover - numba
    """exp(i·k_z·dz) for propagating components, 0 for evanescent ones (the band-limited propagator)."""
    n0, n1 = kr2.shape
    k2 = k_ref * k_ref
    for a in range(n0):
        for b in range(n1):
            s = k2 - kr2[a, b]
            if s > 0.0:
                kz = math.sqrt(s)
                out[a, b] = complex(math.cos(kz * dz), math.sin(kz * dz))
            else:
                out[a, b] = 0.0


@nb.njit(cache=True, fastmath=True)
def _screen_and_heat(p, pair, lab_prev, lab, n_labels, sponge, heat, q, slow, weight_out):  # pragma: no cover
    """p *= pair[lab_prev, lab]·sponge; q = heat[lab]·|p|²; returns Σ|p|²·slowness and Σ|p|² (for k_ref)."""
    n0, n1 = p.shape
    s_num = 0.0
    s_den = 0.0
    for a in range(n0):
        for b in range(n1):
            lp = lab_prev[a, b]
            ln = lab[a, b]
            v = p[a, b] * pair[lp * n_labels + ln] * sponge[a, b]
            p[a, b] = v
            m2 = v.real * v.real + v.imag * v.imag
            q[a, b] = heat[ln] * m2
            s_num += m2 * slow[ln]
            s_den += m2
    weight_out[0] = s_num
    weight_out[1] = s_den


def absorbing_layer(n: int, dx_m: float, dz_m: float, cells: int = ABSORBING_CELLS) -> np.ndarray:
    """Per-step amplitude factor of the lateral absorbing layer: exp(−σ(x)·dz)·exp(−σ(y)·dz), σ quadratic."""
    d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(float)
    ramp = np.clip((cells - d) / cells, 0.0, None) ** 2
    sigma = ABSORBING_STRENGTH / (cells * dx_m) * ramp
    g = np.exp(-sigma * dz_m)
    return (g[:, None] * g[None, :]).astype(np.float32)


def march(
    p0: np.ndarray,
    dx_m: float,
    dz_m: float,
    n_planes: int,
    frequency_hz: float,
    tables: MediumTables,
    labels_of_plane: Callable[[int], np.ndarray],
    *,
    on_plane: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    keep_amplitude: bool = False,
    absorbing_cells: int = ABSORBING_CELLS,
    z0_m: float = 0.0,
) -> BeamField:
    """Hybrid angular spectrum march of the plane field ``p0`` (complex, Pa) through ``n_planes`` planes.

    ``labels_of_plane(n)`` gives the medium labels (uint8, n×n) of plane n (indices into ``tables``); plane 0 holds
    ``p0``. ``on_plane(n, p, q)`` sees each plane's pressure and heat source q = α_abs|p|²/(ρc) (W/m³; buffers
    reused: read, don't keep). With ``keep_amplitude`` the |p| volume is kept (float32).
    """
    n = p0.shape[0]
    if p0.shape != (n, n):
        raise PhysicsError(f"the source plane has shape {p0.shape}", "give a square plane")
    omega = 2.0 * math.pi * frequency_hz
    slow = 1.0 / tables.speed_m_s
    alpha = tables.attenuation_np_m
    z = tables.impedance
    n_labels = slow.size
    # pair table: transmission from label a to b, the midpoint phase (absolute) and attenuation of the step
    a_idx, b_idx = np.meshgrid(np.arange(n_labels), np.arange(n_labels), indexing="ij")
    pair = pressure_transmission(z[a_idx], z[b_idx]) * np.exp(
        (1j * omega * 0.5 * (slow[a_idx] + slow[b_idx]) - 0.5 * (alpha[a_idx] + alpha[b_idx])) * dz_m
    )
    pair = pair.ravel().astype(np.complex64)
    heat = tables.heat_factor().astype(np.float64)
    sponge = absorbing_layer(n, dx_m, dz_m, absorbing_cells) if absorbing_cells > 0 else np.ones((n, n), np.float32)
    kx = 2.0 * math.pi * sfft.fftfreq(n, dx_m)
    kr2 = kx[None, :] ** 2 + kx[:, None] ** 2
    propagator = np.empty((n, n), dtype=np.complex64)
    k_cached = -1.0

    p = np.ascontiguousarray(p0, dtype=np.complex64).copy()
    q = np.empty((n, n), dtype=np.float32)
    weights = np.zeros(2)
    lab_prev = np.ascontiguousarray(labels_of_plane(0), dtype=np.uint8)
    _screen_and_heat(p, np.ones(n_labels * n_labels, np.complex64), lab_prev, lab_prev, n_labels,
                     np.ones((n, n), np.float32), heat, q, slow, weights)  # fmt: skip
    amplitude = np.empty((n_planes, n, n), dtype=np.float32) if keep_amplitude else None
    axis = np.empty(n_planes, dtype=np.complex128)
    plane_max = np.empty(n_planes)
    absorbed = float(q.sum(dtype=np.float64)) * 0.5  # trapezoid in z: the end planes count half
    c = n // 2

    def record(index: int) -> None:
        axis[index] = p[c, c]
        mag = np.abs(p)
        plane_max[index] = float(mag.max())
        if amplitude is not None:
            amplitude[index] = mag
        if on_plane is not None:
            on_plane(index, p, q)

    record(0)
    for index in range(1, n_planes):
        lab = np.ascontiguousarray(labels_of_plane(index), dtype=np.uint8)
        k_ref = omega * (weights[0] / weights[1] if weights[1] > 0 else float(slow[lab[c, c]]))
        if abs(k_ref - k_cached) > 1e-9 * k_ref:
            _propagator(kr2, k_ref, dz_m, propagator)
            k_cached = k_ref
        spectrum = sfft.fft2(p, workers=FFT_WORKERS, overwrite_x=True)
        spectrum *= propagator
        p = sfft.ifft2(spectrum, workers=FFT_WORKERS, overwrite_x=True)
        p *= np.complex64(np.exp(-1j * k_ref * dz_m))  # the screen (pair) holds the absolute phase
        _screen_and_heat(p, pair, lab_prev, lab, n_labels, sponge, heat, q, slow, weights)
        absorbed += float(q.sum(dtype=np.float64)) * (0.5 if index == n_planes - 1 else 1.0)
        record(index)
        lab_prev = lab
    result = BeamField(dx_m, dz_m, n, z0_m, plane_max_pa=plane_max)
    result.harmonics.append(Harmonic(1, frequency_hz, amplitude, axis))
    result.absorbed_power_w = absorbed * dx_m * dx_m * dz_m
    return result


def march_water(
    p0: np.ndarray, dx_m: float, distances_m, frequency_hz: float, sound_speed_m_s: float, pad: int = 2
) -> np.ndarray:
    """Exact homogeneous, lossless propagation of ``p0`` to each distance in one spectral step (verification:
    planes far apart without marching between them). The plane is zero-padded ``pad``-fold so the periodic FFT
    does not fold neighbouring images of the source in. Returns (len(distances), n, n) complex128."""
    n = p0.shape[0]
    m = sfft.next_fast_len(pad * n)
    k = 2.0 * math.pi * frequency_hz / sound_speed_m_s
    kx = 2.0 * math.pi * sfft.fftfreq(m, dx_m)
    kr2 = kx[None, :] ** 2 + kx[:, None] ** 2
    kz = np.sqrt(np.clip(k**2 - kr2, 0.0, None))
    propagating = kr2 < k**2
    padded = np.zeros((m, m), dtype=np.complex128)
    c0 = m // 2 - n // 2
    padded[c0 : c0 + n, c0 : c0 + n] = p0
    spectrum = sfft.fft2(padded, workers=FFT_WORKERS)
    out = np.empty((len(distances_m), n, n), dtype=np.complex128)
    for index, d in enumerate(distances_m):
        plane = sfft.ifft2(spectrum * np.where(propagating, np.exp(1j * kz * d), 0.0), workers=FFT_WORKERS)
        out[index] = plane[c0 : c0 + n, c0 : c0 + n]
    return out


# ------------------------------------------------------------------------------------------------ patient grid
@nb.njit(cache=True)
def _gather_plane(labels, base, ex, ey, default, out):  # pragma: no cover - numba
    """Nearest-voxel labels of a beam plane: point (j, i) at base + i·ex + j·ey in (i, j, k) index space."""
    nk, nj, ni = labels.shape
    n0, n1 = out.shape
    for a in range(n0):
        for b in range(n1):
            x = base[0] + b * ex[0] + a * ey[0]
            y = base[1] + b * ex[1] + a * ey[1]
            zz = base[2] + b * ex[2] + a * ey[2]
            i = math.floor(x + 0.5)
            j = math.floor(y + 0.5)
            k = math.floor(zz + 0.5)
            if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
                out[a, b] = labels[k, j, i]
            else:
                out[a, b] = default


@nb.njit(cache=True)
def _splat_plane(q, scale, base, ex, ey, offset, out):  # pragma: no cover - numba
    """Trilinear deposit of q·scale (W) from beam points into voxels of ``out`` (the adjoint of trilinear
    interpolation: every point's weights sum to one, so the deposited power is conserved inside ``out``)."""
    nk, nj, ni = out.shape
    n0, n1 = q.shape
    lost = 0.0
    for a in range(n0):
        for b in range(n1):
            v = q[a, b] * scale
            if v == 0.0:
                continue
            x = base[0] + b * ex[0] + a * ey[0] - offset[0]
            y = base[1] + b * ex[1] + a * ey[1] - offset[1]
            zz = base[2] + b * ex[2] + a * ey[2] - offset[2]
            i0 = math.floor(x)
            j0 = math.floor(y)
            k0 = math.floor(zz)
            fx = x - i0
            fy = y - j0
            fz = zz - k0
            for dk in range(2):
                wk = fz if dk else 1.0 - fz
                k = k0 + dk
                for dj in range(2):
                    wj = fy if dj else 1.0 - fy
                    j = j0 + dj
                    for di in range(2):
                        wi = fx if di else 1.0 - fx
                        i = i0 + di
                        w = wk * wj * wi
                        if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
                            out[k, j, i] += v * w
                        else:
                            lost += v * w
    return lost


@dataclass(frozen=True)
class BeamPlacement:
    """A transducer placed in the patient: apex (LPS mm), unit axis and lateral axes, and the beam grid."""

    apex_mm: np.ndarray
    axis: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    dx_m: float
    dz_m: float
    n: int
    n_planes: int
    z0_m: float

    @classmethod
    def along(cls, apex_mm, axis, dx_m: float, dz_m: float, n: int, n_planes: int, z0_m: float) -> BeamPlacement:
        axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
        ex, ey = _perpendiculars(axis)
        return cls(np.asarray(apex_mm, dtype=float), axis, ex, ey, dx_m, dz_m, n, n_planes, z0_m)

    def plane_frame_index(self, grid, plane: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(base, ex, ey) of plane ``plane`` in the grid's continuous (i, j, k) index space."""
        z_mm = (self.z0_m + plane * self.dz_m) * 1e3
        corner = self.apex_mm + z_mm * self.axis - (self.n // 2) * self.dx_m * 1e3 * (self.ex + self.ey)
        base = grid.world_to_index(corner)
        ex = grid.world_to_index(corner + self.dx_m * 1e3 * self.ex) - base
        ey = grid.world_to_index(corner + self.dx_m * 1e3 * self.ey) - base
        return base, ex, ey

    def points_mm(self, plane: int) -> np.ndarray:
        """LPS mm of the plane's points, (n, n, 3) indexed [j, i]."""
        x = plane_coordinates_m(self.n, self.dx_m) * 1e3
        z_mm = (self.z0_m + plane * self.dz_m) * 1e3
        centre = self.apex_mm + z_mm * self.axis
        return centre + x[None, :, None] * self.ex + x[:, None, None] * self.ey


def patient_field(
    plane_pressure: np.ndarray,
    placement: BeamPlacement,
    frequency_hz: float,
    tables: MediumTables,
    grid,
    labels: np.ndarray,
    coupling_label: int,
    heat_out: np.ndarray | None = None,
    heat_offset_kji: tuple[int, int, int] = (0, 0, 0),
    keep_amplitude: bool = False,
) -> BeamField:
    """March ``plane_pressure`` (Pa, plane 0 of ``placement``) through the patient's ``labels`` (uint8 on ``grid``,
    nearest voxel; outside the grid: ``coupling_label``), depositing the heat source into ``heat_out`` (W/m³, a box of
    the grid starting at ``heat_offset_kji``; trilinear, power-conserving) when given."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    buffer = np.empty((placement.n, placement.n), dtype=np.uint8)
    voxel_m3 = float(np.prod(grid.spacing_mm)) * 1e-9
    scale = placement.dx_m**2 * placement.dz_m / voxel_m3
    offset = np.array(heat_offset_kji[::-1], dtype=np.float64)
    lost = [0.0]

    def labels_of_plane(index: int) -> np.ndarray:
        base, ex, ey = placement.plane_frame_index(grid, index)
        _gather_plane(labels, base, ex, ey, coupling_label, buffer)
        return buffer.copy()

    def deposit(index: int, p: np.ndarray, q: np.ndarray) -> None:
        base, ex, ey = placement.plane_frame_index(grid, index)
        w = scale * (0.5 if index in (0, placement.n_planes - 1) else 1.0)
        lost[0] += _splat_plane(q, w, base, ex, ey, offset, heat_out)

    result = march(
        plane_pressure, placement.dx_m, placement.dz_m, placement.n_planes, frequency_hz, tables, labels_of_plane,
        on_plane=deposit if heat_out is not None else None, keep_amplitude=keep_amplitude, z0_m=placement.z0_m,
    )  # fmt: skip
    result.source_power_w = plane_power_w(
        plane_pressure, placement.dx_m, frequency_hz, tables.speed_m_s[coupling_label],
        tables.density_kg_m3[coupling_label],
    )  # fmt: skip
    return result
