"""Verification of :mod:`insitu.physics.damage` (thermal.md §3, §5.4 items 6 and 8, §8 V4; hifu.md §8 case 6).

Every number below is produced by running :class:`~insitu.physics.damage.DamageAccumulator` on a
few voxels and compared with a closed form or a high-accuracy ODE solution. :func:`verification_cases`
returns one row per compared quantity, ``{id, quantity, simulated, reference, tolerance_rel,
source}``, for ``make validate``; the tests call the same helpers.

Reference tables (thermal.md §3.1 isothermal times, §3.3 CEM43 times) are printed there to three
significant figures, so rows against them use the printed rounding as tolerance; the exact rows
(Ω = 1 at t* = exp(Ea/RT)/A, CEM43 = 240 at 240·60·0.5^(T−43) s) use 1e-6.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from insitu.physics.damage import DamageAccumulator, arrhenius_set, three_state_set
from insitu.physics.verification import verification_row

SRC_V4 = "thermal.md §8 V4 and §3.1 (t = exp(Ea/RT)/A, exact [D])"
SRC_TABLE = "thermal.md §3.1 isothermal-time table [D], printed to 3 significant figures"
SRC_CEM_TABLE = "thermal.md §3.3 (240 CEM43 = 112.5 s at 50 °C, 3.5 s at 55 °C, 0.11 s at 60 °C [D])"
SRC_HIFU6 = "hifu.md §8 case 6 (CEM43: 10 s at 56 °C = 1365.3 min, exact 10/60·2^13; 240 min at 43 °C = 240)"
SRC_THREE = "thermal.md §5.4-8: three-state at constant T vs scipy solve_ivp (DOP853, rtol 1e-10)"
SRC_RAMP = "insitu: Ω of a linear temperature ramp vs adaptive quadrature of the exact rate"

# thermal.md §3.1, "Isothermal time to Ω = 1" (seconds), as printed
ISOTHERMAL_TABLE_C = (45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 80.0)
ISOTHERMAL_TABLE_S = {
    "liver_comsol": (276.0, 61.1, 14.2, 3.43, 0.867, 0.228, 0.0177),
    "liver_jacques": (5160.0, 1010.0, 206.0, 44.2, 9.95, 2.34, 0.146),
}
CEM43_TABLE_S = {50.0: 112.5, 55.0: 3.5, 60.0: 0.11}


def printed_tolerance(value: float, digits: int | None = None) -> float:
    """Half a unit in the last printed digit, relative: the rounding of a tabulated number."""
    if digits is None:
        text = f"{value:.3g}"
        mantissa = text.split("e")[0]
        digits = len(mantissa.replace(".", "").replace("-", "").lstrip("0"))
        digits = max(digits, 1)
    exponent = math.floor(math.log10(abs(value)))
    return 0.5 * 10.0 ** (exponent - digits + 1) / abs(value)


def _voxels(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(1, 1, -1)


def isothermal_omega(set_name: str, temperature_c: float, duration_s: float, steps: int) -> float:
    """Ω after ``duration_s`` at constant ``temperature_c`` in ``steps`` equal updates."""
    acc = DamageAccumulator((1, 1, 1), models=(f"arrhenius:{set_name}",))
    t = _voxels([temperature_c])
    dt = duration_s / steps
    for _ in range(steps):
        acc.update(t, dt)
    return float(acc.state(f"arrhenius_omega_{set_name}").flat[0])  # float64 state, not the float32 field


def isothermal_times(set_name: str, temperatures_c: Sequence[float]) -> np.ndarray:
    """Simulated isothermal time to Ω = 1 at each temperature: 1 s of accumulation, t = 1 s / Ω."""
    acc = DamageAccumulator((1, 1, len(temperatures_c)), models=(f"arrhenius:{set_name}",))
    acc.update(_voxels(temperatures_c), 1.0)
    return 1.0 / acc.state(f"arrhenius_omega_{set_name}").ravel()


def isothermal_cem43(temperature_c: float, duration_s: float, steps: int = 1) -> float:
    """CEM43 (min) after ``duration_s`` at constant ``temperature_c`` in ``steps`` updates."""
    acc = DamageAccumulator((1, 1, 1), models=("cem43",), cem43_floor_c=-math.inf)
    t = _voxels([temperature_c])
    for _ in range(steps):
        acc.update(t, duration_s / steps)
    return float(acc.state("cem43_min").flat[0])


def three_state_run(temperature_c: float, duration_s: float, dt_s: float) -> tuple[float, float]:
    """(A, D) after ``duration_s`` at constant ``temperature_c`` with the accumulator's RK4."""
    acc = DamageAccumulator((1, 1, 1), models=("three_state",))
    t = _voxels([temperature_c])
    n = round(duration_s / dt_s)
    for _ in range(n):
        acc.update(t, dt_s)
    return float(acc.state("three_state_alive").flat[0]), float(acc.state("three_state_dead").flat[0])


def three_state_reference(temperature_c: float, duration_s: float) -> tuple[float, float]:
    """(A, D) from scipy's DOP853 at rtol 1e-10, atol 1e-13 (the reference solution)."""
    from scipy.integrate import solve_ivp

    s = three_state_set()
    sol = solve_ivp(
        lambda _t, y: s.rhs(y[0], y[1], temperature_c),
        (0.0, duration_s),
        [s.initial_alive, s.initial_dead],
        method="DOP853",
        rtol=1e-10,
        atol=1e-13,
    )
    return float(sol.y[0, -1]), float(sol.y[1, -1])


def three_state_convergence(
    temperature_c: float = 70.0, duration_s: float = 800.0, dts: Sequence[float] = (4.0, 2.0, 1.0)
) -> dict[str, Any]:
    """Errors of D against the reference for each step and the observed orders log2(e(h)/e(h/2))."""
    a_ref, d_ref = three_state_reference(temperature_c, duration_s)
    errors = [abs(three_state_run(temperature_c, duration_s, dt)[1] - d_ref) for dt in dts]
    orders = [math.log2(a / b) if a > 0 and b > 0 else math.nan for a, b in itertools.pairwise(errors)]
    return {"dts": list(dts), "errors": errors, "orders": orders, "dead_reference": d_ref, "alive_reference": a_ref}


def ramp_omega(
    set_name: str = "liver_comsol",
    start_c: float = 37.0,
    end_c: float = 80.0,
    duration_s: float = 60.0,
    dt_s: float = 0.5,
    within_step: str = "linear",
) -> tuple[float, float]:
    """(simulated, exact) Ω for T rising linearly from start to end; floor as in the YAML."""
    from scipy.integrate import quad

    acc = DamageAccumulator((1, 1, 1), models=(f"arrhenius:{set_name}",), within_step=within_step)  # type: ignore[arg-type]
    s = arrhenius_set(set_name)
    n = round(duration_s / dt_s)
    slope = (end_c - start_c) / duration_s
    acc.observe(_voxels([start_c]))
    for k in range(1, n + 1):
        acc.update(_voxels([start_c + slope * k * dt_s]), dt_s)
    floor = acc.arrhenius_floor_c
    t_floor = max(0.0, (floor - start_c) / slope)
    exact, _ = quad(lambda t: s.rate_1_s(start_c + slope * t), t_floor, duration_s, epsabs=0.0, epsrel=1e-12, limit=200)
    return float(acc.state(f"arrhenius_omega_{set_name}").flat[0]), float(exact)


_row = verification_row


def verification_cases() -> list[dict[str, Any]]:
    """One row per compared quantity (V4, HIFU-6, IN-DAMAGE-*), ~0.1 s after compilation."""
    rows: list[dict[str, Any]] = []
    # V4: Ω = 1 at the exact isothermal time, for several step counts
    for name in ("liver_comsol", "liver_jacques"):
        t_star = float(arrhenius_set(name).time_to_omega_s(60.0))
        for steps in (1, 100):
            omega = isothermal_omega(name, 60.0, t_star, steps)
            q = f"Ω after t* = {t_star:.6g} s at 60 °C, {name}, {steps} steps"
            rows.append(_row("V4", q, omega, 1.0, 1e-6, SRC_V4))
    # V4: CEM43 = 240 at 0.11 s-equivalent at 60 °C (exact 240·60·0.5^17 s)
    t240 = 240.0 * 60.0 * 0.5 ** (60.0 - 43.0)
    rows.append(
        _row("V4", f"CEM43 after {t240:.6g} s at 60 °C (min)", isothermal_cem43(60.0, t240), 240.0, 1e-6, SRC_V4)
    )
    # thermal.md §3.1 isothermal table, both liver sets
    for name, printed in ISOTHERMAL_TABLE_S.items():
        times = isothermal_times(name, ISOTHERMAL_TABLE_C)
        for temp, t_sim, ref in zip(ISOTHERMAL_TABLE_C, times, printed, strict=True):
            rows.append(
                _row("V4", f"time to Ω = 1 at {temp:g} °C, {name} (s)", t_sim, ref, printed_tolerance(ref), SRC_TABLE)
            )
    # thermal.md §3.3 times to 240 CEM43
    for temp, ref in CEM43_TABLE_S.items():
        t_sim = 240.0 / isothermal_cem43(temp, 1.0)
        digits = len(f"{ref:g}".replace(".", "").lstrip("0"))
        rows.append(
            _row(
                "V4", f"time to 240 CEM43 at {temp:g} °C (s)", t_sim, ref, printed_tolerance(ref, digits), SRC_CEM_TABLE
            )
        )
    # HIFU-6 CEM43 numbers
    hifu = (
        ("CEM43 of 10 s at 56 °C, 10 steps (min)", isothermal_cem43(56.0, 10.0, 10), 10.0 / 60.0 * 2.0**13),
        ("CEM43 of 240 min at 43 °C, 240 steps (min)", isothermal_cem43(43.0, 240.0 * 60.0, 240), 240.0),
    )
    rows += [_row("HIFU-6", q, sim, ref, 1e-6, SRC_HIFU6) for q, sim, ref in hifu]
    # three-state at constant temperature (70 °C, 800 s: D passes the 0.8 threshold at 691 s)
    conv = three_state_convergence()
    a_sim, d_sim = three_state_run(70.0, 800.0, 1.0)
    three = (
        ("three-state D after 800 s at 70 °C, dt 1 s", d_sim, conv["dead_reference"], 1e-6),
        ("three-state A after 800 s at 70 °C, dt 1 s", a_sim, conv["alive_reference"], 1e-6),
        ("three-state RK4 observed order in dt (2 → 1 s)", conv["orders"][-1], 4.0, 0.1),
    )
    rows += [_row("IN-DAMAGE-3S", q, sim, ref, tol, SRC_THREE) for q, sim, ref, tol in three]
    # linear-in-time temperature path: a 37 → 80 °C ramp in 60 s
    sim, exact = ramp_omega(dt_s=0.5)
    q = "Ω of a 37→80 °C ramp in 60 s, liver_comsol, dt 0.5 s"
    rows.append(_row("IN-DAMAGE-RAMP", q, sim, exact, 1e-3, SRC_RAMP))
    return rows
