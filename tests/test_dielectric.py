"""Microwave-band dielectric properties (physics/dielectric.py): Gabriel 4-Cole–Cole values at 915 MHz and
2.45 GHz, the Ji & Brace 2011 sigmoid in temperature, and one-line errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insitu.errors import PhysicsError
from insitu.physics.dielectric import (
    JI_BRACE_2011_CONDUCTIVITY,
    JI_BRACE_2011_PERMITTIVITY,
    MW_TISSUES,
    check_frequency,
    complex_permittivity_f_m,
    dielectric_properties,
    heated_dielectric,
)


@pytest.mark.parametrize(
    ("frequency_hz", "eps_r", "sigma"),
    # thermal.md §2.2 quotes the Gabriel liver values to 3 significant figures (43.0/1.69, 46.8/0.86):
    # the tolerance is half a unit in that last digit.
    [(2.45e9, 43.0, 1.69), (915e6, 46.8, 0.86)],
)
def test_liver_gabriel_values(frequency_hz: float, eps_r: float, sigma: float) -> None:
    e, s = dielectric_properties("liver", frequency_hz)
    assert e == pytest.approx(eps_r, abs=0.05)
    assert s == pytest.approx(sigma, abs=0.005 if sigma > 1 else 0.0051)


def test_every_mw_tissue_is_physical_and_ordered() -> None:
    vals = {name: dielectric_properties(name, 2.45e9) for name in MW_TISSUES}
    for name, (e, s) in vals.items():
        assert math.isfinite(e) and e > 1.0 and s > 0.0, name
    # water-rich tissues above water-poor ones (Gabriel 1996 ordering at 2.45 GHz)
    order = ["fat", "bone_cortical", "lung", "skin", "liver", "muscle", "blood"]
    eps = [vals[n][0] for n in order]
    assert eps == sorted(eps)
    # tumour = liver × 1.12 (ε_r) and × 1.24 (σ) (Stauffer 2003 ratios in the tissue library)
    assert vals["tumour"][0] / vals["liver"][0] == pytest.approx(1.12, rel=1e-12)
    assert vals["tumour"][1] / vals["liver"][1] == pytest.approx(1.24, rel=1e-12)


def test_complex_permittivity_sign_convention() -> None:
    eps = complex_permittivity_f_m(43.0, 1.69, 2.45e9)
    assert eps.real == pytest.approx(43.0 * 8.8541878128e-12)
    assert eps.imag == pytest.approx(-1.69 / (2 * math.pi * 2.45e9))  # e^{jωt}: losses negative


def test_ji_brace_sigmoid_form_and_values() -> None:
    # the form X(T) = s1·[1 − 1/(1 + exp(s2 − s3·T))] + s4, written out independently here
    def x(s1, s2, s3, s4, t):
        return s1 * (1.0 - 1.0 / (1.0 + math.exp(s2 - s3 * t))) + s4

    for t in (20.0, 37.0, 60.0, 80.0, 100.0, 120.0):
        assert float(JI_BRACE_2011_PERMITTIVITY(t)) == pytest.approx(x(48.391, 6.286, 0.0764, 1.0, t), rel=1e-12)
        assert float(JI_BRACE_2011_CONDUCTIVITY(t)) == pytest.approx(x(2.173, 5.951, 0.0697, 0.0, t), rel=1e-12)
    t = np.linspace(20.0, 130.0, 111)
    assert np.all(np.diff(JI_BRACE_2011_PERMITTIVITY(t)) < 0)  # dehydration: monotone fall
    assert np.all(np.diff(JI_BRACE_2011_CONDUCTIVITY(t)) < 0)
    # bovine ex vivo baseline ≈ 47.92 / 2.10 at 37 °C (so the relative mode is the default), ≈ 22 % / 27 % at 100 °C
    assert float(JI_BRACE_2011_PERMITTIVITY(37.0)) == pytest.approx(47.915, abs=0.001)
    assert float(JI_BRACE_2011_CONDUCTIVITY(37.0)) == pytest.approx(2.101, abs=0.001)
    assert float(JI_BRACE_2011_PERMITTIVITY.relative(100.0)) == pytest.approx(0.228, abs=0.001)
    # no overflow far outside the fitted range
    assert np.all(np.isfinite(JI_BRACE_2011_PERMITTIVITY(np.array([-1e4, 1e4]))))


def test_heated_dielectric_modes() -> None:
    t = np.array([37.0, 70.0, 100.0])
    e, s = heated_dielectric("liver", 2.45e9, t)
    e37, s37 = dielectric_properties("liver", 2.45e9)
    assert e[0] == pytest.approx(e37) and s[0] == pytest.approx(s37)
    assert np.all(np.diff(e) < 0) and np.all(np.diff(s) < 0)
    ea, _ = heated_dielectric("liver", 2.45e9, t, mode="absolute")
    assert ea[0] == pytest.approx(47.915, abs=0.001)
    en, sn = heated_dielectric("muscle", 915e6, t, mode="none")
    assert np.all(en == en[0]) and np.all(sn == sn[0])


@pytest.mark.parametrize("bad", [100e6, 10e9, float("nan"), -2.45e9, "fast"])
def test_bad_frequency_is_a_one_line_error(bad) -> None:
    with pytest.raises(PhysicsError) as err:
        check_frequency(bad)
    assert "\n" not in str(err.value) and "Hz" in str(err.value)


def test_bad_tissue_mode_and_temperature() -> None:
    with pytest.raises(PhysicsError, match="unknown tissue"):
        dielectric_properties("brain_of_a_whale", 2.45e9)
    with pytest.raises(PhysicsError, match=r"liver at 2\.45 GHz"):
        heated_dielectric("muscle", 2.45e9, 50.0, mode="absolute")
    with pytest.raises(PhysicsError, match=r"liver at 2\.45 GHz"):
        heated_dielectric("liver", 915e6, 50.0, mode="absolute")
    with pytest.raises(PhysicsError, match="mode"):
        heated_dielectric("liver", 2.45e9, 50.0, mode="linear")  # type: ignore[arg-type]
    with pytest.raises(PhysicsError, match="not finite"):
        heated_dielectric("liver", 2.45e9, np.array([40.0, np.nan]))


def test_relative_mode_keeps_permittivity_physical_at_any_temperature():
    """Far above 100 °C the dehydrated tissue tends to the fit's floor (ε_r → 1, σ → 0), never below it."""
    t = np.array([37.0, 100.0, 150.0, 250.0, 1000.0])
    for tissue in ("liver", "fat", "muscle"):
        eps, sig = heated_dielectric(tissue, 2.45e9, t)
        assert np.all(eps >= 1.0) and np.all(sig >= 0.0)
        assert eps[-1] == pytest.approx(1.0, abs=0.01)
        assert np.all(np.diff(eps) < 0)
