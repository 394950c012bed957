"""Thermal damage accumulated along a temperature history (thermal.md §3): Arrhenius Ω, CEM43,
the three-state cell-death model, and the temperature extremes behind isotherm and cryo criteria.

One :class:`DamageAccumulator` holds any subset of the models, chosen by name::

    acc = DamageAccumulator(shape, models=("arrhenius:liver_comsol", "cem43", "three_state", "extremes"))
    acc.update(temperature_c, dt_s)      # once per solver step (the bioheat solver calls it)
    acc.perfusion_factor()               # 1 = perfusion intact, 0 = stopped (re-read by the solver)
    acc.dead_mask("isotherm:60")         # bool volume
    acc.fields()                         # named float32 volumes for output and the TissueState

Every model constant comes from ``damage_models.yaml`` (source and status per number).

**Time integration.** The solver hands over the temperature at the *end* of each step. With
``within_step="linear"`` (default) the temperature is taken to move linearly from the previous
update's field to this one, and each rate is integrated over the step as

    ∫ k dt ≈ Δt · (k₁ − k₀) / ln(k₁/k₀)       (logarithmic mean of the end-point rates),

which is exact when ln k varies linearly in time: exactly so for CEM43 (ln R^(43−T) is linear in T,
the 43 °C breakpoint is split out exactly), to second order in Δt for Arrhenius (ln k is linear in
1/T), and exact for both when T is constant. With ``within_step="constant"`` (and for the first
update, which has no previous field) T is held at the given value for the whole step and the rate
is integrated exactly under that assumption: Ω += Δt·A·exp(−Ea/(R T_K)), CEM43 += Δt/60·R^(43−T).
Both rules are additive over split steps of constant T. Rates below an accumulation floor (per
model, from the YAML: Arrhenius 43 °C, CEM43 39 °C, three-state 39 °C for untouched tissue; see
the YAML for why) are taken as zero; a step that straddles a floor is integrated over its part
above it.

**Three-state model** (O'Neill 2011 as in Go-Smart): classical RK4 (order 4) on (A, D) per voxel,
with k_f evaluated on the same linear temperature path (k_f needs exp(T/T_k) only at the step's
ends; the midpoint value is their geometric mean). A step is split into ``n`` equal substeps so
that (2 k_f,max + k_b)·Δt/n ≤ 0.2, far inside RK4's stability region; for the default parameters
n = 1 up to 136 °C at Δt = 1 s. Results are clipped to 0 ≤ A, D and A + D ≤ 1 (a no-op in the
tests). Untouched tissue below the floor is held at the initial state (A₀ = 0.99, D₀ = 0).

**Precision.** Ω, CEM43, A and D are stored in float64 (long sums of small increments; the 1e-6
isothermal checks need it); the extremes and the previous temperature in float32; ``fields()`` and
``perfusion_factor()`` return float32. Per-step work is one finiteness check of the input and one
fused ``numba`` pass over chunks of ``CHUNK`` voxels: a vectorised first pass (step start,
extremes, a count of voxels above the lowest floor), then — only in chunks that have such voxels
(or, for three-state, were heated before) — the model passes while the chunk is still in cache.
Nothing is allocated per step. Grids under ``SERIAL_BELOW`` voxels use the serial twins.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import yaml

from insitu.errors import PhysicsError

DATA_FILE = Path(__file__).with_name("damage_models.yaml")
MODEL_KINDS = ("arrhenius", "cem43", "three_state", "extremes")
FIELD_OMEGA_PREFIX = "arrhenius_omega_"
FIELD_CEM43 = "cem43_min"
FIELD_MAX_T = "max_temperature_c"
FIELD_MIN_T = "min_temperature_c"
FIELD_ALIVE = "three_state_alive"
FIELD_DEAD = "three_state_dead"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# substep bound for the three-state RK4: (2 k_f + k_b)·h ≤ _RK4_LAMBDA_H (RK4 is stable to 2.78)
_RK4_LAMBDA_H = 0.2


# ----------------------------------------------------------------------------------------------
# parameter sets (data from damage_models.yaml)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrheniusSet:
    """One Arrhenius parameter set: rate k(T) = A·exp(−Ea/(R T_K)) in 1/s.

    For sets given in Eyring form, ``delta_s_j_mol_k``/``delta_h_j_mol``/``reference_temperature_c``
    hold the confirmed inputs and ``a_1_s``/``ea_j_mol`` the derived Arrhenius pair.
    """

    name: str
    a_1_s: float
    ea_j_mol: float
    tissue: str
    end_point: str
    source: str
    status: str
    gas_constant: float
    celsius_offset_k: float
    delta_s_j_mol_k: float | None = None
    delta_h_j_mol: float | None = None
    reference_temperature_c: float | None = None
    note: str = ""

    @property
    def ln_a(self) -> float:
        """ln A (the kernels work with log-rates: no overflow for A = 1e91)."""
        return math.log(self.a_1_s)

    @property
    def ea_over_r_k(self) -> float:
        """Ea / R in kelvin."""
        return self.ea_j_mol / self.gas_constant

    def rate_1_s(self, temperature_c: float | np.ndarray) -> float | np.ndarray:
        """k(T) = A·exp(−Ea/(R T_K)), 1/s (float64)."""
        t_k = np.asarray(temperature_c, dtype=np.float64) + self.celsius_offset_k
        out = np.exp(self.ln_a - self.ea_over_r_k / t_k)
        return float(out) if out.ndim == 0 else out

    def time_to_omega_s(self, temperature_c: float | np.ndarray, omega: float = 1.0) -> float | np.ndarray:
        """Isothermal time to reach ``omega``: t = Ω·exp(Ea/(R T_K))/A (thermal.md §3.1)."""
        t_k = np.asarray(temperature_c, dtype=np.float64) + self.celsius_offset_k
        out = omega * np.exp(self.ea_over_r_k / t_k - self.ln_a)
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class ThreeStateSet:
    """Constants of the three-state model (thermal.md §3.2)."""

    name: str
    kf_bar_1_s: float
    kb_1_s: float
    tk_c: float
    offset_factor: float
    offset_temperature_c: float
    dead_threshold: float
    initial_alive: float
    initial_dead: float
    clamp_negative_kf: bool
    source: str
    status: str

    @property
    def kf_offset(self) -> float:
        """The Go-Smart baseline term offset_factor·exp(offset_temperature/T_k) (dimensionless)."""
        return self.offset_factor * math.exp(self.offset_temperature_c / self.tk_c)

    def kf_1_s(self, temperature_c: float | np.ndarray) -> float | np.ndarray:
        """k_f(T) = k̄_f·[exp(T/T_k) − offset] (clamped at 0 when ``clamp_negative_kf``)."""
        out = self.kf_bar_1_s * (np.exp(np.asarray(temperature_c, dtype=np.float64) / self.tk_c) - self.kf_offset)
        if self.clamp_negative_kf:
            out = np.maximum(out, 0.0)
        return float(out) if np.ndim(out) == 0 else out

    def rhs(self, alive: float, dead: float, temperature_c: float) -> tuple[float, float]:
        """(dA/dt, dD/dt) at one state and temperature (the reference ODE right-hand side)."""
        kf = float(self.kf_1_s(temperature_c))
        vul = 1.0 - alive - dead
        return -kf * (1.0 - alive) * alive + self.kb_1_s * vul, kf * (1.0 - alive) * vul


@dataclass(frozen=True)
class Cem43Params:
    """CEM43 constants (Sapareto & Dewey 1984)."""

    reference_temperature_c: float
    r_at_or_above: float
    r_below: float
    necrosis_threshold_min: float
    source: str
    status: str

    def minutes(self, temperature_c: float, duration_s: float) -> float:
        """CEM43 (min) of ``duration_s`` at a constant ``temperature_c``."""
        r = self.r_at_or_above if temperature_c >= self.reference_temperature_c else self.r_below
        return duration_s / 60.0 * r ** (self.reference_temperature_c - temperature_c)


@dataclass(frozen=True)
class DamageModels:
    """Everything in ``damage_models.yaml``, parsed and converted."""

    arrhenius: dict[str, ArrheniusSet]
    default_arrhenius: str
    arrhenius_floor_c: float
    entropy_a_j_mol_k: float
    entropy_b_1_k: float
    entropy_reference_c: float
    cem43: Cem43Params
    cem43_floor_c: float
    three_state: dict[str, ThreeStateSet]
    default_three_state: str
    three_state_floor_c: float
    ablation_isotherms_c: tuple[float, ...]
    cryo_isotherms_c: tuple[float, ...]
    residual_perfusion_factor: float
    gas_constant: float
    boltzmann: float
    planck: float
    celsius_offset_k: float
    sources: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def eyring_to_arrhenius(
    delta_s_j_mol_k: float,
    delta_h_j_mol: float,
    reference_temperature_c: float,
    *,
    gas_constant: float | None = None,
    boltzmann: float | None = None,
    planck: float | None = None,
    celsius_offset_k: float | None = None,
) -> tuple[float, float]:
    """(A [1/s], Ea [J/mol]) matching the Eyring rate and its slope at T*: Ea = ΔH + RT*, A = e·k_BT*/h·e^(ΔS/R)."""
    m = load_damage_models() if None in (gas_constant, boltzmann, planck, celsius_offset_k) else None
    r = gas_constant if gas_constant is not None else m.gas_constant  # type: ignore[union-attr]
    kb = boltzmann if boltzmann is not None else m.boltzmann  # type: ignore[union-attr]
    h = planck if planck is not None else m.planck  # type: ignore[union-attr]
    off = celsius_offset_k if celsius_offset_k is not None else m.celsius_offset_k  # type: ignore[union-attr]
    t_ref = reference_temperature_c + off
    ea = delta_h_j_mol + r * t_ref
    a = math.e * kb * t_ref / h * math.exp(delta_s_j_mol_k / r)
    return a, ea


def arrhenius_to_eyring(a_1_s: float, ea_j_mol: float, reference_temperature_c: float) -> tuple[float, float]:
    """The inverse of :func:`eyring_to_arrhenius`: (ΔS [J/mol/K], ΔH [J/mol]) at T*."""
    m = load_damage_models()
    t_ref = reference_temperature_c + m.celsius_offset_k
    delta_h = ea_j_mol - m.gas_constant * t_ref
    delta_s = m.gas_constant * (math.log(a_1_s) - 1.0 - math.log(m.boltzmann * t_ref / m.planck))
    return delta_s, delta_h


def entropy_enthalpy_residual(name: str) -> tuple[float, float, float]:
    """Jacques' cross-tissue relation ΔS ≈ a + bΔH as a sanity check of one Arrhenius set.

    Returns (ΔS of the set, ΔS predicted from its ΔH, residual) in J/mol/K. Eyring sets use their
    own (ΔS, ΔH); direct (A, Ea) sets are converted at the YAML's reference temperature.
    """
    m = load_damage_models()
    s = arrhenius_set(name)
    if s.delta_s_j_mol_k is not None and s.delta_h_j_mol is not None:
        ds, dh = s.delta_s_j_mol_k, s.delta_h_j_mol
    else:
        ds, dh = arrhenius_to_eyring(s.a_1_s, s.ea_j_mol, m.entropy_reference_c)
    predicted = m.entropy_a_j_mol_k + m.entropy_b_1_k * dh
    return ds, predicted, ds - predicted


def _value(entry: Any, what: str) -> Any:
    """The ``value`` of a {value, source, status} entry (plain numbers are accepted too)."""
    if isinstance(entry, Mapping):
        if "value" not in entry:
            raise PhysicsError(f"{DATA_FILE.name}: {what} has no value", "give {value, source, status}")
        return entry["value"]
    return entry


@cache
def load_damage_models(path: str | None = None) -> DamageModels:
    """Parse ``damage_models.yaml`` (cached). Raises :class:`PhysicsError` on a malformed file."""
    file = Path(path) if path else DATA_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PhysicsError(
            f"damage model file {file.name} cannot be read ({exc})", "restore it from the package"
        ) from None
    pc = raw["physical_constants"]
    kb = float(_value(pc["boltzmann_j_k"], "boltzmann_j_k"))
    h = float(_value(pc["planck_j_s"], "planck_j_s"))
    na = float(_value(pc["avogadro_1_mol"], "avogadro_1_mol"))
    off = float(_value(pc["celsius_offset_k"], "celsius_offset_k"))
    r = na * kb
    sources = dict(raw.get("sources", {}))

    arr = raw["arrhenius"]
    sets: dict[str, ArrheniusSet] = {}
    for name, e in arr["sets"].items():
        common = {
            "name": name,
            "tissue": str(e.get("tissue", "")),
            "end_point": str(e.get("end_point", "")),
            "source": str(e.get("source", "")),
            "status": str(e.get("status", "")),
            "note": str(e.get("note", "")),
            "gas_constant": r,
            "celsius_offset_k": off,
        }
        if "delta_s_j_mol_k" in e:
            ds, dh, tref = float(e["delta_s_j_mol_k"]), float(e["delta_h_j_mol"]), float(e["reference_temperature_c"])
            a, ea = eyring_to_arrhenius(ds, dh, tref, gas_constant=r, boltzmann=kb, planck=h, celsius_offset_k=off)
            sets[name] = ArrheniusSet(
                a_1_s=a, ea_j_mol=ea, delta_s_j_mol_k=ds, delta_h_j_mol=dh, reference_temperature_c=tref, **common
            )
        else:
            sets[name] = ArrheniusSet(a_1_s=float(e["a_1_s"]), ea_j_mol=float(e["ea_j_mol"]), **common)
    rel = arr["entropy_enthalpy_relation"]

    c = raw["cem43"]
    cem = Cem43Params(
        reference_temperature_c=float(_value(c["reference_temperature_c"], "cem43.reference_temperature_c")),
        r_at_or_above=float(_value(c["r_at_or_above"], "cem43.r_at_or_above")),
        r_below=float(_value(c["r_below"], "cem43.r_below")),
        necrosis_threshold_min=float(_value(c["necrosis_threshold_min"], "cem43.necrosis_threshold_min")),
        source=str(c["necrosis_threshold_min"].get("source", "")),
        status=str(c["r_at_or_above"].get("status", "")),
    )

    ts = raw["three_state"]
    three: dict[str, ThreeStateSet] = {}
    for name, e in ts["sets"].items():
        three[name] = ThreeStateSet(
            name=name,
            kf_bar_1_s=float(_value(e["kf_bar_1_s"], "kf_bar_1_s")),
            kb_1_s=float(_value(e["kb_1_s"], "kb_1_s")),
            tk_c=float(_value(e["tk_c"], "tk_c")),
            offset_factor=float(_value(e["offset_factor"], "offset_factor")),
            offset_temperature_c=float(_value(e["offset_temperature_c"], "offset_temperature_c")),
            dead_threshold=float(_value(e["dead_threshold"], "dead_threshold")),
            initial_alive=float(_value(e["initial_alive"], "initial_alive")),
            initial_dead=float(_value(e["initial_dead"], "initial_dead")),
            clamp_negative_kf=bool(_value(e["clamp_negative_kf"], "clamp_negative_kf")),
            source=str(e["kf_bar_1_s"].get("source", "")),
            status=str(e["kf_bar_1_s"].get("status", "")),
        )
    iso = raw["isotherms"]
    return DamageModels(
        arrhenius=sets,
        default_arrhenius=str(arr["default_set"]),
        arrhenius_floor_c=float(_value(arr["accumulation_floor_c"], "arrhenius.accumulation_floor_c")),
        entropy_a_j_mol_k=float(_value(rel["a_j_mol_k"], "a_j_mol_k")),
        entropy_b_1_k=float(_value(rel["b_1_k"], "b_1_k")),
        entropy_reference_c=float(_value(rel["reference_temperature_c"], "reference_temperature_c")),
        cem43=cem,
        cem43_floor_c=float(_value(c["accumulation_floor_c"], "cem43.accumulation_floor_c")),
        three_state=three,
        default_three_state=str(ts["default_set"]),
        three_state_floor_c=float(_value(ts["accumulation_floor_c"], "three_state.accumulation_floor_c")),
        ablation_isotherms_c=tuple(float(_value(v, "isotherm")) for v in iso["ablation_c"]),
        cryo_isotherms_c=tuple(float(_value(v, "isotherm")) for v in iso["cryo_c"]),
        residual_perfusion_factor=float(_value(raw["perfusion"]["residual_factor"], "perfusion.residual_factor")),
        gas_constant=r,
        boltzmann=kb,
        planck=h,
        celsius_offset_k=off,
        sources=sources,
        raw=raw,
    )


def _unknown(kind: str, name: str, known: Iterable[str]) -> PhysicsError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return PhysicsError(f"unknown {kind} {name!r}", f"{hint}known: {', '.join(known)}")


def arrhenius_set(name: str) -> ArrheniusSet:
    """The named Arrhenius set; unknown names raise :class:`PhysicsError` with the closest names."""
    sets = load_damage_models().arrhenius
    if name not in sets:
        raise _unknown("Arrhenius parameter set", name, sets)
    return sets[name]


def three_state_set(name: str | None = None) -> ThreeStateSet:
    """The named three-state set (default: the YAML's ``default_set``)."""
    m = load_damage_models()
    name = name or m.default_three_state
    if name not in m.three_state:
        raise _unknown("three-state parameter set", name, m.three_state)
    return m.three_state[name]


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _logmean_integral(dur: float, x_lo: float, x_hi: float) -> float:
    """∫ exp(x(t)) dt over ``dur`` with x linear from x_lo to x_hi (x_hi ≥ x_lo): dur·e^x_hi·(1−e^−d)/d."""
    d = x_hi - x_lo
    if d > 1e-9:
        return dur * math.exp(x_hi) * (-math.expm1(-d) / d)
    return dur * math.exp(x_hi) * (1.0 - 0.5 * d)


@numba.njit(cache=True)
def _arrhenius_increment(
    lo: float, hi: float, dt: float, ln_a: float, ea_r: float, floor_c: float, x_floor: float, off: float
) -> float:
    """Ω gained over one step whose temperature runs between lo and hi (°C); 0 below the floor."""
    if hi <= floor_c:
        return 0.0
    x_hi = ln_a - ea_r / (hi + off)
    if hi == lo:
        return dt * math.exp(x_hi)
    if lo >= floor_c:
        return _logmean_integral(dt, ln_a - ea_r / (lo + off), x_hi)
    return _logmean_integral(dt * (hi - floor_c) / (hi - lo), x_floor, x_hi)


@numba.njit(cache=True)
def _cem43_increment(
    lo: float, hi: float, dt: float, t_ref: float, c_above: float, c_below: float, floor_c: float
) -> float:
    """CEM43 minutes over one step (ln rate = (T − 43)·c, c = −ln R per side; exact for linear T)."""
    if hi <= floor_c:
        return 0.0
    if hi == lo:
        c = c_above if hi >= t_ref else c_below
        return dt / 60.0 * math.exp((hi - t_ref) * c)
    a = lo if lo > floor_c else floor_c
    span = hi - lo
    total = 0.0
    if a < t_ref:  # part below the breakpoint
        b = hi if hi < t_ref else t_ref
        total += _logmean_integral(dt * (b - a) / span, (a - t_ref) * c_below, (b - t_ref) * c_below)
    if hi > t_ref:  # part at or above it
        a2 = a if a > t_ref else t_ref
        total += _logmean_integral(dt * (hi - a2) / span, (a2 - t_ref) * c_above, (hi - t_ref) * c_above)
    return total / 60.0


@numba.njit(cache=True)
def _kf(e: float, kf_bar: float, kf_off: float, clamp: bool) -> float:
    k = kf_bar * (e - kf_off)
    if clamp and k < 0.0:
        return 0.0
    return k


@numba.njit(cache=True)
def _three_state_step(
    a: float,
    d: float,
    t0: float,
    t1: float,
    dt: float,
    kf_bar: float,
    kb: float,
    tk: float,
    kf_off: float,
    clamp: bool,
) -> tuple[float, float]:
    """RK4 over one step with T linear from t0 to t1 (°C); substeps keep (2k_f + k_b)·h ≤ 0.2."""
    e0 = math.exp(t0 / tk)
    e1 = e0 if t1 == t0 else math.exp(t1 / tk)
    kf_max = kf_bar * (max(e0, e1) - kf_off)
    lam = (2.0 * kf_max if kf_max > 0.0 else 0.0) + kb
    n = 1
    if lam * dt > _RK4_LAMBDA_H:
        n = int(math.ceil(lam * dt / _RK4_LAMBDA_H))  # noqa: RUF046 (numba: keep the int explicit)
    h = dt / n
    # e(T) ratio over half a substep (exp(T/T_k) is geometric along the linear path)
    q = 1.0 if t1 == t0 else (math.sqrt(e1 / e0) if n == 1 else math.exp((t1 - t0) / (2.0 * n * tk)))
    e = e0
    for _ in range(n):
        em = e * q
        ee = em * q
        k1f = _kf(e, kf_bar, kf_off, clamp)
        kmf = _kf(em, kf_bar, kf_off, clamp)
        k4f = _kf(ee, kf_bar, kf_off, clamp)
        # stage 1
        v = 1.0 - a - d
        fa1 = -k1f * (1.0 - a) * a + kb * v
        fd1 = k1f * (1.0 - a) * v
        # stage 2
        a2 = a + 0.5 * h * fa1
        d2 = d + 0.5 * h * fd1
        v = 1.0 - a2 - d2
        fa2 = -kmf * (1.0 - a2) * a2 + kb * v
        fd2 = kmf * (1.0 - a2) * v
        # stage 3
        a3 = a + 0.5 * h * fa2
        d3 = d + 0.5 * h * fd2
        v = 1.0 - a3 - d3
        fa3 = -kmf * (1.0 - a3) * a3 + kb * v
        fd3 = kmf * (1.0 - a3) * v
        # stage 4
        a4 = a + h * fa3
        d4 = d + h * fd3
        v = 1.0 - a4 - d4
        fa4 = -k4f * (1.0 - a4) * a4 + kb * v
        fd4 = k4f * (1.0 - a4) * v
        a = a + h / 6.0 * (fa1 + 2.0 * fa2 + 2.0 * fa3 + fa4)
        d = d + h / 6.0 * (fd1 + 2.0 * fd2 + 2.0 * fd3 + fd4)
        a = min(max(a, 0.0), 1.0)
        d = min(max(d, 0.0), 1.0 - a)
        e = ee
    return a, d


# indices into the packed scalar parameters of the update kernels
P_DT, P_USE_PREV, P_HAVE_PREV, P_DO_EXT, P_WORK_FLOOR, P_OFFSET_K = 0, 1, 2, 3, 4, 5
P_DO_CEM, P_CEM_REF, P_CEM_C_ABOVE, P_CEM_C_BELOW, P_CEM_FLOOR = 6, 7, 8, 9, 10
P_DO_3S, P_KF_BAR, P_KB, P_TK, P_KF_OFF, P_CLAMP, P_FLOOR_3S, P_ALIVE_SKIP = 11, 12, 13, 14, 15, 16, 17, 18
N_PARAMS = 19
# below this many voxels the serial kernels run (a parallel launch costs more than the work)
SERIAL_BELOW = 1 << 15
# voxels per chunk of the update pass (16 KiB of float32: the chunk stays in L1/L2 between model passes)
CHUNK = 4096


@numba.njit(cache=True)
def _chunk_start(
    temp: np.ndarray,
    prev: np.ndarray,
    t_start: np.ndarray,
    tmax: np.ndarray,
    tmin: np.ndarray,
    start: int,
    stop: int,
    mode: int,
    do_ext: bool,
    work_floor: float,
) -> int:
    """Pass 1 over one chunk; returns how many voxels lie above ``work_floor`` during the step.

    Keeps each voxel's step-start temperature in ``t_start`` (mode 0: this temperature, no
    ``prev``; 1: this temperature, then stored in ``prev``; 2: ``prev``, then replaced by this
    one; 3: ``prev`` is the caller's step-start field, read only) and updates the extremes (NaN = not
    seen yet). It runs on every voxel every step, so the first loop has no branch and no float
    reduction (an integer count vectorises; a running float max did not, and cost 3× more), and the
    extremes sit in a loop of their own.
    """
    k = 0
    for i in range(start, stop):
        t1 = temp[i]
        t0 = prev[i] if mode >= 2 else t1
        if mode == 1 or mode == 2:
            prev[i] = t1
        t_start[i - start] = t0
        k += (t1 if t1 > t0 else t0) > work_floor
    if do_ext:  # a loop of its own: fewer arrays per loop keep it vectorisable
        for i in range(start, stop):
            t1 = temp[i]
            t0 = t_start[i - start]
            hi = t1 if t1 > t0 else t0
            lo = t0 if t1 > t0 else t1
            if not (tmax[i] >= hi):  # stores only where the extreme moves: little write traffic
                tmax[i] = hi
            if not (tmin[i] <= lo):
                tmin[i] = lo
    return k


@numba.njit(cache=True, inline="always")
def _update_chunk(
    c: int,
    tid: int,
    temp: np.ndarray,
    prev: np.ndarray,
    start_t: np.ndarray,
    tmax: np.ndarray,
    tmin: np.ndarray,
    omega: np.ndarray,
    arr: np.ndarray,
    cem: np.ndarray,
    alive: np.ndarray,
    dead: np.ndarray,
    touched: np.ndarray,
    p: np.ndarray,
) -> None:
    """Voxels of chunk ``c``, ``CHUNK`` at a time so the chunk stays in cache between passes.

    :func:`_chunk_start` first (step starts into the thread's ``start_t`` row ``tid`` — the serial
    pass uses row 0, as ``numba.get_thread_id`` in a cached non-parallel function crashed on reload —
    extremes, and a count of voxels above the lowest floor). Only when that count is non-zero (or,
    for the three-state model, the chunk was heated before) do the model passes run: the
    Arrhenius sets (rows of ``arr``: ln A, Ea/R, floor, log-rate at the floor), CEM43,
    three-state. ``p`` holds the scalars (indices P_*).
    """
    start = c * CHUNK
    stop = min(start + CHUNK, temp.size)
    dt = p[P_DT]
    mode = 0 if p[P_USE_PREV] == 0.0 else (3 if p[P_HAVE_PREV] == 2.0 else (2 if p[P_HAVE_PREV] != 0.0 else 1))
    t_start = start_t[tid]
    hot = _chunk_start(temp, prev, t_start, tmax, tmin, start, stop, mode, p[P_DO_EXT] != 0.0, p[P_WORK_FLOOR])
    if hot > 0:
        off = p[P_OFFSET_K]
        for s in range(omega.shape[0]):
            ln_a, ea_r, floor_c, x_floor = arr[s, 0], arr[s, 1], arr[s, 2], arr[s, 3]
            for i in range(start, stop):
                t1 = np.float64(temp[i])
                t0 = np.float64(t_start[i - start])
                hi = max(t0, t1)
                if hi > floor_c:
                    omega[s, i] += _arrhenius_increment(min(t0, t1), hi, dt, ln_a, ea_r, floor_c, x_floor, off)
        cem_floor = p[P_CEM_FLOOR]
        if p[P_DO_CEM] != 0.0:
            ref, c_above, c_below = p[P_CEM_REF], p[P_CEM_C_ABOVE], p[P_CEM_C_BELOW]
            for i in range(start, stop):
                t1 = np.float64(temp[i])
                t0 = np.float64(t_start[i - start])
                hi = max(t0, t1)
                if hi > cem_floor:
                    cem[i] += _cem43_increment(min(t0, t1), hi, dt, ref, c_above, c_below, cem_floor)
    # three-state: a chunk never heated above the floor holds only voxels at the initial state
    if p[P_DO_3S] != 0.0 and (hot > 0 or touched[c] != 0):
        floor_3s, skip = p[P_FLOOR_3S], p[P_ALIVE_SKIP]
        kf_bar, kb, tk, kf_off, clamp = p[P_KF_BAR], p[P_KB], p[P_TK], p[P_KF_OFF], p[P_CLAMP] != 0.0
        for i in range(start, stop):
            t1 = np.float64(temp[i])
            t0 = np.float64(t_start[i - start])
            a = alive[i]
            if max(t0, t1) > floor_3s or a < skip:
                a, d = _three_state_step(a, dead[i], t0, t1, dt, kf_bar, kb, tk, kf_off, clamp)
                alive[i] = a
                dead[i] = d
                touched[c] = 1


@numba.njit(parallel=True, cache=True)
def _update_parallel(temp, prev, start_t, tmax, tmin, omega, arr, cem, alive, dead, touched, p):  # type: ignore[no-untyped-def]
    """One fused parallel pass over all voxels (flat views), chunk by chunk; see :func:`_update_chunk`."""
    for c in numba.prange((temp.size + CHUNK - 1) // CHUNK):
        _update_chunk(
            c, numba.get_thread_id(), temp, prev, start_t, tmax, tmin, omega, arr, cem, alive, dead, touched, p
        )


@numba.njit(cache=True)
def _update_serial(temp, prev, start_t, tmax, tmin, omega, arr, cem, alive, dead, touched, p):  # type: ignore[no-untyped-def]
    """The same pass on one thread, for small grids."""
    for c in range((temp.size + CHUNK - 1) // CHUNK):
        _update_chunk(c, 0, temp, prev, start_t, tmax, tmin, omega, arr, cem, alive, dead, touched, p)


@numba.njit(parallel=True, cache=True)
def _count_invalid_parallel(x: np.ndarray, lowest: float) -> int:
    """Voxels that are not finite or lie below ``lowest`` (absolute zero in °C)."""
    n = 0
    for i in numba.prange(x.size):
        v = x[i]
        if not (math.isfinite(v) and v >= lowest):
            n += 1
    return n


@numba.njit(cache=True)
def _count_invalid_serial(x: np.ndarray, lowest: float) -> int:
    n = 0
    for i in range(x.size):
        v = x[i]
        if not (math.isfinite(v) and v >= lowest):
            n += 1
    return n


@numba.njit(cache=True)
def _factor_voxel(v: float, threshold: float, mode: int, residual: float) -> np.float32:
    """Perfusion factor of one voxel. mode 0: dead if v ≥ thr; 1: v > thr; 2: v ≤ thr; 3: exp(−v); 4: 1 − v."""
    if mode == 3:
        return np.float32(math.exp(-v))
    if mode == 4:
        return np.float32(min(max(1.0 - v, 0.0), 1.0))
    dead = (v >= threshold) if mode == 0 else ((v > threshold) if mode == 1 else (v <= threshold))
    return np.float32(residual) if dead else np.float32(1.0)


@numba.njit(parallel=True, cache=True)
def _factor_parallel(values: np.ndarray, threshold: float, mode: int, residual: float, out: np.ndarray) -> None:
    for i in numba.prange(values.size):
        out[i] = _factor_voxel(values[i], threshold, mode, residual)


@numba.njit(cache=True)
def _factor_serial(values: np.ndarray, threshold: float, mode: int, residual: float, out: np.ndarray) -> None:
    for i in range(values.size):
        out[i] = _factor_voxel(values[i], threshold, mode, residual)


# ----------------------------------------------------------------------------------------------
# the accumulator
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Criterion:
    kind: str  # arrhenius | three_state | cem43 | isotherm | cryo
    key: str = ""  # Arrhenius set name
    threshold: float = 0.0


class DamageAccumulator:
    """Accumulates thermal damage over a temperature history on one grid (float32 [k, j, i], °C).

    ``models`` names what to hold: ``"arrhenius"`` (the default set), ``"arrhenius:<set>"`` (any
    number of sets), ``"cem43"``, ``"three_state"`` or ``"three_state:<set>"``, ``"extremes"``
    (max and min temperature, for isotherm and cryo criteria). ``within_step`` is ``"linear"``
    (temperature linear between successive updates; see the module docstring) or ``"constant"``.
    The floors default to the YAML's accumulation floors. ``perfusion_criterion`` is any
    :meth:`dead_mask` criterion (default: the first Arrhenius set, else three-state, else CEM43);
    ``perfusion_mode`` ``"step"`` (factor ``residual_perfusion`` where dead, 1 elsewhere) or
    ``"smooth"`` (exp(−Ω) for Arrhenius, 1 − D for three-state).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        models: Iterable[str] = ("arrhenius", "cem43", "three_state", "extremes"),
        *,
        within_step: Literal["linear", "constant"] = "linear",
        arrhenius_floor_c: float | None = None,
        cem43_floor_c: float | None = None,
        three_state_floor_c: float | None = None,
        perfusion_criterion: str | None = None,
        perfusion_mode: Literal["step", "smooth"] = "step",
        residual_perfusion: float | None = None,
    ) -> None:
        m = load_damage_models()
        self._models = m
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise PhysicsError(f"damage grid shape {shape} is not a 3-D shape", "give (nk, nj, ni) with each ≥ 1")
        if within_step not in ("linear", "constant"):
            raise PhysicsError(f"within_step {within_step!r} is unknown", "use 'linear' or 'constant'")
        self.within_step = within_step
        n = int(np.prod(self.shape))
        self.size = n

        arr_names: list[str] = []
        self.cem43 = False
        self.extremes = False
        self.three_state: ThreeStateSet | None = None
        for spec in models:
            kind, _, arg = str(spec).partition(":")
            if kind not in MODEL_KINDS:
                raise _unknown("damage model", kind, MODEL_KINDS)
            if kind == "arrhenius":
                name = arg or m.default_arrhenius
                arrhenius_set(name)
                if name not in arr_names:
                    arr_names.append(name)
            elif kind == "cem43":
                self.cem43 = True
            elif kind == "extremes":
                self.extremes = True
            else:
                new = three_state_set(arg or None)
                if self.three_state is not None and new.name != self.three_state.name:
                    raise PhysicsError("two three-state parameter sets were asked for", "hold one three-state set")
                self.three_state = new
        self.arrhenius_sets: tuple[ArrheniusSet, ...] = tuple(m.arrhenius[a] for a in arr_names)
        self.models: tuple[str, ...] = (
            *(f"arrhenius:{a}" for a in arr_names),
            *(("cem43",) if self.cem43 else ()),
            *((f"three_state:{self.three_state.name}",) if self.three_state else ()),
            *(("extremes",) if self.extremes else ()),
        )
        if not self.models:
            raise PhysicsError("no damage model was asked for", f"name at least one of {', '.join(MODEL_KINDS)}")

        def floor(value: float | None, default: float, what: str) -> float:
            v = default if value is None else float(value)
            if math.isnan(v):
                raise PhysicsError(f"{what} is NaN", "give a temperature in °C (or -inf to integrate everywhere)")
            return v

        self.arrhenius_floor_c = floor(arrhenius_floor_c, m.arrhenius_floor_c, "arrhenius_floor_c")
        self.cem43_floor_c = floor(cem43_floor_c, m.cem43_floor_c, "cem43_floor_c")
        self.three_state_floor_c = floor(three_state_floor_c, m.three_state_floor_c, "three_state_floor_c")
        self.residual_perfusion = (
            m.residual_perfusion_factor if residual_perfusion is None else float(residual_perfusion)
        )
        if not 0.0 <= self.residual_perfusion <= 1.0:
            raise PhysicsError(f"residual_perfusion {residual_perfusion} is outside [0, 1]", "give a factor in [0, 1]")

        # state (float64 integrals; float32 extremes and previous temperature)
        ns = len(self.arrhenius_sets)
        self._omega = np.zeros((ns, n) if ns else (0, 1), dtype=np.float64)
        off = m.celsius_offset_k
        # per set: ln A, Ea/R, floor (°C), log-rate at the floor
        self._arr = np.zeros((max(ns, 1), 4), dtype=np.float64)
        for k, aset in enumerate(self.arrhenius_sets):
            with np.errstate(divide="ignore", over="ignore"):
                x_floor = aset.ln_a - aset.ea_over_r_k / np.float64(self.arrhenius_floor_c + off)
            self._arr[k] = (aset.ln_a, aset.ea_over_r_k, self.arrhenius_floor_c, x_floor)
        self._cem = np.zeros(n if self.cem43 else 1, dtype=np.float64)
        self._alive = np.zeros(n if self.three_state else 1, dtype=np.float64)
        self._dead = np.zeros(n if self.three_state else 1, dtype=np.float64)
        self._tmax = np.zeros(n if self.extremes else 1, dtype=np.float32)
        self._tmin = np.zeros(n if self.extremes else 1, dtype=np.float32)
        self._prev = np.zeros(n if within_step == "linear" else 1, dtype=np.float32)
        # per thread: the step-start temperatures of the chunk it works on
        self._start_t = np.zeros((max(numba.config.NUMBA_NUM_THREADS, 1), CHUNK), dtype=np.float32)
        # per chunk: 1 once any voxel in it may have left the three-state initial state
        self._touched = np.zeros((n + CHUNK - 1) // CHUNK, dtype=np.uint8)
        self._factor: np.ndarray | None = None
        c = m.cem43
        ts = self.three_state
        p = np.zeros(N_PARAMS, dtype=np.float64)
        p[P_USE_PREV] = 1.0 if within_step == "linear" else 0.0
        p[P_DO_EXT] = 1.0 if self.extremes else 0.0
        p[P_OFFSET_K] = off
        p[P_DO_CEM] = 1.0 if self.cem43 else 0.0
        p[P_CEM_REF] = c.reference_temperature_c
        p[P_CEM_C_ABOVE] = -math.log(c.r_at_or_above)  # ln rate = (T − 43)·c
        p[P_CEM_C_BELOW] = -math.log(c.r_below)
        p[P_CEM_FLOOR] = self.cem43_floor_c
        if ts is not None:
            p[P_DO_3S] = 1.0
            p[P_KF_BAR], p[P_KB], p[P_TK], p[P_KF_OFF] = ts.kf_bar_1_s, ts.kb_1_s, ts.tk_c, ts.kf_offset
            p[P_CLAMP] = 1.0 if ts.clamp_negative_kf else 0.0
            p[P_FLOOR_3S] = self.three_state_floor_c
            p[P_ALIVE_SKIP] = ts.initial_alive
        floors = [self.arrhenius_floor_c] if ns else []
        floors += [self.cem43_floor_c] if self.cem43 else []
        floors += [self.three_state_floor_c] if ts is not None else []
        p[P_WORK_FLOOR] = min(floors, default=math.inf)  # below it a voxel needs no model work
        self._params = p
        self.time_s = 0.0
        self.steps = 0
        self._have_prev = False

        self.perfusion_mode = perfusion_mode
        if perfusion_mode not in ("step", "smooth"):
            raise PhysicsError(f"perfusion_mode {perfusion_mode!r} is unknown", "use 'step' or 'smooth'")
        if perfusion_criterion is None:
            if self.arrhenius_sets:
                perfusion_criterion = f"arrhenius:{self.arrhenius_sets[0].name}"
            elif self.three_state:
                perfusion_criterion = "three_state"
            elif self.cem43:
                perfusion_criterion = "cem43"
        self.perfusion_criterion = perfusion_criterion
        self._perf = self._criterion(perfusion_criterion) if perfusion_criterion else None
        if (
            perfusion_mode == "smooth"
            and self._perf is not None
            and self._perf.kind not in ("arrhenius", "three_state")
        ):
            raise PhysicsError(
                f"a smooth perfusion factor is defined for Arrhenius and three-state, not {perfusion_criterion!r}",
                "use perfusion_mode='step' or an Arrhenius/three-state criterion",
            )
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Back to untreated tissue: Ω = CEM43 = 0, A/D at the initial state, extremes unseen (NaN)."""
        self._omega.fill(0.0)
        self._cem.fill(0.0)
        if self.three_state:
            self._alive.fill(self.three_state.initial_alive)
            self._dead.fill(self.three_state.initial_dead)
        self._tmax.fill(np.nan)
        self._tmin.fill(np.nan)
        self._touched.fill(0)
        self._have_prev = False
        self.time_s = 0.0
        self.steps = 0

    def neutral_value(self, name: str) -> float:
        """The value of field ``name`` in untreated, never-seen tissue (fill value outside a crop)."""
        if name.startswith(FIELD_OMEGA_PREFIX) or name == FIELD_CEM43:
            return 0.0
        if name in (FIELD_MAX_T, FIELD_MIN_T):
            return math.nan
        if name == FIELD_ALIVE:
            return self.three_state.initial_alive if self.three_state else three_state_set().initial_alive
        if name == FIELD_DEAD:
            return self.three_state.initial_dead if self.three_state else three_state_set().initial_dead
        raise _unknown("damage field", name, self.field_names())

    def field_names(self) -> tuple[str, ...]:
        """Names :meth:`fields` returns, in order."""
        names = [f"{FIELD_OMEGA_PREFIX}{s.name}" for s in self.arrhenius_sets]
        if self.cem43:
            names.append(FIELD_CEM43)
        if self.three_state:
            names += [FIELD_ALIVE, FIELD_DEAD]
        if self.extremes:
            names += [FIELD_MAX_T, FIELD_MIN_T]
        return tuple(names)

    def _flat(self, name: str) -> np.ndarray:
        if name.startswith(FIELD_OMEGA_PREFIX):
            key = name[len(FIELD_OMEGA_PREFIX) :]
            for s, a in enumerate(self.arrhenius_sets):
                if a.name == key:
                    return self._omega[s]
        table = {FIELD_CEM43: self._cem, FIELD_ALIVE: self._alive, FIELD_DEAD: self._dead}
        table |= {FIELD_MAX_T: self._tmax, FIELD_MIN_T: self._tmin}
        return table[name]

    def state(self, name: str) -> np.ndarray:
        """The accumulator's own array for field ``name`` as a read-only [k, j, i] view (no copy):
        float64 for Ω, CEM43, A and D, float32 for the extremes. Use :meth:`fields` to keep values."""
        if name not in self.field_names():
            raise _unknown("damage field", name, self.field_names())
        view = self._flat(name).reshape(self.shape).view()
        view.flags.writeable = False
        return view

    def fields(self) -> dict[str, np.ndarray]:
        """Named float32 copies [k, j, i]: ``arrhenius_omega_<set>``, ``cem43_min``,
        ``three_state_alive``, ``three_state_dead``, ``max_temperature_c``, ``min_temperature_c``
        (the extremes are NaN where no temperature was seen yet). Ω is clipped to the float32 range."""
        out = {}
        for name in self.field_names():
            v = self._flat(name)
            if name.startswith(FIELD_OMEGA_PREFIX) or name == FIELD_CEM43:
                v = np.minimum(v, _FLOAT32_MAX)
            out[name] = v.astype(np.float32).reshape(self.shape)
        return out

    def load(self, fields: Mapping[str, np.ndarray]) -> list[str]:
        """Continue from earlier fields (as :meth:`fields` wrote them); names this accumulator does
        not hold are ignored. Returns the names loaded. The next update integrates as the first
        (no previous temperature) — call :meth:`observe` to set one."""
        known = set(self.field_names())
        checked: dict[str, np.ndarray] = {}
        for name, values in fields.items():
            if name not in known:
                continue
            arr = np.asarray(values)
            if arr.shape != self.shape:
                raise PhysicsError(
                    f"damage field {name} has shape {arr.shape} but the accumulator is {self.shape}",
                    "load fields on the same grid (crop them first)",
                )
            arr = arr.astype(np.float64, copy=False).ravel()
            if name in (FIELD_MAX_T, FIELD_MIN_T):
                if np.isinf(arr).any():
                    raise PhysicsError(f"damage field {name} has infinite values", "use NaN for 'not seen yet'")
            elif not np.all(np.isfinite(arr)) or float(arr.min(initial=0.0)) < 0.0:
                raise PhysicsError(
                    f"damage field {name} has negative or non-finite values", "load fields from fields()"
                )
            elif name in (FIELD_ALIVE, FIELD_DEAD) and float(arr.max(initial=0.0)) > 1.0 + 1e-6:
                raise PhysicsError(f"damage field {name} exceeds 1", "fractions must lie in [0, 1]")
            checked[name] = arr
        if FIELD_ALIVE in checked or FIELD_DEAD in checked:
            a = checked.get(FIELD_ALIVE, self._alive)
            d = checked.get(FIELD_DEAD, self._dead)
            if float(np.max(a + d)) > 1.0 + 1e-6:
                raise PhysicsError("three_state_alive + three_state_dead exceeds 1", "load both fields from fields()")
        for name, arr in checked.items():
            self._flat(name)[...] = arr
        if self.three_state is not None and (FIELD_ALIVE in checked or FIELD_DEAD in checked):
            np.minimum(self._dead, 1.0 - self._alive, out=self._dead)
            below = self._alive < self.three_state.initial_alive
            self._touched[...] = np.logical_or.reduceat(below, np.arange(0, self.size, CHUNK))
        self._have_prev = False
        return sorted(checked)

    # ------------------------------------------------------------------ input checks
    def _check_temperature(self, temperature_c: np.ndarray) -> np.ndarray:
        t = np.asarray(temperature_c)
        if t.shape != self.shape:
            raise PhysicsError(
                f"temperature has shape {t.shape} but the damage accumulator is {self.shape}",
                "pass the temperature on the accumulator's grid",
            )
        if t.dtype != np.float32 or not t.flags.c_contiguous:
            t = np.ascontiguousarray(t, dtype=np.float32)  # a copy only for non-float32 input
        flat = t.reshape(-1)
        count = _count_invalid_serial if self.size < SERIAL_BELOW else _count_invalid_parallel
        bad = count(flat, -self._models.celsius_offset_k)
        if bad:
            raise PhysicsError(
                f"temperature has {bad} non-finite voxels (or below absolute zero)",
                "fix the heat solve (unstable step?) before accumulating damage",
            )
        return flat

    def observe(self, temperature_c: np.ndarray) -> None:
        """Take ``temperature_c`` as the current field without time passing: it becomes the start of
        the next step's linear path and enters the extremes (e.g. the initial field of a run)."""
        t = self._check_temperature(temperature_c)
        self._kernel(t, 0.0)
        self._have_prev = self.within_step == "linear"

    # ------------------------------------------------------------------ per step
    def update(self, temperature_c: np.ndarray, dt_s: float, start_c: np.ndarray | None = None) -> None:
        """Accumulate one step of ``dt_s`` seconds ending at ``temperature_c`` (float32 [k, j, i], °C).

        ``start_c``: the field at the step's start, when the caller still holds it (the solver's other
        buffer); the linear rule then reads it instead of keeping its own copy (less memory traffic).
        Raises :class:`PhysicsError` (before changing anything) for a wrong shape, non-finite
        temperatures, or a negative or non-finite step. ``dt_s = 0`` only updates the extremes (and,
        with the linear rule, the next step's start), like :meth:`observe`.
        """
        dt = float(dt_s)
        if not (math.isfinite(dt) and dt >= 0.0):
            raise PhysicsError(f"damage time step {dt_s} s is negative or not finite", "give dt_s ≥ 0")
        t = self._check_temperature(temperature_c)
        given = None
        if start_c is not None and self.within_step == "linear":
            if start_c is temperature_c or start_c.shape != self.shape or start_c.dtype != np.float32:
                raise PhysicsError("start_c is not the step-start float32 field on the grid", "pass the old buffer")
            given = np.ascontiguousarray(start_c).reshape(-1)
        self._kernel(t, dt, given)
        self._have_prev = self.within_step == "linear" and given is None
        self.time_s += dt
        self.steps += 1

    def _kernel(self, t: np.ndarray, dt: float, start: np.ndarray | None = None) -> None:
        p = self._params
        p[P_DT] = dt
        p[P_HAVE_PREV] = 2.0 if start is not None else (1.0 if self._have_prev else 0.0)
        run = _update_serial if self.size < SERIAL_BELOW else _update_parallel
        run(
            t,
            self._prev if start is None else start,
            self._start_t,
            self._tmax,
            self._tmin,
            self._omega,
            self._arr,
            self._cem,
            self._alive,
            self._dead,
            self._touched,
            p,
        )

    # ------------------------------------------------------------------ criteria
    def _criterion(self, criterion: str) -> _Criterion:
        kind, _, arg = criterion.partition(":")
        kinds = ("arrhenius", "three_state", "cem43", "isotherm", "cryo")
        if kind not in kinds:
            raise _unknown("damage criterion", kind, kinds)
        if kind == "arrhenius":
            if not self.arrhenius_sets:
                raise PhysicsError(
                    f"criterion {criterion!r} needs an Arrhenius model", "add 'arrhenius:<set>' to models"
                )
            key = arg or self.arrhenius_sets[0].name
            if key not in {s.name for s in self.arrhenius_sets}:
                raise _unknown("Arrhenius set held by this accumulator", key, [s.name for s in self.arrhenius_sets])
            return _Criterion("arrhenius", key, 1.0)
        if kind == "three_state":
            if self.three_state is None:
                raise PhysicsError(
                    f"criterion {criterion!r} needs the three-state model", "add 'three_state' to models"
                )
            return _Criterion("three_state", "", self.three_state.dead_threshold)
        if kind == "cem43":
            if not self.cem43:
                raise PhysicsError(f"criterion {criterion!r} needs the cem43 model", "add 'cem43' to models")
            return _Criterion(
                "cem43", "", self._number(arg, criterion) if arg else self._models.cem43.necrosis_threshold_min
            )
        if not self.extremes:
            raise PhysicsError(f"criterion {criterion!r} needs the temperature extremes", "add 'extremes' to models")
        if not arg:
            raise PhysicsError(f"criterion {criterion!r} has no temperature", f"write e.g. '{kind}:60' or '{kind}:-40'")
        return _Criterion(kind, "", self._number(arg, criterion))

    @staticmethod
    def _number(text: str, criterion: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise PhysicsError(f"criterion {criterion!r} has no valid number after ':'", "write e.g. 'isotherm:60'")
        return v

    def _criterion_values(self, c: _Criterion) -> tuple[np.ndarray, int]:
        """The flat values a criterion reads and its comparison mode (see ``_factor_voxel``)."""
        if c.kind == "arrhenius":
            return self._flat(FIELD_OMEGA_PREFIX + c.key), 0
        if c.kind == "three_state":
            return self._dead, 1
        if c.kind == "cem43":
            return self._cem, 0
        if c.kind == "isotherm":
            return self._tmax, 0
        return self._tmin, 2

    def criterion_level(self, criterion: str = "arrhenius") -> np.ndarray:
        """A float32 volume that is ≥ 0 exactly where :meth:`dead_mask` is true and varies smoothly across the
        boundary (for sub-voxel zone extents): ln(Ω/threshold) or ln(CEM43/threshold) (exponential quantities),
        D − threshold, peak − T or T − minimum (non-strict comparisons; three-state's strict one is met by
        nudging the level down where D equals the threshold)."""
        c = self._criterion(criterion)
        values, mode = self._criterion_values(c)
        x = values.astype(np.float64)
        if c.kind in ("arrhenius", "cem43"):
            level = np.log(np.maximum(x, 1e-300)) - math.log(c.threshold)
        elif mode == 2:
            level = c.threshold - x
        else:
            level = x - c.threshold
        if mode == 1:
            level[level == 0.0] = -1e-12
        return level.astype(np.float32).reshape(self.shape)

    def dead_mask(self, criterion: str = "arrhenius") -> np.ndarray:
        """Bool volume of dead tissue. ``criterion``: ``"arrhenius"`` or ``"arrhenius:<set>"`` (Ω ≥ 1),
        ``"three_state"`` (D > dead threshold, 0.8), ``"cem43"`` or ``"cem43:<minutes>"`` (≥ 240 by
        default), ``"isotherm:<°C>"`` (peak ≥ T), ``"cryo:<°C>"`` (minimum ≤ T)."""
        c = self._criterion(criterion)
        values, mode = self._criterion_values(c)
        if mode == 0:
            mask = values >= c.threshold
        elif mode == 1:
            mask = values > c.threshold
        else:
            mask = values <= c.threshold
        return mask.reshape(self.shape)

    def perfusion_factor(self, out: np.ndarray | None = None) -> np.ndarray:
        """Float32 volume in [0, 1]: 1 = perfusion intact, ``residual_perfusion`` (0) where the
        perfusion criterion says dead (``perfusion_mode="step"``), or exp(−Ω) / 1 − D ("smooth").

        Written into ``out`` when given, otherwise into a buffer owned by the accumulator (valid
        until the next call; copy it to keep it). All ones when no criterion applies.
        """
        if out is None:
            if self._factor is None:
                self._factor = np.empty(self.shape, dtype=np.float32)
            out = self._factor
        elif out.shape != self.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise PhysicsError(
                "perfusion_factor(out=...) is not a C-contiguous float32 volume on the grid", "allocate it like T"
            )
        flat = out.reshape(-1)
        c = self._perf
        if c is None:
            flat.fill(1.0)
            return out
        values, mode = self._criterion_values(c)
        if self.perfusion_mode == "smooth":
            mode = 3 if c.kind == "arrhenius" else 4
        run = _factor_serial if self.size < SERIAL_BELOW else _factor_parallel
        run(values, c.threshold, mode, self.residual_perfusion, flat)
        return out

    def __repr__(self) -> str:
        return f"DamageAccumulator(shape={self.shape}, models={self.models}, within_step={self.within_step!r})"
