"""Systemic pharmacokinetics of transcatheter chemotherapy: hepatic first pass, carriers, regional advantage.

Plasma is a linear mammillary model (one central compartment and up to two peripheral ones, elimination from the
central compartment with total-body clearance CL_TB). Drug given into the hepatic artery or the portal vein passes
the liver once before it reaches the central compartment: a fraction E is removed on that pass (a constant, or a
Michaelis–Menten removal that saturates with the input rate). Intravenous drug goes straight to the central
compartment. A carrier sets the input rate: a plain solution (bolus or infusion), a lipiodol emulsion (a free
fraction, then first-order wash-out) or drug-eluting beads (first-order elution to a plateau). This is the frame of
Collins 1984, in which the regional advantage is R_d = 1 + CL_TB/(Q(1 − E)) and the systemic exposure after
intra-arterial delivery is (1 − E) times the intravenous one (vascular.md §4.2, §8 case 6).

The linear model is solved exactly: the eigen-modes of the symmetrised compartment matrix give the impulse response
as a sum of exponentials, and bolus, zero-order and first-order inputs are convolved with it in closed form. A
saturable first pass makes the central input a non-exponential function of time; that case (and, on request, any
case) is integrated with a stiff ODE solver (Radau) that the tests check against the closed form.
SI inside (kg, m³, s); mg, L, min, ng/mL only in names at the edge. Numbers with sources: ``drugs.yaml``.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any

import numpy as np
import yaml
from scipy.integrate import quad, solve_ivp

from insitu.errors import PhysicsError, PlanError

L_M3 = 1e-3  # 1 L in m³
MG_KG = 1e-6  # 1 mg in kg
MIN_S = 60.0
H_S = 3600.0
KG_M3_NG_ML = 1e6  # 1 kg/m³ = 1 mg/mL = 1e6 ng/mL
ROUTES = ("intravenous", "hepatic_artery", "portal_vein")
_EMBOLIC_ROUTES = ("hepatic_artery",)


# ---------------------------------------------------------------------------------------------------- data table
@cache
def load_drug_table() -> dict[str, Any]:
    """The drug and carrier table ``drugs.yaml`` (every number with source and status) as a dictionary."""
    text = resources.files("insitu.vascular").joinpath("drugs.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _value(entry: Any) -> Any:
    return entry["value"] if isinstance(entry, dict) else entry


def _reference(name: str) -> float:
    return float(load_drug_table()["reference_patient"][name]["value"])


def drug_names() -> list[str]:
    """Canonical names of the drugs in ``drugs.yaml``."""
    return sorted(load_drug_table()["drugs"])


def resolve_drug_name(name: str) -> str:
    """The canonical name of a drug or alias (``5-FU`` → ``fluorouracil``); an unknown name suggests close ones."""
    key = str(name).strip().lower()
    table = load_drug_table()["drugs"]
    aliases = {alias.lower(): canon for canon, row in table.items() for alias in row.get("aliases", [])}
    if key in table:
        return key
    if key in aliases:
        return aliases[key]
    close = difflib.get_close_matches(key, [*table, *aliases], n=3, cutoff=0.6)
    close = list(dict.fromkeys(aliases.get(c, c) for c in close))
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise PlanError(f"unknown drug {name!r}", f"{hint} known drugs: {', '.join(drug_names())}")


def hepatic_flows_l_min(body_mass_kg: float | None = None) -> tuple[float, float]:
    """(hepatic artery, portal vein) blood flow in L/min for a body mass (Carlisle 1992 per-kg flows, drugs.yaml)."""
    mass = _reference("body_mass_kg") if body_mass_kg is None else _positive(body_mass_kg, "body mass (kg)")
    flows = load_drug_table()["hepatic_flow"]
    return (
        float(flows["hepatic_artery_ml_min_kg"]["value"]) * mass * 1e-3,
        float(flows["portal_vein_ml_min_kg"]["value"]) * mass * 1e-3,
    )


# ------------------------------------------------------------------------------------------------- checks
def _positive(value: float, what: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise PhysicsError(f"{what} is {value}, not a positive finite number", f"give a positive {what}")
    return v


def _extraction(value: float, what: str = "extraction fraction") -> float:
    e = float(value)
    if not math.isfinite(e) or not 0.0 <= e < 1.0:
        raise PhysicsError(
            f"{what} {value} is outside 0 ≤ E < 1",
            "give the fraction removed in one pass, e.g. 0.5 (E = 1 leaves no drug)",
        )
    return e


def _dose(dose_mg: float) -> float:
    d = float(dose_mg)
    if not math.isfinite(d) or d < 0.0:
        raise PlanError(f"dose {dose_mg} mg is negative or not finite", "give the dose in mg, 0 or more")
    return d


def _times(time_s: np.ndarray | Sequence[float]) -> np.ndarray:
    t = np.atleast_1d(np.asarray(time_s, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or np.any(~np.isfinite(t)) or np.any(t < 0.0):
        raise PlanError("sample times are empty, negative or not finite", "give times in seconds from injection, ≥ 0")
    if np.any(np.diff(t) < 0.0):
        raise PlanError("sample times are not in increasing order", "sort the times")
    return t


# -------------------------------------------------------------------------------------- Collins, closed forms
def regional_advantage(
    clearance_total_l_min: float | np.ndarray,
    regional_flow_l_min: float | np.ndarray,
    extraction_fraction: float | np.ndarray,
) -> np.ndarray:
    """Collins 1984 regional advantage R_d = 1 + CL_TB / (Q (1 − E)) of intra-arterial over intravenous delivery.

    R_d is the gain in target-region exposure (AUC) at equal systemic exposure. Q is the flow that carries the
    infusate (whole liver ≈ 1.5 L/min, or an arterial feed), E its single-pass extraction (vascular.md §4.2).
    """
    cl = np.asarray(clearance_total_l_min, dtype=np.float64)
    q = np.asarray(regional_flow_l_min, dtype=np.float64)
    e = np.asarray(extraction_fraction, dtype=np.float64)
    if np.any(~np.isfinite(cl)) or np.any(cl < 0.0):
        raise PhysicsError("total-body clearance is negative or not finite", "give CL_TB in L/min, ≥ 0")
    if np.any(~np.isfinite(q)) or np.any(q <= 0.0):
        raise PhysicsError("regional flow is zero, negative or not finite", "give the infused flow in L/min, > 0")
    if np.any(~np.isfinite(e)) or np.any(e < 0.0) or np.any(e >= 1.0):
        raise PhysicsError("an extraction fraction is outside 0 ≤ E < 1", "give the single-pass extraction, e.g. 0.5")
    return 1.0 + cl / (q * (1.0 - e))


def systemic_exposure_ratio_ia_iv(extraction_fraction: float | np.ndarray) -> np.ndarray:
    """Systemic AUC after hepatic intra-arterial delivery over that after IV delivery: F_H = 1 − E (linear)."""
    e = np.asarray(extraction_fraction, dtype=np.float64)
    if np.any(~np.isfinite(e)) or np.any(e < 0.0) or np.any(e >= 1.0):
        raise PhysicsError("an extraction fraction is outside 0 ≤ E < 1", "give the single-pass extraction, e.g. 0.5")
    return 1.0 - e


def systemic_to_hepatic_vein_auc_ratio(
    route: str,
    clearance_total_l_min: float,
    extraction_fraction: float,
    hepatic_artery_flow_l_min: float,
    portal_vein_flow_l_min: float,
    segregated_beds: bool = True,
) -> float:
    """AUC(systemic) / AUC(hepatic vein) by route, in closed form (the Didolkar 1989 ordering check).

    IV: the liver sees the systemic concentration, so the ratio is 1/(1 − E). Intrahepatic: the infusate is diluted
    in the flow of the bed it enters, Q_bed, giving 1/((1 − E) + CL_TB/Q_bed) = [IV ratio]/R_d(Q_bed). With
    ``segregated_beds`` (the extra assumption: arterial and portal streams keep apart until the sampled hepatic
    vein) Q_bed is the hepatic-artery or portal flow, and Q_A < Q_P gives IV > portal > arterial. With fully mixed
    sinusoids (``segregated_beds=False``) Q_bed = Q_A + Q_P for both routes, and portal and arterial tie.
    """
    e = _extraction(extraction_fraction)
    cl = float(clearance_total_l_min)
    if not math.isfinite(cl) or cl < 0.0:
        raise PhysicsError(f"total-body clearance {clearance_total_l_min} is negative", "give CL_TB in L/min, ≥ 0")
    qa = _positive(hepatic_artery_flow_l_min, "hepatic artery flow (L/min)")
    qp = _positive(portal_vein_flow_l_min, "portal vein flow (L/min)")
    if route == "intravenous":
        return 1.0 / (1.0 - e)
    if route not in ROUTES:
        raise PlanError(f"unknown route {route!r}", f"use one of {', '.join(ROUTES)}")
    q_bed = (qa if route == "hepatic_artery" else qp) if segregated_beds else qa + qp
    return 1.0 / ((1.0 - e) + cl / q_bed)


# ------------------------------------------------------------------------------------------ saturable first pass
@dataclass(frozen=True)
class SaturableExtraction:
    """Single-pass extraction of an infusate by a well-stirred liver with Michaelis–Menten removal.

    With input rate R (kg/s) and outflow rate x, mass balance R − x = V_max·x/(R_m + x), R_m = Q·K_m, so
    E(R) = 1 − x/R falls from V_max/(R_m + V_max) at low rate towards V_max/R at high rate (Fuse 1996 in rats:
    0.750 at 0.375 mg/kg/min, 0.225 at 3 mg/kg/min).
    """

    max_removal_rate_kg_s: float
    half_saturation_rate_kg_s: float

    def __post_init__(self) -> None:
        _positive(self.max_removal_rate_kg_s, "maximum removal rate (kg/s)")
        _positive(self.half_saturation_rate_kg_s, "half-saturation rate (kg/s)")

    @property
    def low_rate_extraction(self) -> float:
        """E in the linear (low input rate) limit, V_max/(R_m + V_max)."""
        vmax, rm = self.max_removal_rate_kg_s, self.half_saturation_rate_kg_s
        return vmax / (rm + vmax)

    def extraction(self, input_rate_kg_s: float | np.ndarray) -> np.ndarray:
        """E at input rate(s) R ≥ 0 (kg/s); the stable root of x² + (R_m + V_max − R)x − R·R_m = 0."""
        r = np.asarray(input_rate_kg_s, dtype=np.float64)
        if np.any(~np.isfinite(r)) or np.any(r < 0.0):
            raise PhysicsError("an input rate is negative or not finite", "give input rates in kg/s, ≥ 0")
        vmax, rm = self.max_removal_rate_kg_s, self.half_saturation_rate_kg_s
        b = rm + vmax - r
        root = np.sqrt(b * b + 4.0 * r * rm)
        with np.errstate(divide="ignore", invalid="ignore"):
            # x/R without cancellation: 2Rm/(b + root) when b > 0, (root − b)/(2R) otherwise
            frac_out = np.where(b > 0.0, 2.0 * rm / (b + root), (root - b) / np.where(r > 0.0, 2.0 * r, 1.0))
        return np.where(r > 0.0, 1.0 - frac_out, self.low_rate_extraction)

    @classmethod
    def from_points(cls, input_rate_kg_s: tuple[float, float], extraction: tuple[float, float]) -> SaturableExtraction:
        """The (V_max, R_m) that pass exactly through two measured (rate, E) points (e.g. Fuse 1996)."""
        (r1, r2), (e1, e2) = map(float, input_rate_kg_s), map(float, extraction)
        _positive(r1, "input rate (kg/s)")
        _positive(r2, "input rate (kg/s)")
        e1, e2 = _extraction(e1), _extraction(e2)
        x1, x2, y1, y2 = r1 * (1 - e1), r2 * (1 - e2), r1 * e1, r2 * e2
        a1, a2 = y1 / x1, y2 / x2
        rm = (y2 - y1) / (a1 - a2) if a1 != a2 else -1.0
        vmax = a1 * (rm + x1)
        if not (rm > 0.0 and vmax > 0.0):
            raise PhysicsError(
                "the two (rate, extraction) points do not describe a saturable first pass",
                "give points where E falls as the input rate rises and the removed rate R·E rises",
            )
        return cls(vmax, rm)


# ------------------------------------------------------------------------------------------------- drug model
@dataclass(frozen=True)
class DrugPK:
    """Linear mammillary plasma model of one drug, with its hepatic first-pass extraction (if known).

    Compartment 0 is the central (plasma) one with volume ``central_volume_m3`` and elimination ``clearance_m3_s``
    (total-body clearance); each peripheral compartment exchanges with it through its intercompartmental clearance.
    """

    name: str
    clearance_m3_s: float
    central_volume_m3: float
    intercompartmental_clearance_m3_s: tuple[float, ...] = ()
    peripheral_volume_m3: tuple[float, ...] = ()
    hepatic_extraction: float | None = None
    saturable_extraction: SaturableExtraction | None = None

    def __post_init__(self) -> None:
        _positive(self.clearance_m3_s, f"{self.name} clearance (m³/s)")
        _positive(self.central_volume_m3, f"{self.name} central volume (m³)")
        q, v = tuple(self.intercompartmental_clearance_m3_s), tuple(self.peripheral_volume_m3)
        if len(q) != len(v) or len(q) > 2:
            raise PhysicsError(
                f"{self.name}: {len(q)} intercompartmental clearances for {len(v)} peripheral volumes",
                "give one clearance per peripheral compartment, at most two (a three-compartment model)",
            )
        for qi, vi in zip(q, v, strict=True):
            _positive(qi, f"{self.name} intercompartmental clearance (m³/s)")
            _positive(vi, f"{self.name} peripheral volume (m³)")
        object.__setattr__(self, "intercompartmental_clearance_m3_s", tuple(map(float, q)))
        object.__setattr__(self, "peripheral_volume_m3", tuple(map(float, v)))
        if self.hepatic_extraction is not None:
            object.__setattr__(self, "hepatic_extraction", _extraction(self.hepatic_extraction, "hepatic extraction"))

    @classmethod
    def from_clinical(
        cls,
        name: str,
        clearance_l_min: float,
        central_volume_l: float,
        intercompartmental_clearance_l_min: Sequence[float] = (),
        peripheral_volume_l: Sequence[float] = (),
        hepatic_extraction: float | None = None,
        saturable_extraction: SaturableExtraction | None = None,
    ) -> DrugPK:
        """A model from clinical units (L/min, L)."""
        to_si = L_M3 / MIN_S
        return cls(
            name,
            float(clearance_l_min) * to_si,
            float(central_volume_l) * L_M3,
            tuple(float(q) * to_si for q in intercompartmental_clearance_l_min),
            tuple(float(v) * L_M3 for v in peripheral_volume_l),
            hepatic_extraction,
            saturable_extraction,
        )

    @property
    def clearance_l_min(self) -> float:
        return self.clearance_m3_s / L_M3 * MIN_S

    @property
    def volumes_m3(self) -> np.ndarray:
        return np.array([self.central_volume_m3, *self.peripheral_volume_m3])

    @property
    def steady_state_volume_m3(self) -> float:
        return float(self.volumes_m3.sum())

    @cached_property
    def modes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(λ_j in 1/s, central concentration coefficients c_j in 1/m³, amount coefficients g_ij).

        A unit mass put into the central compartment at t = 0 gives C(t) = Σ c_j e^(−λ_j t) and amounts
        A_i(t) = Σ_j g_ij e^(−λ_j t). With volumes V and the symmetric clearance matrix L (V dc/dt = −L c),
        S = V^(−1/2) L V^(−1/2) = U Λ Uᵀ, so c_j = U_0j²/V_0 and g_ij = √(V_i/V_0) U_ij U_0j.
        """
        v = self.volumes_m3
        q = np.array(self.intercompartmental_clearance_m3_s)
        n = v.size
        lap = np.zeros((n, n))
        lap[0, 0] = self.clearance_m3_s + q.sum()
        for i, qi in enumerate(q, start=1):
            lap[0, i] = lap[i, 0] = -qi
            lap[i, i] = qi
        s = lap / np.sqrt(np.outer(v, v))
        lam, u = np.linalg.eigh(s)
        c = u[0] ** 2 / v[0]
        g = np.sqrt(v / v[0])[:, None] * u * u[0][None, :]
        return lam, c, g

    def half_lives_s(self) -> np.ndarray:
        """Disposition half-lives ln 2/λ_j, shortest first."""
        return np.sort(math.log(2.0) / self.modes[0])

    def rate_matrix_per_s(self) -> np.ndarray:
        """dA/dt = K A for the compartment amounts (the matrix an ODE solver integrates)."""
        v = self.volumes_m3
        k = np.zeros((v.size, v.size))
        k[0, 0] = -self.clearance_m3_s / v[0]
        for i, qi in enumerate(self.intercompartmental_clearance_m3_s, start=1):
            k[0, 0] -= qi / v[0]
            k[0, i] = qi / v[i]
            k[i, 0] = qi / v[0]
            k[i, i] = -qi / v[i]
        return k


def _model_parameter(block: dict[str, Any], base: str, bsa_m2: float, mass_kg: float) -> Any:
    """One model parameter from ``drugs.yaml`` in SI, its unit read from the key suffix."""
    units = {  # suffix: (SI factor, scale by)
        "l_min_m2": (L_M3 / MIN_S, bsa_m2),
        "l_h_m2": (L_M3 / H_S, bsa_m2),
        "l_min": (L_M3 / MIN_S, 1.0),
        "l_h": (L_M3 / H_S, 1.0),
        "l_m2": (L_M3, bsa_m2),
        "l_kg": (L_M3, mass_kg),
        "l": (L_M3, 1.0),
    }
    for suffix, (factor, scale) in units.items():
        key = f"{base}_{suffix}"
        if key in block:
            value = _value(block[key])
            if isinstance(value, list):
                return tuple(float(x) * factor * scale for x in value)
            return float(value) * factor * scale
    raise PlanError(f"drugs.yaml model block has no {base}_* entry", "fix drugs.yaml")


def drug_pk(
    name: str,
    body_surface_area_m2: float | None = None,
    body_mass_kg: float | None = None,
    model: str = "model",
) -> DrugPK:
    """The plasma model of a drug from ``drugs.yaml``, per-m² and per-kg values scaled to the given patient.

    ``model`` picks a parameter set (``"model"``, or a key under the drug's ``alternative_models``). The saturable
    first pass, where the table has one (5-FU, rat constants), is scaled per kg of ``body_mass_kg``.
    """
    canon = resolve_drug_name(name)
    row = load_drug_table()["drugs"][canon]
    bsa = _reference("body_surface_area_m2") if body_surface_area_m2 is None else body_surface_area_m2
    mass = _reference("body_mass_kg") if body_mass_kg is None else body_mass_kg
    bsa, mass = _positive(bsa, "body surface area (m²)"), _positive(mass, "body mass (kg)")
    block = row.get("model") if model == "model" else row.get("alternative_models", {}).get(model)
    if block is None:
        raise PlanError(
            f"drugs.yaml holds no sourced compartment model {model!r} for {canon}",
            "build a DrugPK with your own parameters (DrugPK.from_clinical)",
        )
    extraction = row.get("hepatic_extraction")
    saturable = None
    if "saturable_extraction" in row:
        sat = row["saturable_extraction"]
        per_kg = MG_KG / MIN_S * mass
        saturable = SaturableExtraction(
            float(sat["max_removal_rate_mg_kg_min"]["value"]) * per_kg,
            float(sat["half_saturation_rate_mg_kg_min"]["value"]) * per_kg,
        )
    return DrugPK(
        canon,
        _model_parameter(block, "clearance", bsa, mass),
        _model_parameter(block, "central_volume", bsa, mass),
        _model_parameter(block, "intercompartmental_clearance", bsa, mass),
        _model_parameter(block, "peripheral_volume", bsa, mass),
        None if extraction is None else float(_value(extraction)),
        saturable,
    )


# ------------------------------------------------------------------------------------------------------ carriers
@dataclass(frozen=True)
class CarrierRelease:
    """How a carrier hands drug to the blood of the infused bed.

    A fraction ``free_fraction`` of the dose is free at injection; a fraction ``releasable_fraction`` leaves the
    carrier by first-order release at ``release_rate_per_s``; the rest stays in the carrier. ``drugs`` lists the
    drugs the release data were measured with (``None``: any drug).
    """

    name: str
    free_fraction: float = 1.0
    releasable_fraction: float = 0.0
    release_rate_per_s: float = 0.0
    drugs: tuple[str, ...] | None = None
    embolic: bool = False

    def __post_init__(self) -> None:
        f0, fr, k = float(self.free_fraction), float(self.releasable_fraction), float(self.release_rate_per_s)
        if not (0.0 <= f0 <= 1.0 and 0.0 <= fr <= 1.0 and f0 + fr <= 1.0 + 1e-12):
            raise PlanError(
                f"carrier {self.name!r}: free {f0} and releasable {fr} fractions do not fit in the dose",
                "give fractions in [0, 1] whose sum is at most 1",
            )
        if not math.isfinite(k) or k < 0.0 or (fr > 0.0 and k == 0.0):
            raise PlanError(f"carrier {self.name!r}: release rate {k} /s is invalid", "give a positive rate (1/s)")

    @classmethod
    def solution(cls) -> CarrierRelease:
        """Plain drug solution: everything free at injection."""
        return cls("solution")

    @classmethod
    def from_elution(
        cls,
        name: str,
        plateau_fraction: float,
        time_to_75_percent_s: float,
        free_fraction: float = 0.0,
        drugs: tuple[str, ...] | None = None,
    ) -> CarrierRelease:
        """Beads eluting first-order to a plateau; k = ln 4 / t₇₅ (75 % of the eventually released amount at t₇₅)."""
        t75 = _positive(time_to_75_percent_s, "time to 75 % release (s)")
        return cls(name, free_fraction, float(plateau_fraction), math.log(4.0) / t75, drugs, embolic=True)

    def released_fraction(self, time_s: float | np.ndarray) -> np.ndarray:
        """Fraction of the dose out of the carrier by ``time_s`` (free part counted at injection)."""
        t = np.asarray(time_s, dtype=np.float64)
        return self.free_fraction + self.releasable_fraction * -np.expm1(-self.release_rate_per_s * t)

    def check_drug(self, drug_name: str) -> None:
        """Raise when the release data were not measured with this drug (e.g. 5-FU in doxorubicin beads)."""
        if self.drugs is not None and drug_name not in self.drugs:
            raise PlanError(
                f"carrier {self.name!r} has release data for {', '.join(self.drugs)}, not {drug_name}",
                f"use {', '.join(self.drugs)} with it, or give a drug solution ('solution')",
            )


def carrier_release(name: str) -> CarrierRelease:
    """A carrier of ``drugs.yaml``: solution, lipiodol_emulsion, dc_bead, lifepearl, hepasphere or tandem."""
    table = load_drug_table()["carriers"]
    key = str(name).strip().lower()
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=2, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise PlanError(f"unknown carrier {name!r}", f"{hint}known carriers: {', '.join(table)}")
    row = table[key]
    drugs = None if row["drugs"] == "any" else tuple(row["drugs"])
    if "time_to_75_percent_min" in row:
        return CarrierRelease.from_elution(
            key,
            float(row["plateau_fraction"]["value"]),
            float(row["time_to_75_percent_min"]["value"]) * MIN_S,
            float(row["free_fraction"]["value"]),
            drugs,
        )
    return CarrierRelease(
        key,
        float(row["free_fraction"]["value"]),
        float(row.get("releasable_fraction", {"value": 0.0})["value"]),
        float(row.get("release_rate_per_h", {"value": 0.0})["value"]) / H_S,
        drugs,
        embolic=key != "solution",
    )


# ---------------------------------------------------------------------------------------------- input components
@dataclass(frozen=True)
class _Input:
    """One input into the infused bed: a bolus, a zero-order infusion, or a first-order release (all from t = 0)."""

    mass_kg: float
    duration_s: float = 0.0  # > 0: zero-order over [0, duration]
    rate_per_s: float = 0.0  # > 0: first-order release M·k·e^(−kt)

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        if self.rate_per_s > 0.0:
            return self.mass_kg * -np.expm1(-self.rate_per_s * t)
        if self.duration_s > 0.0:
            return self.mass_kg * np.minimum(t, self.duration_s) / self.duration_s
        return np.full_like(t, self.mass_kg)

    def rate(self, t: float) -> float:
        if self.rate_per_s > 0.0:
            return self.mass_kg * self.rate_per_s * math.exp(-self.rate_per_s * t)
        if self.duration_s > 0.0:
            return self.mass_kg / self.duration_s if t < self.duration_s else 0.0
        return 0.0

    def response(self, t: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """(u ∗ e^(−λ·))(t) for every t (rows) and λ (columns), in closed form."""
        s, lam = t[:, None], lam[None, :]
        m = self.mass_kg
        if self.rate_per_s > 0.0:
            return m * self.rate_per_s * _exp_difference(self.rate_per_s, lam, s)
        if self.duration_s > 0.0:
            dur = self.duration_s
            inside = -np.expm1(-lam * np.minimum(s, dur)) / lam
            after = np.exp(-lam * np.maximum(s - dur, 0.0))
            return m / dur * inside * after
        return m * np.exp(-lam * s)


def _exp_difference(k: float, lam: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(e^(−k s) − e^(−λ s)) / (λ − k), stable for λ ≈ k (limit s·e^(−k s))."""
    lo = np.minimum(k, lam)
    d = np.abs(lam - k)
    x = d * s
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(x > 1e-8, -np.expm1(-x) / np.where(d > 0.0, d, 1.0), s * (1.0 - 0.5 * x))
    return np.exp(-lo * s) * ratio


# ----------------------------------------------------------------------------------------------------- profile
@dataclass(frozen=True, eq=False)
class PlasmaProfile:
    """Plasma concentration and drug whereabouts over time after one administration.

    ``auc_ng_h_ml`` is AUC from 0 to each sample time; ``auc_inf_ng_h_ml`` adds the exact model tail (everything
    still in the body or still to be released is eventually cleared by CL_TB). The hepatic-vein arrays (outflow of
    the infused bed, when its flow was given) exclude the instantaneous passage of a bolus from the pointwise values
    but include it in the AUCs.
    """

    time_s: np.ndarray
    plasma_ng_ml: np.ndarray
    auc_ng_h_ml: np.ndarray
    auc_inf_ng_h_ml: float
    extracted_by_liver_mg: np.ndarray
    in_carrier_mg: np.ndarray
    in_body_mg: np.ndarray
    eliminated_mg: np.ndarray
    dose_mg: float
    extraction_fraction: float
    hepatic_vein_ng_ml: np.ndarray | None = None
    hepatic_vein_auc_ng_h_ml: np.ndarray | None = None
    hepatic_vein_auc_inf_ng_h_ml: float | None = None

    @property
    def cmax_ng_ml(self) -> float:
        return float(np.max(self.plasma_ng_ml))

    @property
    def tmax_s(self) -> float:
        return float(self.time_s[int(np.argmax(self.plasma_ng_ml))])

    @property
    def auc_0_t_ng_h_ml(self) -> float:
        return float(self.auc_ng_h_ml[-1])

    def mass_balance_error_mg(self) -> float:
        """max over time of |carrier + extracted + body + eliminated − dose| (0 to round-off)."""
        total = self.in_carrier_mg + self.extracted_by_liver_mg + self.in_body_mg + self.eliminated_mg
        return float(np.max(np.abs(total - self.dose_mg)))


def _inputs(dose_kg: float, carrier: CarrierRelease, injection_duration_s: float) -> list[_Input]:
    parts = []
    if carrier.free_fraction > 0.0:  # an injection shorter than 1 µs is a bolus
        duration = injection_duration_s if injection_duration_s >= 1e-6 else 0.0
        parts.append(_Input(dose_kg * carrier.free_fraction, duration_s=duration))
    if carrier.releasable_fraction > 0.0:
        parts.append(_Input(dose_kg * carrier.releasable_fraction, rate_per_s=carrier.release_rate_per_s))
    return parts


def simulate_plasma(
    drug: DrugPK | str,
    dose_mg: float,
    time_s: np.ndarray | Sequence[float],
    route: str = "hepatic_artery",
    carrier: CarrierRelease | str = "solution",
    injection_duration_s: float = 0.0,
    extraction_fraction: float | None = None,
    saturable: bool = False,
    bed_flow_l_min: float | None = None,
    method: str = "analytic",
) -> PlasmaProfile:
    """Plasma concentration after giving ``dose_mg`` by ``route`` in ``carrier``, sampled at ``time_s``.

    Hepatic routes remove ``extraction_fraction`` (default: the drug's tabulated E) of the released drug on its
    first pass; with ``saturable`` the drug's Michaelis–Menten first pass sets E from the instantaneous input rate
    (needs an injection duration for the free part; solved with the ODE path). ``bed_flow_l_min`` (flow of the
    infused bed) adds the hepatic-vein outflow concentration (1 − E)·C_p + (uninfused input)/Q_bed. ``method``:
    ``"analytic"`` (closed-form convolution) or ``"ode"`` (Radau, the check path).
    """
    model = drug_pk(drug) if isinstance(drug, str) else drug
    t = _times(time_s)
    dose = _dose(dose_mg)
    if route not in ROUTES:
        raise PlanError(f"unknown route {route!r}", f"use one of {', '.join(ROUTES)}")
    rel = carrier_release(carrier) if isinstance(carrier, str) else carrier
    rel.check_drug(model.name)
    if rel.embolic and route not in _EMBOLIC_ROUTES:
        raise PlanError(
            f"carrier {rel.name!r} is an embolic carrier given into the hepatic artery, not {route}",
            "use route='hepatic_artery', or a drug solution for IV or portal delivery",
        )
    inj = float(injection_duration_s)
    if not math.isfinite(inj) or inj < 0.0:
        raise PlanError(f"injection duration {injection_duration_s} s is negative", "give a duration ≥ 0 s")
    if method not in ("analytic", "ode"):
        raise PlanError(f"unknown solution method {method!r}", "use 'analytic' or 'ode'")

    hepatic = route != "intravenous"
    e_lin = extraction_fraction if extraction_fraction is not None else model.hepatic_extraction
    sat = None
    if hepatic and saturable:
        if model.saturable_extraction is None:
            raise PlanError(f"{model.name} has no saturable first pass in drugs.yaml", "use saturable=False")
        sat = model.saturable_extraction
        if rel.free_fraction > 0.0 and inj < 1e-6:
            raise PlanError("a saturable first pass needs a finite input rate", "give injection_duration_s > 0")
    if e_lin is None and ((hepatic and sat is None) or bed_flow_l_min is not None):
        raise PlanError(
            f"no sourced hepatic extraction for {model.name} in drugs.yaml",
            "give extraction_fraction (the single-pass fraction removed by the liver)",
        )
    e_lin = _extraction(e_lin) if e_lin is not None else 0.0
    e_input = e_lin if hepatic else 0.0
    parts = _inputs(dose * MG_KG, rel, inj)

    if sat is None and method == "analytic":
        out = _solve_analytic(model, parts, e_input, t)
    else:
        out = _solve_ode(model, parts, e_input, sat, t)
    conc, auc, body, extracted, bed_in, central_future = out

    cl = model.clearance_m3_s
    auc_inf = auc[-1] + (body[-1] + central_future) / cl
    released = np.sum([p.cumulative(t) for p in parts], axis=0) if parts else np.zeros_like(t)
    k = KG_M3_NG_ML / H_S  # kg·s/m³ → ng·h/mL
    hv = hv_auc = hv_auc_inf = None
    if bed_flow_l_min is not None:
        q = _positive(bed_flow_l_min, "bed flow (L/min)") * L_M3 / MIN_S
        e_rec = e_lin  # drug recirculating from plasma passes the bed with the linear extraction
        rate_in = np.array([sum(p.rate(ti) for p in parts) for ti in t]) if hepatic else np.zeros_like(t)
        e_now = sat.extraction(rate_in) if sat is not None else e_input
        hv = ((1.0 - e_rec) * conc + rate_in * (1.0 - e_now) / q) * KG_M3_NG_ML
        through = (bed_in - extracted) if hepatic else np.zeros_like(t)
        hv_auc = ((1.0 - e_rec) * auc + through / q) * k
        through_inf = (bed_in[-1] - extracted[-1] + central_future) if hepatic else 0.0
        hv_auc_inf = float(((1.0 - e_rec) * auc_inf + through_inf / q) * k)
    return PlasmaProfile(
        time_s=t,
        plasma_ng_ml=conc * KG_M3_NG_ML,
        auc_ng_h_ml=auc * k,
        auc_inf_ng_h_ml=float(auc_inf * k),
        extracted_by_liver_mg=extracted / MG_KG,
        in_carrier_mg=dose - released / MG_KG,
        in_body_mg=body / MG_KG,
        eliminated_mg=cl * auc / MG_KG,
        dose_mg=dose,
        extraction_fraction=e_input,
        hepatic_vein_ng_ml=hv,
        hepatic_vein_auc_ng_h_ml=hv_auc,
        hepatic_vein_auc_inf_ng_h_ml=hv_auc_inf,
    )


def _solve_analytic(
    model: DrugPK, parts: list[_Input], e: float, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Closed-form convolution: C = Σ_j c_j (u∗e^(−λ_j·)), ∫C = Σ_j c_j (M_in − u∗e^(−λ_j·))/λ_j."""
    lam, c, g = model.modes
    conc = np.zeros_like(t)
    auc = np.zeros_like(t)
    body = np.zeros_like(t)
    bed_in = np.zeros_like(t)
    for part in parts:
        resp = (1.0 - e) * part.response(t, lam)
        m_in = (1.0 - e) * part.cumulative(t)
        conc += resp @ c
        auc += (m_in[:, None] - resp) @ (c / lam)
        body += resp @ g.sum(axis=0)
        bed_in += part.cumulative(t)
    future = (1.0 - e) * sum(p.mass_kg for p in parts) - (1.0 - e) * bed_in[-1]
    return conc, auc, body, e * bed_in, bed_in, float(future)


def _solve_ode(
    model: DrugPK, parts: list[_Input], e_lin: float, sat: SaturableExtraction | None, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Stiff (Radau) integration of amounts, extracted mass and AUC; the state is scaled by the dose."""
    scale = sum(p.mass_kg for p in parts) or 1.0
    kmat = model.rate_matrix_per_s()
    n = kmat.shape[0]
    v1 = model.central_volume_m3
    boluses = [p for p in parts if p.duration_s == 0.0 and p.rate_per_s == 0.0]
    flowing = [p for p in parts if p not in boluses]

    def e_of(rate: float) -> float:
        return float(sat.extraction(rate)) if sat is not None else e_lin

    def rhs(time: float, y: np.ndarray) -> np.ndarray:
        rate = sum(p.rate(time) for p in flowing) / scale
        e = e_of(rate * scale)
        dy = np.empty(n + 2)
        dy[:n] = kmat @ y[:n]
        dy[0] += (1.0 - e) * rate
        dy[n] = e * rate  # extracted
        dy[n + 1] = y[0] / v1  # ∫ C dt (scaled)
        return dy

    y0 = np.zeros(n + 2)
    bolus_mass = sum(p.mass_kg for p in boluses) / scale
    y0[0] = (1.0 - e_lin) * bolus_mass
    y0[n] = e_lin * bolus_mass
    stops = sorted({0.0, float(t[-1]), *(p.duration_s for p in flowing if 0.0 < p.duration_s < t[-1])})
    fastest = float(max([*model.modes[0], *(p.rate_per_s for p in flowing)]))
    ys = np.zeros((t.size, n + 2))
    y = y0
    for a, b in itertools.pairwise(stops):
        mask = (t >= a) & (t <= b)
        t_eval = np.union1d(t[mask], [b])
        sol = solve_ivp(
            rhs, (a, b), y, method="Radau", t_eval=t_eval, rtol=1e-11, atol=1e-15, first_step=min(0.1 / fastest, b - a)
        )
        if not sol.success:
            raise PhysicsError(f"the PK integration failed: {sol.message}", "shorten the time span or use 'analytic'")
        ys[mask] = sol.y[:, np.searchsorted(t_eval, t[mask])].T
        y = sol.y[:, -1]
    if t[-1] == 0.0:
        ys[:] = y0
    ys *= scale
    bed_in = np.sum([p.cumulative(t) for p in parts], axis=0) if parts else np.zeros_like(t)
    future = 0.0
    t_end = float(t[-1])
    for p in flowing:
        if p.rate_per_s > 0.0:
            u_end = p.rate(t_end)
            future += quad(lambda u: 1.0 - e_of(u), 0.0, u_end, epsabs=0.0, epsrel=1e-12, limit=200)[0] / p.rate_per_s
        elif t_end < p.duration_s:
            future += (1.0 - e_of(p.mass_kg / p.duration_s)) * p.mass_kg * (1.0 - t_end / p.duration_s)
    conc = ys[:, 0] / v1
    return conc, ys[:, n + 1], ys[:, :n].sum(axis=1), ys[:, n], bed_in, float(future)


# ------------------------------------------------------------------------------------------- regional delivery
def flow_fractions_by_region(
    terminal_outflow_m3_s: np.ndarray | Sequence[float], region_of_terminal: Sequence[str]
) -> dict[str, float]:
    """Share of the infused flow that reaches each region: Σ terminal outflows per region label / total outflow."""
    q = np.asarray(terminal_outflow_m3_s, dtype=np.float64)
    labels = list(region_of_terminal)
    if q.ndim != 1 or q.size != len(labels):
        raise PlanError(f"{q.size} terminal flows for {len(labels)} region labels", "give one label per terminal")
    if np.any(~np.isfinite(q)) or np.any(q < 0.0) or q.sum() <= 0.0:
        raise PhysicsError("terminal outflows are negative, not finite or all zero", "solve the tree's flow first")
    out: dict[str, float] = {}
    for label, qi in zip(labels, q, strict=True):
        out[label] = out.get(label, 0.0) + float(qi)
    total = float(q.sum())
    return {k: v / total for k, v in out.items()}


def delivered_mass_mg(
    fractions_by_region: Mapping[str, float], dose_mg: float, extraction: float | Mapping[str, float] = 1.0
) -> dict[str, float]:
    """Mass retained in each region on the first pass: dose × flow share × regional extraction.

    ``extraction`` 1 (the default) stands for an embolic carrier that lodges where its flow takes it (beads,
    emulsion droplets); a dissolved drug keeps only E of what flows through. Shares may sum to less than 1 (the
    rest leaves the infused tree, e.g. by reflux or shunts) but not to more.
    """
    dose = _dose(dose_mg)
    total = 0.0
    out = {}
    for region, share in fractions_by_region.items():
        f = float(share)
        if not math.isfinite(f) or not 0.0 <= f <= 1.0:
            raise PlanError(f"flow share {share} of region {region!r} is outside [0, 1]", "give fractions of the flow")
        total += f
        e = extraction.get(region, None) if isinstance(extraction, Mapping) else extraction
        if e is None:
            raise PlanError(f"no extraction given for region {region!r}", "give one extraction per region")
        e = float(e)
        if not math.isfinite(e) or not 0.0 <= e <= 1.0:
            raise PhysicsError(f"extraction {e} of region {region!r} is outside [0, 1]", "give a fraction")
        out[region] = dose * f * e
    if total > 1.0 + 1e-9:
        raise PlanError(f"flow shares add up to {total:.6g} > 1", "give shares of one infusion that sum to at most 1")
    return out


def tissue_concentration_ug_ml(
    mass_mg_by_region: Mapping[str, float], volume_ml_by_region: Mapping[str, float]
) -> dict[str, float]:
    """Mean tissue concentration (µg/mL) = retained mass / region volume, for each region."""
    out = {}
    for region, mass in mass_mg_by_region.items():
        if region not in volume_ml_by_region:
            raise PlanError(f"no volume for region {region!r}", "give the region's volume in mL")
        m = float(mass)
        if not math.isfinite(m) or m < 0.0:
            raise PlanError(f"mass {mass} mg of region {region!r} is negative", "give masses ≥ 0")
        out[region] = 1e3 * m / _positive(volume_ml_by_region[region], f"volume of {region} (mL)")
    return out
