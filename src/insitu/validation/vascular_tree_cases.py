"""Vascular tree cases of vascular.md §8: VASC-2 (Murray-optimal symmetric tree) and VASC-4 (the Karch CCO
reference set balanced to equal terminal flows, and range checks on the phantom's hepatic artery).

VASC-2 is analytic: a symmetric tree built with VesselTree and solved with solve_flow must give the closed forms
to 1e-10 relative, and the sheet's printed numbers to their printed digits. VASC-4 checks that radius balancing
makes every terminal of a 4000-terminal CCO tree carry 0.125 mL/min at 60 mmHg (round-off of a sparse solve:
1e-9), and that the phantom artery's calibres and branching exponents fall inside the measured ranges. Debbaut
2014's per-generation table was not available, so the phantom rows are range checks only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from insitu.geometry import rotation_about_axis
from insitu.grid import Grid
from insitu.validation.report import Row
from insitu.vascular.balance import balance_radii
from insitu.vascular.flow import ML_MIN_M3_S, MMHG_PA, solve_flow
from insitu.vascular.generate import TreeSpec, generate_trees, load_anatomy, optimal_bifurcation_point
from insitu.vascular.tree import VesselTree

if TYPE_CHECKING:
    from insitu.patient.patient import Patient

CASE2_SOURCE = (
    "vascular.md §8 case 2: Murray-optimal symmetric tree (closed forms from Poiseuille flow; "
    "Murray 1926 and Zamir 1976 recalled)"
)
CASE4_SOURCE = (
    "vascular.md §8 case 4 / §2.1: Karch 1999 reference set (100/60 mmHg, γ = 3, 3.6 cP ◐; 100 cm³, "
    "500 mL/min, 4000 terminals ✖ not found in the primary): balancing self-consistency"
)
DEBBAUT_SOURCE = (
    "Debbaut et al. 2014, J Anat 224:509 (abstract): HA+PV+HV cast radii 13.2 mm down to 80 µm; "
    "the per-generation table (Table 1) was not available, so this is a range check only"
)
JESSEN_SOURCE = "Jessen et al. 2023, arXiv 2304.11998: branching exponents of hepatic trees within 2.0–3.0 (✔)"
ROUND_OFF = 1e-10  # closed forms in float64
SOLVE_ROUND_OFF = 1e-9  # equal flows/pressures after a sparse solve of a 4000-terminal tree
# VASC-2 inputs (vascular.md §8 case 2)
CASE2_R0_MM = 2.0
CASE2_FLOW_ML_MIN = 300.0  # 5.0e-6 m³/s
CASE2_VISCOSITY_PA_S = 3.5e-3
CASE2_LAMBDA = 10.0
CASE2_GENERATIONS = 10
CASE2_THETA_DEG = 37.467


def _branching() -> dict:
    return load_anatomy()["branching"]


def _entry(key: str, source: str) -> dict:
    return next(e for e in _branching()[key] if e["source"] == source)


# VASC-4 inputs (vascular.md §2.1 / §8 case 4), from vascular/anatomy.yaml (cco_parameters, status unconfirmed)
_KARCH = {**_entry("cco_parameters", "svvascularize"), **_entry("cco_parameters", "karch1999")}
KARCH_VOLUME_ML = float(_KARCH["perfusion_volume_cm3"])
KARCH_FLOW_ML_MIN = float(_KARCH["perfusion_flow_ml_min"])
KARCH_TERMINALS = int(_KARCH["n_terminals"])
KARCH_VISCOSITY_PA_S = float(_KARCH["viscosity_cp"]) * 1e-3
KARCH_INLET_MMHG = float(_KARCH["perfusion_pressure_mmhg"])
KARCH_TERMINAL_MMHG = float(_KARCH["terminal_pressure_mmhg"])
# growth-time root radius (only sets the collision radii before balancing): Schreiner 1997 Table I CCO root
KARCH_GROWTH_ROOT_MM = float(_entry("cco_reference_tree", "schreiner1997")["root_radius_mm"])
DEBBAUT_RADIUS_MM = tuple(float(v) for v in _entry("liver_cast_range", "debbaut2014")["radius_mm"])
EXPONENT_RANGE = tuple(float(v) for v in _entry("murray_exponent", "jessen2023")["value"])


def _printed(case_id: str, quantity: str, value: float, printed: float, unit: float, source: str) -> Row:
    """A row against a number as the sheet prints it: tolerance one unit of its last digit (the sheet
    sometimes truncates, e.g. 2^(−1/3) = 0.7937005… printed 0.793700)."""
    return Row.within(case_id, quantity, value, printed, unit / abs(printed), source + " (printed digits)")


def symmetric_tree(r0_mm: float, lam: float, generations: int, theta_deg: float) -> VesselTree:
    """Symmetric bifurcating tree in a plane: generation k = 1…G has 2^(k−1) segments of radius
    r0·2^(−(k−1)/3) and length λ·r (Murray's law with equal daughters)."""
    points = [np.zeros(3), np.array([0.0, 0.0, lam * r0_mm])]
    parent, radius = [-1, 0], [r0_mm, r0_mm]
    frontier = [(1, np.array([0.0, 0.0, 1.0]))]
    for k in range(1, generations):
        r_k = r0_mm * 2.0 ** (-k / 3.0)
        grown = []
        for node, direction in frontier:
            for sign in (-1.0, 1.0):
                d = rotation_about_axis((0.0, 1.0, 0.0), sign * math.radians(theta_deg)) @ direction
                points.append(points[node] + lam * r_k * d)
                parent.append(node)
                radius.append(r_k)
                grown.append((len(points) - 1, d))
        frontier = grown
    return VesselTree(points_mm=np.array(points), parent=parent, radius_mm=radius, name="murray symmetric")


def _branch_angles_deg(split: tuple[float, float]) -> tuple[float, float, float, float]:
    """Closed-form minimum-work angles cos θ₁ = (r₀⁴ + r₁⁴ − r₂⁴)/(2r₀²r₁²), and the CCO bifurcation point's."""
    r1, r2 = split[0] ** (1.0 / 3.0), split[1] ** (1.0 / 3.0)
    theta1 = math.degrees(math.acos((1.0 + r1**4 - r2**4) / (2.0 * r1**2)))
    theta2 = math.degrees(math.acos((1.0 + r2**4 - r1**4) / (2.0 * r2**2)))
    p, x, t = np.array([0.0, 0.0, -50.0]), np.array([40.0, 0.0, 30.0]), np.array([-45.0, 0.0, 25.0])
    b = optimal_bifurcation_point(p, x, t, split)
    axis = (b - p) / np.linalg.norm(b - p)

    def angle(end: np.ndarray) -> float:
        d = (end - b) / np.linalg.norm(end - b)
        return math.degrees(math.acos(float(np.clip(d @ axis, -1.0, 1.0))))

    return theta1, theta2, angle(x), angle(t)


def vasc_2_rows() -> list[Row]:
    """VASC-2: radius ratio, wall shear, resistance and branch angles of the Murray-optimal symmetric tree."""
    mu, r0_m = CASE2_VISCOSITY_PA_S, CASE2_R0_MM * 1e-3
    q0 = CASE2_FLOW_ML_MIN * ML_MIN_M3_S
    tree = symmetric_tree(CASE2_R0_MM, CASE2_LAMBDA, CASE2_GENERATIONS, CASE2_THETA_DEG)
    sol = solve_flow(tree, inlet_flow_ml_min=CASE2_FLOW_ML_MIN, outlet_pressure_mmhg=0.0, viscosity_pa_s=mu)
    rows = []
    # Murray: r ∝ Q^(1/3), with the daughter/parent flow ratio from the network solve
    kids = tree.children(1)
    ratio = float((sol.flow_m3_s[kids[0]] / sol.flow_m3_s[1]) ** (1.0 / 3.0))
    rows.append(
        Row.within("VASC-2", "daughter/parent radius (Q₁/Q₀)^(1/3)", ratio, 2.0 ** (-1 / 3), ROUND_OFF, CASE2_SOURCE)
    )
    rows.append(_printed("VASC-2", "daughter/parent radius", ratio, 0.793700, 1e-6, CASE2_SOURCE))
    shear = sol.wall_shear_stress_pa()[1:]
    exact_shear = 4.0 * mu * q0 / (math.pi * r0_m**3)
    for label, value in (("min", float(shear.min())), ("max", float(shear.max()))):
        rows.append(
            Row.within(
                "VASC-2", f"wall shear, {label} over all segments (Pa)", value, exact_shear, ROUND_OFF, CASE2_SOURCE
            )
        )
    rows.append(
        _printed("VASC-2", "wall shear in every generation (Pa)", float(shear.mean()), 2.7852, 1e-4, CASE2_SOURCE)
    )
    resistance = float(sol.pressure_pa[0] / sol.inlet_flow_m3_s)
    exact_resistance = CASE2_GENERATIONS * 8.0 * mu * CASE2_LAMBDA / (math.pi * r0_m**3)
    rows.append(
        Row.within("VASC-2", "total resistance P₀/Q₀ (Pa·s/m³)", resistance, exact_resistance, ROUND_OFF, CASE2_SOURCE)
    )
    rows.append(_printed("VASC-2", "total resistance (Pa·s/m³)", resistance, 1.11408e8, 1e3, CASE2_SOURCE))
    per_generation = [
        1.0 / float(np.sum(1.0 / sol.resistance_pa_s_m3[tree.generation == k])) for k in range(1, CASE2_GENERATIONS + 1)
    ]
    spread = max(per_generation) / min(per_generation) - 1.0
    rows.append(
        Row.below("VASC-2", "spread of the per-generation parallel resistance", spread, ROUND_OFF, CASE2_SOURCE)
    )
    # branch angles: closed form against the printed digits; the CCO bifurcation point against the closed form.
    # That point is an iterate stopped where the cost is flat to round-off, so it is good to ~√ε of the arm length.
    fermat_tol = 1e-8
    for split, printed in (((0.5, 0.5), (37.467, 37.467)), ((0.7, 0.3), (25.706, 49.734))):
        theta1, theta2, cco1, cco2 = _branch_angles_deg(split)
        name = f"{split[0]:g}/{split[1]:g} split"
        rows.append(_printed("VASC-2", f"branch angle θ₁, {name} (°)", theta1, printed[0], 1e-3, CASE2_SOURCE))
        rows.append(_printed("VASC-2", f"branch angle θ₂, {name} (°)", theta2, printed[1], 1e-3, CASE2_SOURCE))
        for label, value, exact in (("θ₁", cco1, theta1), ("θ₂", cco2, theta2)):
            rows.append(
                Row.within(
                    "VASC-2",
                    f"CCO bifurcation point {label}, {name} (°)",
                    value,
                    exact,
                    fermat_tol,
                    CASE2_SOURCE + "; optimal_bifurcation_point (iterative, √ε of the arm length)",
                )
            )
    r1, r2 = 0.7 ** (1 / 3), 0.3 ** (1 / 3)
    rows.append(_printed("VASC-2", "r₁/r₀ for a 0.7 flow share", r1, 0.88790, 1e-5, CASE2_SOURCE))
    rows.append(_printed("VASC-2", "r₂/r₀ for a 0.3 flow share", r2, 0.66943, 1e-5, CASE2_SOURCE))
    return rows


def karch_tree(seed: int = 1) -> VesselTree:
    """The Karch reference set: 4000 CCO terminals in a 100 cm³ sphere (1 mm voxels), radii balanced
    between 100 and 60 mmHg at 500 mL/min with a Newtonian 3.6 cP."""
    radius_mm = (3.0 * KARCH_VOLUME_ML * 1e3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    n = 2 * math.ceil(radius_mm) + 3
    half = (n - 1) / 2.0
    grid = Grid(shape=(n, n, n), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(-half, -half, -half))
    z, y, x = grid.axis_coordinates_mm()
    mask = (x[None, None, :] ** 2 + y[None, :, None] ** 2 + z[:, None, None] ** 2) <= radius_mm**2
    spec = TreeSpec("karch", "hepatic_artery", (0.0, 0.0, -radius_mm - 1.0), KARCH_GROWTH_ROOT_MM, KARCH_TERMINALS)
    (tree,) = generate_trees(mask, grid, [spec], seed=seed)
    return balance_radii(
        tree,
        inlet_flow_ml_min=KARCH_FLOW_ML_MIN,
        inlet_pressure_mmhg=KARCH_INLET_MMHG,
        terminal_pressure_mmhg=KARCH_TERMINAL_MMHG,
        viscosity_pa_s=KARCH_VISCOSITY_PA_S,
    )


def branching_exponents(tree: VesselTree) -> np.ndarray:
    """The exponent x with r₀^x = Σ r_child^x at every bifurcation (bisection to 1e-13)."""
    out = []
    for node in tree.bifurcations:
        rel = tree.radius_mm[tree.children(node)] / tree.radius_mm[node]
        lo, hi = 0.5, 20.0  # Σ rel^x − 1 falls from > 0 to < 0 as x grows (every rel < 1)
        while hi - lo > 1e-13:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.sum(rel**mid) > 1.0 else (lo, mid)
        out.append(0.5 * (lo + hi))
    return np.asarray(out)


def flow_radius_exponent(tree: VesselTree) -> float:
    """x of the least-squares fit r ∝ Q^(1/x) over all segments (3 for a tree with radii from Murray by flow)."""
    seg = np.flatnonzero(tree.parent >= 0)
    slope = np.polyfit(np.log(np.asarray(tree.flow)[seg]), np.log(tree.radius_mm[seg]), 1)[0]
    return float(1.0 / slope)


def vasc_4_rows(patient: Patient | None = None) -> list[Row]:
    """VASC-4: the balanced Karch tree, and range checks on the phantom's hepatic artery (``patient``;
    the default phantom when None)."""
    rows = []
    tree = karch_tree()
    n_term = int(tree.terminals.size)
    rows.append(Row.in_range("VASC-4", "Karch tree: terminals", n_term, KARCH_TERMINALS, KARCH_TERMINALS, CASE4_SOURCE))
    q_term = KARCH_FLOW_ML_MIN / KARCH_TERMINALS
    by_pressure = solve_flow(
        tree,
        inlet_pressure_mmhg=KARCH_INLET_MMHG,
        outlet_pressure_mmhg=KARCH_TERMINAL_MMHG,
        viscosity_pa_s=KARCH_VISCOSITY_PA_S,
    )
    q = by_pressure.terminal_outflow_ml_min
    for label, value in (("min", float(q.min())), ("max", float(q.max()))):
        rows.append(
            Row.within(
                "VASC-4", f"Karch tree: terminal flow, {label} (mL/min)", value, q_term, SOLVE_ROUND_OFF, CASE4_SOURCE
            )
        )
    # inflow prescribed, each terminal drains to 0 mmHg through R_t = 60 mmHg / q_term: its node sits at
    # 60 mmHg only if it carries exactly q_term (the terminal pressures are free unknowns here)
    by_flow = solve_flow(
        tree,
        inlet_flow_ml_min=KARCH_FLOW_ML_MIN,
        outlet_pressure_mmhg=0.0,
        terminal_resistance_pa_s_m3=KARCH_TERMINAL_MMHG * MMHG_PA / (q_term * ML_MIN_M3_S),
        viscosity_pa_s=KARCH_VISCOSITY_PA_S,
    )
    p_root = float(by_flow.pressure_mmhg[0])
    p_term = by_flow.pressure_mmhg[by_flow.terminal_nodes]
    dp = KARCH_INLET_MMHG - KARCH_TERMINAL_MMHG
    for label, value in (("min", float(p_term.min())), ("max", float(p_term.max()))):
        rows.append(
            Row.within(
                "VASC-4",
                f"Karch tree at 500 mL/min: terminal pressure, {label} (mmHg)",
                value,
                KARCH_TERMINAL_MMHG,
                SOLVE_ROUND_OFF,
                CASE4_SOURCE,
            )
        )
    rows.append(
        Row.within(
            "VASC-4",
            "Karch tree at 500 mL/min: inlet pressure (mmHg)",
            p_root,
            KARCH_INLET_MMHG,
            SOLVE_ROUND_OFF,
            CASE4_SOURCE,
        )
    )
    resistance = dp * MMHG_PA / by_pressure.inlet_flow_m3_s
    exact = dp * MMHG_PA / (KARCH_FLOW_ML_MIN * ML_MIN_M3_S)
    rows.append(
        Row.within("VASC-4", "Karch tree resistance ΔP/Q (Pa·s/m³)", resistance, exact, SOLVE_ROUND_OFF, CASE4_SOURCE)
    )
    rows.append(_printed("VASC-4", "Karch tree resistance (Pa·s/m³)", resistance, 6.40e8, 1e6, CASE4_SOURCE))
    rows.append(
        Row.below(
            "VASC-4",
            "Karch tree: max Murray residual |r₀³ − r₁³ − r₂³|/r₀³",
            float(tree.murray_residuals(3.0).max()),
            1e-9,
            CASE2_SOURCE + " (any CCO output)",
        )
    )
    rows.extend(_phantom_artery_rows(patient))
    return rows


def _phantom_artery_rows(patient: Patient | None) -> list[Row]:
    """Range checks on the phantom's balanced hepatic artery (no per-generation reference available)."""
    from insitu.patient.phantom import arterial_inflow_ml_min

    if patient is None:
        from insitu.validation.cases import _default_phantom

        patient = _default_phantom()
    artery = patient.trees["hepatic_artery"]
    seg = np.flatnonzero(artery.parent >= 0)
    largest = max(float(tree.radius_mm[tree.parent >= 0].max()) for tree in patient.trees.values())
    exponents = branching_exponents(artery)
    inflow = solve_flow(artery).inlet_flow_ml_min  # Fåhræus–Lindqvist, 100 → 60 mmHg (rheology.yaml)
    return [
        Row.in_range("VASC-4", "phantom trees: largest radius (mm)", largest, *DEBBAUT_RADIUS_MM, DEBBAUT_SOURCE),
        Row.below(
            "VASC-4",
            "phantom artery: smallest radius, reaches the cast's finest (mm)",
            float(artery.radius_mm[seg].min()),
            DEBBAUT_RADIUS_MM[0],
            DEBBAUT_SOURCE,
        ),
        Row.in_range(
            "VASC-4",
            "phantom artery: smallest local branching exponent",
            float(exponents.min()),
            EXPONENT_RANGE[0],
            EXPONENT_RANGE[1] + ROUND_OFF,
            JESSEN_SOURCE + "; Murray γ = 3 kept to round-off",
        ),
        Row.in_range(
            "VASC-4",
            "phantom artery: largest local branching exponent",
            float(exponents.max()),
            EXPONENT_RANGE[0],
            EXPONENT_RANGE[1] + ROUND_OFF,
            JESSEN_SOURCE + "; Murray γ = 3 kept to round-off",
        ),
        Row.in_range(
            "VASC-4",
            "phantom artery: flow–radius exponent x of r ∝ Q^(1/x) (fit over all segments)",
            flow_radius_exponent(artery),
            *EXPONENT_RANGE,
            JESSEN_SOURCE + "; balancing moves it off γ = 3",
        ),
        Row.within(
            "VASC-4",
            "phantom artery: inflow at 100 → 60 mmHg (mL/min)",
            inflow,
            arterial_inflow_ml_min(),
            SOLVE_ROUND_OFF,
            "phantom.yaml: Carlisle 1992 Gut 33:92, 3.5 mL/min/kg (✔) × 70 kg (ICRP 23, unconfirmed)",
        ),
    ]


def vascular_tree_rows() -> list[Row]:
    """All rows of this module (VASC-2, VASC-4)."""
    return vasc_2_rows() + vasc_4_rows()
