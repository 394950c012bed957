"""Tissue freezing for cryoablation: the enthalpy model's data, and the Neumann freezing front that verifies it.

**Model** (thermal.md §1.5). Water in tissue freezes over a band [T_s, T_l] (liver: −8 to −1 °C, Micromachines 2025);
the latent heat L (J/m³) is released evenly over the band (apparent heat capacity, exact in energy: the enthalpy
is piecewise linear). Frozen tissue conducts better (liver: k 2 W/m/K frozen vs 0.52 unfrozen) and stores less heat
(ρc 1.80 vs 3.82 MJ/m³/K); the ice fraction rises linearly across the band and k follows it. Blood cannot flow
through ice: the Pennes perfusion term is multiplied by the unfrozen fraction, and tissue that froze stays
unperfused after it thaws (vascular stasis). The solver side is :class:`insitu.physics.bioheat.Freezing` (a separate
kernel of the bioheat solver); this module turns sourced tissue data into it.

Numbers come from the tissue library (liver and liver tumours carry their own freezing values) and, for tissues
without, from ``phase_change.yaml`` next to this module — every value with its source and status. Limits: one
freezing band and one frozen/unfrozen conductivity ratio for the whole region (the reference tissue's, usually the
tissue at the probes), because the conductive flux is taken on the Kirchhoff variable of that ratio; per-voxel
latent heat and frozen heat capacity are kept. Supercooling (ice onset as low as −6 to −19 °C in DSC, [S29]) is
not modelled.

**Verification** (thermal.md §5.4-7, V5). The two-phase Neumann solution for a half-space at T_i whose surface is
held at T_w < T_f from t = 0: the front is at s(t) = 2η√(α_s t) with η the root of

    k_s ΔT_s e^(−η²) / (erf η · √(π α_s)) − k_l ΔT_l e^(−η² α_s/α_l) / (erfc(η√(α_s/α_l)) · √(π α_l)) = L η √α_s

(ΔT_s = T_f − T_w, ΔT_l = T_i − T_f; the one-phase problem is ΔT_l = 0). :func:`neumann_front_rows` runs the
bioheat solver's freezing kernel on a 1-D column with a band centred on T_f and reports the front (T = T_f) against
s(t) as the grid and band shrink, with the observed order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numba
import numpy as np
import yaml
from scipy.optimize import brentq
from scipy.special import erf, erfc, erfcx

from insitu.errors import PhysicsError, TissueError
from insitu.physics.bioheat import BioheatSolver, Freezing, ThermalMedium

_DATA = Path(__file__).with_name("phase_change.yaml")
_SET_KEYS = (
    "latent_heat_j_m3",
    "liquidus_c",
    "solidus_c",
    "frozen_conductivity_w_m_k",
    "frozen_specific_heat_j_kg_k",
    "frozen_density_kg_m3",
)
# tissue-library property → the set key it fills (the library's values win where present)
_LIBRARY_KEYS = {
    "latent_heat_j_m3": "latent_heat_j_m3",
    "freezing_onset_c": "liquidus_c",
    "freezing_end_c": "solidus_c",
    "frozen_thermal_conductivity_w_m_k": "frozen_conductivity_w_m_k",
    "frozen_specific_heat_j_kg_k": "frozen_specific_heat_j_kg_k",
    "frozen_density_kg_m3": "frozen_density_kg_m3",
}
_STATUSES = ("confirmed", "derived", "recalled", "unconfirmed", "choice")


@dataclass(frozen=True)
class FreezingSet:
    """One tissue's freezing numbers (SI, °C): latent heat per volume, band, frozen k, c and ρ."""

    latent_heat_j_m3: float
    liquidus_c: float
    solidus_c: float
    frozen_conductivity_w_m_k: float
    frozen_specific_heat_j_kg_k: float
    frozen_density_kg_m3: float

    @property
    def frozen_heat_capacity_j_m3k(self) -> float:
        return self.frozen_density_kg_m3 * self.frozen_specific_heat_j_kg_k


@dataclass(frozen=True)
class FreezingData:
    """``phase_change.yaml``: the sets by tissue name, the model switches and the sources."""

    sets: dict[str, FreezingSet]
    perfusion_stops_in_ice: bool
    stasis_after_thaw: bool
    stasis_below_c: float
    sources: dict[str, str]


def _value(entry: object, where: str, sources: dict[str, str]) -> float:
    if not isinstance(entry, dict) or "value" not in entry or entry.get("source") not in sources:
        raise TissueError(f"{_DATA.name}: {where} lacks a value or a known source", "give {value, source, status}")
    if entry.get("status") not in _STATUSES:
        raise TissueError(f"{_DATA.name}: {where} has status {entry.get('status')!r}", f"use one of {_STATUSES}")
    return entry["value"]


@cache
def freezing_data() -> FreezingData:
    """The checked contents of ``phase_change.yaml``."""
    raw = yaml.safe_load(_DATA.read_text(encoding="utf-8"))
    sources = dict(raw["sources"])
    sets = {}
    for name, entry in raw["sets"].items():
        values = {key: float(_value(entry.get(key), f"sets.{name}.{key}", sources)) for key in _SET_KEYS}
        fs = FreezingSet(**values)
        if not fs.solidus_c < fs.liquidus_c or fs.latent_heat_j_m3 < 0 or fs.frozen_heat_capacity_j_m3k <= 0:
            raise TissueError(f"{_DATA.name}: set {name!r} is not a freezing band with positive values", "fix it")
        sets[name] = fs
    model = raw["model"]
    return FreezingData(
        sets=sets,
        perfusion_stops_in_ice=bool(_value(model["perfusion_stops_in_ice"], "model.perfusion_stops_in_ice", sources)),
        stasis_after_thaw=bool(_value(model["stasis_after_thaw"], "model.stasis_after_thaw", sources)),
        stasis_below_c=float(_value(model["stasis_below_c"], "model.stasis_below_c", sources)),
        sources=sources,
    )


def freezing_set(library, name: str) -> FreezingSet:
    """Tissue ``name``'s freezing numbers: the tissue library's where it has them, else this module's set for the
    name, else the default soft-tissue set."""
    data = freezing_data()
    base = data.sets.get(name, data.sets["default"])
    values = {key: getattr(base, key) for key in _SET_KEYS}
    if name in library:
        for prop, key in _LIBRARY_KEYS.items():
            table = library.property_table(prop)
            value = float(table[library.index_of(name)])
            if math.isfinite(value):
                values[key] = value
    return FreezingSet(**values)


def tissue_freezing(library, index: np.ndarray, reference: str) -> Freezing:
    """The solver's :class:`Freezing` for a tissue-index volume: per-voxel latent heat and frozen ρc of each tissue;
    the band and the frozen/unfrozen conductivity ratio of the ``reference`` tissue (module docstring: limits)."""
    if reference not in library:
        raise TissueError(f"unknown reference tissue {reference!r} for freezing", "name a tissue of the library")
    data = freezing_data()
    n = len(library.names)
    latent = np.zeros(n, np.float32)
    capacity = np.zeros(n, np.float32)
    for position, name in enumerate(library.names):
        fs = freezing_set(library, name)
        latent[position] = fs.latent_heat_j_m3
        capacity[position] = fs.frozen_heat_capacity_j_m3k
    air = library.index_of("air") if "air" in library else -1
    if air >= 0:  # gas is an ambient medium (held), never frozen tissue
        latent[air] = 0.0
        capacity[air] = float(library.property_table("density_kg_m3")[air]) * float(
            library.property_table("specific_heat_j_kg_k")[air]
        )
    ref = freezing_set(library, reference)
    k_unfrozen = float(library.property_table("thermal_conductivity_w_m_k")[library.index_of(reference)])
    return Freezing(
        latent_heat_j_m3=latent[index],
        liquidus_c=ref.liquidus_c,
        solidus_c=ref.solidus_c,
        frozen_heat_capacity_j_m3k=capacity[index],
        conductivity_ratio=ref.frozen_conductivity_w_m_k / k_unfrozen,
        perfusion_stops=data.perfusion_stops_in_ice,
    )


def ice_fraction(temperature_c: np.ndarray | float, liquidus_c: float, solidus_c: float) -> np.ndarray:
    """Ice fraction 0 … 1, linear across the band (the latent heat is released evenly over it)."""
    t = np.asarray(temperature_c, dtype=np.float64)
    return np.clip((liquidus_c - t) / (liquidus_c - solidus_c), 0.0, 1.0)


# ----------------------------------------------------------------------------------------- the Neumann solution
@dataclass(frozen=True)
class NeumannProblem:
    """A half-space at ``initial_c`` with its surface held at ``wall_c`` (< ``freezing_c``) from t = 0 (SI)."""

    wall_c: float
    initial_c: float
    freezing_c: float
    latent_heat_j_m3: float
    k_solid_w_mk: float
    c_solid_j_m3k: float  # ρc of the frozen phase
    k_liquid_w_mk: float
    c_liquid_j_m3k: float  # ρc of the unfrozen phase

    @property
    def alpha_solid_m2_s(self) -> float:
        return self.k_solid_w_mk / self.c_solid_j_m3k

    @property
    def alpha_liquid_m2_s(self) -> float:
        return self.k_liquid_w_mk / self.c_liquid_j_m3k

    def residual(self, eta: float) -> float:
        """Stefan condition at the front divided by √t (W m⁻² s^½): zero at the Neumann root."""
        a_s, a_l = self.alpha_solid_m2_s, self.alpha_liquid_m2_s
        nu = math.sqrt(a_s / a_l)
        solid = self.k_solid_w_mk * (self.freezing_c - self.wall_c) * math.exp(-eta * eta)
        solid /= math.erf(eta) * math.sqrt(math.pi * a_s)
        liquid = 0.0
        if self.initial_c > self.freezing_c:
            # e^(−x²)/erfc(x) = 1/erfcx(x): no underflow at large η
            liquid = (
                self.k_liquid_w_mk * (self.initial_c - self.freezing_c) / (erfcx(eta * nu) * math.sqrt(math.pi * a_l))
            )
        return solid - liquid - self.latent_heat_j_m3 * eta * math.sqrt(a_s)

    def eta(self) -> float:
        """The Neumann root η (dimensionless)."""
        if not (self.wall_c < self.freezing_c <= self.initial_c):
            raise PhysicsError("the Neumann problem needs wall < freezing ≤ initial temperature", "check the inputs")
        return brentq(self.residual, 1e-9, 20.0, xtol=1e-14, rtol=1e-14)

    def front_m(self, time_s: float | np.ndarray) -> np.ndarray:
        """Front position s(t) = 2η√(α_s t) (m)."""
        return 2.0 * self.eta() * np.sqrt(self.alpha_solid_m2_s * np.asarray(time_s, dtype=np.float64))

    def temperature_c(self, x_m: np.ndarray, time_s: float) -> np.ndarray:
        """The exact field T(x, t): erf profile in the frozen layer, erfc profile beyond the front."""
        eta = self.eta()
        x = np.asarray(x_m, dtype=np.float64)
        a_s, a_l = self.alpha_solid_m2_s, self.alpha_liquid_m2_s
        s = 2.0 * eta * math.sqrt(a_s * time_s)
        solid = self.wall_c + (self.freezing_c - self.wall_c) * erf(x / (2.0 * math.sqrt(a_s * time_s))) / erf(eta)
        nu = math.sqrt(a_s / a_l)
        liquid = self.initial_c - (self.initial_c - self.freezing_c) * erfc(x / (2.0 * math.sqrt(a_l * time_s))) / erfc(
            eta * nu
        )
        return np.where(x <= s, solid, liquid)


@cache
def v5_problem(latent_heat_j_m3: float | None = None) -> NeumannProblem:
    """V5 / thermal-gaps.md §6: wall −150 °C, tissue 37 °C, freezing at −1 °C, Micromachines 2025 liver properties
    (k 2 / 0.5 W/m/K, c 1800 / 3600 J/kg/K, ρ 1000); L = 250 MJ/m³ (the modelling convention) unless given (the DSC
    value, 147.8 J/g × 1079 kg/m³ = 159 MJ/m³, thermal.md V5's ≈ 150 J/g)."""
    default = freezing_data().sets["default"]
    return NeumannProblem(
        wall_c=-150.0,
        initial_c=37.0,
        freezing_c=default.liquidus_c,
        latent_heat_j_m3=default.latent_heat_j_m3 if latent_heat_j_m3 is None else float(latent_heat_j_m3),
        k_solid_w_mk=default.frozen_conductivity_w_m_k,
        c_solid_j_m3k=1000.0 * default.frozen_specific_heat_j_kg_k,
        k_liquid_w_mk=0.5,
        c_liquid_j_m3k=1000.0 * 3600.0,
    )


def simulate_front_m(
    problem: NeumannProblem, spacing_mm: float, band_k: float, times_s: tuple[float, ...], length_mm: float = 60.0
) -> np.ndarray:
    """Fronts (m) at ``times_s`` from the bioheat solver's freezing kernel on a 1-D column: voxel 0 (centre at x = 0)
    held at the wall temperature, the band [T_f − band/2, T_f + band/2], zero flux at the far end; the front is where
    T = T_f (ice fraction ½), linearly interpolated between voxel centres."""
    h = spacing_mm * 1e-3
    n = round(length_mm / spacing_mm) + 1
    shape = (1, 1, n)
    k = np.full(shape, problem.k_liquid_w_mk, np.float32)
    medium = ThermalMedium(k, np.ones(shape), np.full(shape, problem.c_liquid_j_m3k), np.zeros(shape), (h, h, h))
    held = np.zeros(shape, bool)
    held[0, 0, 0] = True
    freezing = Freezing(
        latent_heat_j_m3=problem.latent_heat_j_m3,
        liquidus_c=problem.freezing_c + 0.5 * band_k,
        solidus_c=problem.freezing_c - 0.5 * band_k,
        frozen_heat_capacity_j_m3k=problem.c_solid_j_m3k,
        conductivity_ratio=problem.k_solid_w_mk / problem.k_liquid_w_mk,
        perfusion_stops=True,
    )
    solver = BioheatSolver(medium, held, problem.wall_c, freezing=freezing)
    T = np.full(shape, problem.initial_c, np.float32)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # a few hundred voxels: one thread (a parallel launch per step costs more than the step)
    try:
        run = solver.advance(T, float(max(times_s)), snapshot_times_s=tuple(float(t) for t in times_s))
    finally:
        numba.set_num_threads(threads)
    x = np.arange(n) * h
    fronts = []
    for t in times_s:
        profile = run.snapshots[float(t)][0, 0].astype(np.float64)
        above = np.flatnonzero(profile >= problem.freezing_c)
        i = int(above[0])
        if i == 0 or i >= n - 2:
            raise PhysicsError("the freezing front left the column", "lengthen the column")
        a, b = profile[i - 1], profile[i]
        fronts.append(x[i - 1] + (problem.freezing_c - a) / (b - a) * h)
    return np.array(fronts)


V5_TIMES_S = (60.0, 300.0, 600.0)
V5_TOLERANCE = 0.02  # thermal.md V5: ≤ 2 % on the front at 60–600 s as the mushy width → 0


def neumann_study(
    spacings_mm: tuple[float, ...] = (0.4, 0.2, 0.1), band_per_mm: float = 10.0, times_s=V5_TIMES_S, latent=None
) -> dict:
    """Fronts and errors against the Neumann solution on a ladder of grids, the band shrinking with the spacing
    (``band_per_mm`` K per mm, so both go to zero together); the observed order is the least-squares slope of
    log(mean relative error over the times) against log(spacing) (single times scatter near the float32 floor)."""
    problem = v5_problem(latent)
    exact = problem.front_m(np.asarray(times_s))
    levels = []
    for h in spacings_mm:
        simulated = simulate_front_m(problem, h, band_per_mm * h, tuple(times_s))
        levels.append({"spacing_mm": h, "band_k": band_per_mm * h, "front_mm": simulated * 1e3})
    errors = np.array([np.abs(lv["front_mm"] * 1e-3 - exact) / exact for lv in levels])
    order = float(np.polyfit(np.log(spacings_mm), np.log(errors.mean(axis=1)), 1)[0])
    return {"eta": problem.eta(), "exact_mm": exact * 1e3, "levels": levels, "rel_errors": errors, "order": order}


def neumann_front_rows(spacings_mm: tuple[float, ...] = (0.4, 0.2, 0.1)) -> list:
    """V5 rows: the front at 60, 300 and 600 s on the finest grid (±2 %), η against thermal-gaps.md's 0.52114, the
    observed order, and the DSC latent heat's front (the other end of the literature's range)."""
    from insitu.validation.report import Row

    source = freezing_data().sources["neumann_case"]
    study = neumann_study(spacings_mm)
    finest = study["levels"][-1]
    note = f"h {finest['spacing_mm']:g} mm, band {finest['band_k']:g} K"
    rows = [Row.within("V5", "Neumann root η, L = 250 MJ/m³", study["eta"], 0.52114, 1e-4, source)]
    for t, simulated, exact in zip(V5_TIMES_S, finest["front_mm"], study["exact_mm"], strict=True):
        rows.append(Row.within("V5", f"front at {t:g} s (mm), {note}", float(simulated), float(exact), V5_TOLERANCE,
                               source))  # fmt: skip
    ladder = ", ".join(f"{h:g}" for h in spacings_mm)
    why = "first order or better expected: the enthalpy front moves a voxel at a time"
    rows.append(Row.in_range("V5", f"observed order of the front (h = {ladder} mm)", study["order"], 0.8, 3.0, why))
    dsc = v5_problem(147.8e3 * 1079.0)
    simulated = simulate_front_m(dsc, spacings_mm[-1], 10.0 * spacings_mm[-1], (600.0,))[0]
    quantity = f"front at 600 s (mm), DSC latent heat 159 MJ/m³, {note}"
    exact = float(dsc.front_m(600.0)) * 1e3
    dsc_source = freezing_data().sources["scirep2021_dsc"]
    rows.append(Row.within("V5", quantity, float(simulated) * 1e3, exact, V5_TOLERANCE, dsc_source))
    return rows
