"""Tissue dielectric properties in the microwave-ablation band (0.3–6 GHz), at body temperature and heated.

Two models, both evaluated in code, never read off a table:

1. **Gabriel 4-Cole–Cole** (Gabriel, Lau & Gabriel 1996, Phys Med Biol 41:2271):

       ε̂(ω) = ε∞ + Σₙ Δεₙ / (1 + (jωτₙ)^(1−αₙ)) + σᵢ / (jωε₀),   ε_r = Re ε̂,  σ = −ωε₀ Im ε̂.

   The parameter sets live in the tissue library (``insitu/tissue/tissues.yaml``, one source of truth, each
   row with its source and status) and the formula in :class:`insitu.tissue.dielectric.ColeCole`; this
   module names the tissues the microwave solver uses (:data:`MW_TISSUES`) and adds the MW-band checks.
   Status of the rows used here: liver, blood, fat, muscle, skin, lung (inflated) and cortical bone are
   **confirmed** (IFAC Appendix C rows, identical in two code restatements; the blood and cortical-bone
   rows were re-read for this module in a third, the gbppr.net mirror of IFAC Appendix C). Evaluated:
   liver ε_r 43.03, σ 1.686 S/m at 2.45 GHz; 46.76, 0.861 S/m at 915 MHz (thermal.md §2.2 recalls
   ≈ 43.0 / 1.69 and ≈ 46.8 / 0.86). Tumour is the library's ``hcc`` row: the liver curve scaled by
   ε_r × 1.12, σ × 1.24 (Stauffer 2003, human tumour vs normal liver 0.3–3 GHz; **derived**). Use
   ``"liver"`` for the plain "tumour ≈ liver" assumption.

2. **Ji & Brace 2011** (Phys Med Biol 56:5249) sigmoid in temperature for liver at 2.45 GHz:

       X(T) = s₁·[1 − 1/(1 + exp(s₂ − s₃·T))] + s₄,   T in °C,

   for the relative permittivity (s = 48.391, 6.286, 0.0764, 1) and the effective conductivity
   (s = 2.173, 5.951, 0.0697, 0 S/m). **Status: confirmed in one code restatement only** — the
   coefficients were read in the public MITA model (github.com/sheldonkhall/MITA-model, ``axisymm_mwa.py``
   ``EM_parameters.es1…ss4``, the set its ``tests/ji-brace-2011.py`` uses to reproduce Ji & Brace 2011,
   with T in °C). The paper's own table was **not** read (thermal.md §1.3 lists it as [?]); check it
   before these numbers become test data. The set recalled in the issue (s₁ = 44.3, s₂ = 5.223,
   s₃ = 0.0878 for ε_r) does not match that restatement and is not used.

   The fit was made on ex vivo bovine liver heated from room temperature, so at 37 °C it gives
   ε_r ≈ 47.9 and σ ≈ 2.10 S/m, not Gabriel's 43.0 / 1.69. :func:`heated_dielectric` therefore
   applies it, by default, as a *relative* change X(T)/X(37 °C) on top of the tissue's own 37 °C value;
   ``mode="absolute"`` returns the fitted values themselves. Outside 2.45 GHz the relative shape is an
   assumption (the water-loss mechanism is the same; the fit was not measured there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from insitu.errors import PhysicsError
from insitu.tissue.dielectric import EPSILON_0, ColeCole

__all__ = [
    "EPSILON_0",
    "JI_BRACE_2011_CONDUCTIVITY",
    "JI_BRACE_2011_PERMITTIVITY",
    "MAX_FREQUENCY_HZ",
    "MIN_FREQUENCY_HZ",
    "MU_0",
    "MW_TISSUES",
    "SigmoidFit",
    "check_frequency",
    "cole_cole",
    "complex_permittivity_f_m",
    "dielectric_properties",
    "heated_dielectric",
]

MU_0 = 1.25663706212e-6  # vacuum permeability, H/m (CODATA 2018) [confirmed: CODATA]

# The solver and these models are used between 0.3 and 6 GHz: the Gabriel fits cover 10 Hz–100 GHz, but
# interstitial MW applicators work at 915 MHz and 2.45 GHz (≈ 5.8 GHz in research), and below ~300 MHz the
# applicator is electrically short and RF (quasi-static) physics applies (physics/electric.py).
MIN_FREQUENCY_HZ = 0.3e9
MAX_FREQUENCY_HZ = 6.0e9
REFERENCE_TEMPERATURE_C = 37.0

# Solver tissue name -> tissue-library row. Parameters, sources and statuses are in tissues.yaml.
MW_TISSUES: dict[str, str] = {
    "liver": "liver",
    "tumour": "hcc",
    "blood": "blood",
    "fat": "fat",
    "muscle": "muscle",
    "skin": "skin",
    "lung": "lung_inflated",
    "bone_cortical": "bone_cortical",
    "water": "water",
}


def check_frequency(frequency_hz: float) -> float:
    """The frequency as a float if it lies in the supported MW band (0.3–6 GHz); a one-line error otherwise."""
    try:
        f = float(frequency_hz)
    except (TypeError, ValueError):
        raise PhysicsError(f"frequency {frequency_hz!r} is not a number", "give it in Hz, e.g. 2.45e9") from None
    if not (math.isfinite(f) and MIN_FREQUENCY_HZ <= f <= MAX_FREQUENCY_HZ):
        raise PhysicsError(
            f"frequency {frequency_hz!r} Hz is outside the microwave band this solver supports (0.3–6 GHz)",
            "give the generator frequency in Hz, e.g. 915e6 or 2.45e9 (for ~480 kHz RF use physics.electric)",
        )
    return f


def cole_cole(tissue: str) -> ColeCole:
    """The Gabriel 4-Cole–Cole set of a solver tissue name (see :data:`MW_TISSUES`) or a tissue-library name."""
    from insitu.tissue.library import load_library

    lib = load_library()
    name = MW_TISSUES.get(tissue, tissue)
    if name not in lib:
        known = ", ".join(sorted(MW_TISSUES))
        raise PhysicsError(f"unknown tissue {tissue!r} for the microwave solver", f"use one of {known}")
    return lib.tissue(name).dielectric


def dielectric_properties(tissue: str, frequency_hz: float) -> tuple[float, float]:
    """(ε_r, σ in S/m) of a tissue at 37 °C from its Gabriel 4-Cole–Cole set."""
    f = check_frequency(frequency_hz)
    model = cole_cole(tissue)
    return float(model.relative_permittivity(f)), float(model.conductivity_s_m(f))


def complex_permittivity_f_m(
    eps_r: float | np.ndarray, sigma_s_m: float | np.ndarray, frequency_hz: float
) -> np.ndarray:
    """ε = ε₀ε_r − jσ/ω in F/m (time convention e^{jωt}: losses make the imaginary part negative)."""
    omega = 2.0 * math.pi * float(frequency_hz)
    return EPSILON_0 * np.asarray(eps_r, dtype=np.float64) - 1j * np.asarray(sigma_s_m, dtype=np.float64) / omega


@dataclass(frozen=True)
class SigmoidFit:
    """X(T) = s1·[1 − 1/(1 + exp(s2 − s3·T))] + s4 with T in °C (Ji & Brace 2011 form)."""

    s1: float
    s2: float
    s3_per_c: float
    s4: float
    source: str
    status: str

    def __call__(self, temperature_c: float | np.ndarray) -> np.ndarray:
        t = np.asarray(temperature_c, dtype=np.float64)
        if not np.all(np.isfinite(t)):
            raise PhysicsError("a temperature is not finite", "give temperatures in °C as finite numbers")
        # 1 − 1/(1 + e^x) = e^x/(1 + e^x) = 1/(1 + e^−x): the overflow-free logistic
        x = self.s2 - self.s3_per_c * t
        with np.errstate(over="ignore"):  # exp(−x) → inf far above the fit range gives the limit s4 exactly
            return self.s1 / (1.0 + np.exp(-x)) + self.s4

    def relative(self, temperature_c: float | np.ndarray) -> np.ndarray:
        """X(T) / X(37 °C): the change relative to body temperature."""
        return self(temperature_c) / self(REFERENCE_TEMPERATURE_C)

    def on_baseline(self, value_37: float, temperature_c: float | np.ndarray) -> np.ndarray:
        """Another tissue's value at T: its 37 °C value with the fit's relative change of the part above the fit's
        floor s4 (the dehydrated limit: ε_r → 1, σ → 0), s4 + (value_37 − s4)·(X(T) − s4)/(X(37) − s4). For σ
        (s4 = 0) this is value_37·X(T)/X(37); for ε_r it never falls below 1, where a plain ratio would (liver's
        43 × 1/47.9 → 0.9 far above 100 °C)."""
        x = self(temperature_c)
        return self.s4 + (value_37 - self.s4) * (x - self.s4) / (self(REFERENCE_TEMPERATURE_C) - self.s4)


_JB_SOURCE = (
    "Ji & Brace 2011, Phys Med Biol 56:5249 (liver, 2.45 GHz), as restated in github.com/sheldonkhall/MITA-model "
    "axisymm_mwa.py (EM_parameters es1–es4, ss1–ss4); the paper's table itself not read"
)
JI_BRACE_2011_PERMITTIVITY = SigmoidFit(48.391, 6.286, 0.0764, 1.0, _JB_SOURCE, "confirmed (one code restatement)")
JI_BRACE_2011_CONDUCTIVITY = SigmoidFit(2.173, 5.951, 0.0697, 0.0, _JB_SOURCE, "confirmed (one code restatement)")


def heated_dielectric(
    tissue: str,
    frequency_hz: float,
    temperature_c: float | np.ndarray,
    mode: Literal["relative", "absolute", "none"] = "relative",
) -> tuple[np.ndarray, np.ndarray]:
    """(ε_r, σ) of a tissue at temperature T (°C, array allowed) in the MW band.

    ``relative`` (default): the Gabriel value at 37 °C changed as the Ji & Brace sigmoids change above their
    dehydrated floor (:meth:`SigmoidFit.on_baseline`; ε_r stays ≥ 1 at any temperature) — the
    dehydration drop (ε_r and σ fall to ~20–25 % of their 37 °C value near 100 °C) on any tissue's own
    baseline. ``absolute``: the Ji & Brace fitted values themselves (liver, 2.45 GHz only). ``none``: the
    37 °C value everywhere. Non-aqueous tissues (fat, bone, lung) get the same relative drop under
    ``relative``; that is an extrapolation.
    """
    t = np.asarray(temperature_c, dtype=np.float64)
    if mode == "absolute":
        f = check_frequency(frequency_hz)
        if MW_TISSUES.get(tissue, tissue) != "liver" or abs(f / 2.45e9 - 1.0) > 0.05:
            raise PhysicsError(
                f"the absolute Ji & Brace fit is for liver at 2.45 GHz, not {tissue!r} at {f / 1e9:g} GHz",
                'use mode="relative" to apply its relative change to this tissue',
            )
        return JI_BRACE_2011_PERMITTIVITY(t), JI_BRACE_2011_CONDUCTIVITY(t)
    eps37, sig37 = dielectric_properties(tissue, frequency_hz)
    if mode == "none":
        return np.full(t.shape, eps37), np.full(t.shape, sig37)
    if mode != "relative":
        raise PhysicsError(f"unknown dielectric temperature mode {mode!r}", 'use "relative", "absolute" or "none"')
    return JI_BRACE_2011_PERMITTIVITY.on_baseline(eps37, t), JI_BRACE_2011_CONDUCTIVITY.on_baseline(sig37, t)
