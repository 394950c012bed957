"""Gabriel 4-Cole–Cole dielectric model: tissue permittivity and conductivity at any frequency.

Complex relative permittivity at angular frequency ω = 2πf (Gabriel, Lau & Gabriel 1996,
PMB 41:2271):

    ε̂(ω) = ε∞ + Σₙ Δεₙ / (1 + (jωτₙ)^(1−αₙ)) + σᵢ / (jωε₀)

The relative permittivity is ``Re ε̂`` and the effective conductivity ``σ = −ωε₀ Im ε̂`` (S/m;
it includes every dielectric loss, which is what heats tissue in a microwave field). Values are
computed, never copied from tables, so one parameter set serves 480 kHz, 915 MHz and 2.45 GHz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from insitu.errors import TissueError

EPSILON_0 = 8.8541878128e-12  # vacuum permittivity, F/m (CODATA 2018)
REFERENCE_TEMPERATURE_C = 37.0

__all__ = ["EPSILON_0", "ColeCole"]


def _frequencies(frequency_hz: float | np.ndarray) -> np.ndarray:
    """Frequencies as a float64 array; every value must be finite and > 0 Hz."""
    f = np.asarray(frequency_hz, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f <= 0.0):
        raise TissueError(
            f"frequency {frequency_hz!r} Hz is not a finite positive number",
            "give the frequency in Hz, e.g. 915e6 for 915 MHz",
        )
    return f


def _temperature_factor(
    coefficient_per_c: float, range_c: tuple[float, float], temperature_c: float | np.ndarray
) -> np.ndarray | float:
    """1 + a·(T − 37 °C), with T held inside the range where the coefficient was measured."""
    if coefficient_per_c == 0.0:
        return 1.0
    t = np.clip(np.asarray(temperature_c, dtype=np.float64), range_c[0], range_c[1])
    return 1.0 + coefficient_per_c * (t - REFERENCE_TEMPERATURE_C)


@dataclass(frozen=True)
class ColeCole:
    """One tissue's 4-Cole–Cole parameter set (SI units: τ in seconds, σᵢ in S/m).

    ``permittivity_factor`` / ``conductivity_factor`` scale the result (e.g. tumour relative to
    liver); ``*_per_c`` are linear temperature coefficients (fraction per °C about 37 °C) applied
    with the temperature clipped to ``temperature_range_c``.
    """

    eps_inf: float
    sigma_i_s_m: float
    delta_eps: tuple[float, float, float, float]
    tau_s: tuple[float, float, float, float]
    alpha: tuple[float, float, float, float]
    permittivity_factor: float = 1.0
    conductivity_factor: float = 1.0
    permittivity_per_c: float = 0.0
    conductivity_per_c: float = 0.0
    temperature_range_c: tuple[float, float] = (REFERENCE_TEMPERATURE_C, REFERENCE_TEMPERATURE_C)

    def __post_init__(self) -> None:
        for name in ("delta_eps", "tau_s", "alpha"):
            values = getattr(self, name)
            if len(values) != 4 or not all(math.isfinite(float(v)) for v in values):
                raise TissueError(
                    f"Cole–Cole {name} {values!r} is not four finite numbers",
                    "give four values, one per dispersion (use 0 for an unused one)",
                )
        scalars = (
            self.eps_inf,
            self.sigma_i_s_m,
            self.permittivity_factor,
            self.conductivity_factor,
        )
        if not all(math.isfinite(float(v)) for v in scalars):
            raise TissueError("Cole–Cole parameters are not finite", "give finite ε∞, σᵢ and factors")
        if self.eps_inf < 1.0 or self.sigma_i_s_m < 0.0 or min(self.delta_eps) < 0.0:
            raise TissueError(
                f"Cole–Cole set ε∞={self.eps_inf}, σᵢ={self.sigma_i_s_m}, Δε={self.delta_eps} is unphysical",
                "ε∞ must be ≥ 1 and σᵢ, Δε ≥ 0",
            )
        if min(self.tau_s) < 0.0 or any(not 0.0 <= a < 1.0 for a in self.alpha):
            raise TissueError(
                f"Cole–Cole τ {self.tau_s} or α {self.alpha} out of range",
                "τ must be ≥ 0 s (seconds, not ps/ns) and 0 ≤ α < 1",
            )
        if any(d > 0.0 and t == 0.0 for d, t in zip(self.delta_eps, self.tau_s, strict=True)):
            raise TissueError("a Cole–Cole dispersion has Δε > 0 but τ = 0", "give its τ in seconds")
        if self.permittivity_factor <= 0.0 or self.conductivity_factor <= 0.0:
            raise TissueError("Cole–Cole scale factors must be positive", "use factors > 0 (1 = unscaled)")
        lo, hi = self.temperature_range_c
        if not lo <= hi:
            raise TissueError(f"temperature range {self.temperature_range_c} is reversed", "give (low, high)")

    def complex_permittivity(self, frequency_hz: float | np.ndarray) -> np.ndarray:
        """Unscaled complex relative permittivity ε̂ at 37 °C (complex128, shape of the input)."""
        f = _frequencies(frequency_hz)
        omega = 2.0 * math.pi * f
        eps = np.full(f.shape, self.eps_inf, dtype=np.complex128)
        for d_eps, tau, alpha in zip(self.delta_eps, self.tau_s, self.alpha, strict=True):
            if d_eps == 0.0:
                continue
            eps += d_eps / (1.0 + (1j * omega * tau) ** (1.0 - alpha))
        eps += self.sigma_i_s_m / (1j * omega * EPSILON_0)
        return eps

    def relative_permittivity(
        self,
        frequency_hz: float | np.ndarray,
        temperature_c: float | np.ndarray = REFERENCE_TEMPERATURE_C,
    ) -> np.ndarray:
        """Relative permittivity ε_r (float64; a 0-d array or numpy scalar for scalar input)."""
        eps_r = self.complex_permittivity(frequency_hz).real * self.permittivity_factor
        factor = _temperature_factor(self.permittivity_per_c, self.temperature_range_c, temperature_c)
        return np.asarray(eps_r * factor, dtype=np.float64)[()]

    def conductivity_s_m(
        self,
        frequency_hz: float | np.ndarray,
        temperature_c: float | np.ndarray = REFERENCE_TEMPERATURE_C,
    ) -> np.ndarray:
        """Effective conductivity σ = −ωε₀ Im ε̂ in S/m (ionic plus dielectric loss)."""
        f = _frequencies(frequency_hz)
        sigma = -2.0 * math.pi * f * EPSILON_0 * self.complex_permittivity(f).imag
        sigma = sigma * self.conductivity_factor + 0.0  # + 0.0 turns −0.0 (lossless media) into 0.0
        factor = _temperature_factor(self.conductivity_per_c, self.temperature_range_c, temperature_c)
        return np.asarray(sigma * factor, dtype=np.float64)[()]

    def scaled(self, permittivity_factor: float, conductivity_factor: float) -> ColeCole:
        """A copy whose ε_r and σ are multiplied by the given factors (on top of existing ones)."""
        return replace(
            self,
            permittivity_factor=self.permittivity_factor * permittivity_factor,
            conductivity_factor=self.conductivity_factor * conductivity_factor,
        )
