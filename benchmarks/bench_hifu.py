"""HIFU benchmarks (issue 7): ``hifu_field_256_s`` — one focus of the JC-like bowl at 1.2 MHz through the phantom,
256 × 256 points per plane × 256 planes (target ≤ 2 s on 2 cores), source plane included; ``hifu_plan_3cm_s`` — a
full sonication plan (window search, focus lattice, every field, bioheat with cooling) for the phantom's 3 cm tumour
at 1 mm (target ≤ 120 s); and the peer ``kwave_speed_ratio`` on the O'Neil case (HIFU-1): k-wave-python's NumPy
backend run offline (``peer_kwave.py`` writes placeholders for the C++ binaries it would download on import) against
our solver at a matched axial error (target ≥ 100×). Without k-wave-python the reason is printed and the figure
skipped; ``HIFU_BENCH_PEER=0`` skips it too (the peer run takes ~2–3 min on 2 cores)."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from insitu.patient.phantom import PhantomSpec, make_phantom
from insitu.physics import acoustics as ac
from insitu.plan import Placement, Plan, Step
from insitu.simulation import StepContext
from insitu.state import TissueState
from insitu.therapies import hifu
from insitu.tissue.library import load_library

PLAN_PROTOCOL = {
    "acoustic_power_w": 300.0,
    "sonication_s": 2.0,
    "cooling_s": 20.0,
    "focus_spacing_mm": 6.0,
    "layer_spacing_mm": 10.0,
}


def _phantom_context(patient, step):
    library = load_library()
    plan = Plan(patient="phantom", steps=[step], damage_model="arrhenius:liver_comsol")
    return StepContext(patient, plan, library, lambda stage, f, m="": None), TissueState.from_patient(patient, library)


def field_256(patient, direction: np.ndarray, centre: np.ndarray) -> tuple[float, float, dict]:
    """One focus, 256² × 256 planes: (total s, march s, figures)."""
    library = load_library()
    step = Step(therapy="hifu", device="hifu-jc-like-bowl", placement=Placement(tip_mm=tuple(centre)),
                protocol={"acoustic_power_w": 100.0, "sonication_s": 1.0})  # fmt: skip
    context, state = _phantom_context(patient, step)
    labels = hifu.acoustic_labels(state, context)
    water = library.index_of("water")
    transducer = hifu.transducer_of("hifu-jc-like-bowl")
    frequency = 1.2e6
    tables = ac.MediumTables.from_library(library, frequency)
    dx = (2 * transducer.aperture_radius_m + 10e-3) / (256 - 2 * ac.ABSORBING_CELLS)
    heat = np.zeros(state.grid.shape, np.float32)
    t0 = time.perf_counter()
    z0 = transducer.depth_m + hifu.SOURCE_STANDOFF_MM * 1e-3
    plane = ac.source_plane(transducer, frequency, float(tables.speed_m_s[water]), z0, dx, 256)
    p0 = plane.field(np.ones(1, np.complex64))
    p0 *= np.complex64(math.sqrt(100.0 / ac.plane_power_w(p0, dx, frequency, 1524.0, 994.0)))
    t1 = time.perf_counter()
    dz = (transducer.radius_of_curvature_m + 0.03 - z0) / 255
    apex = centre - 1e3 * transducer.radius_of_curvature_m * direction
    placement = ac.BeamPlacement.along(apex, direction, dx, dz, 256, 256, z0)
    beam = ac.patient_field(p0, placement, frequency, tables, state.grid, labels, water, heat_out=heat)
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, {"peak_mpa": float(beam.plane_max_pa.max()) * 1e-6, "absorbed_w": beam.absorbed_power_w,
                              "dx_mm": dx * 1e3, "dz_mm": dz * 1e3}  # fmt: skip


def plan_3cm(patient, centre: np.ndarray) -> tuple[float, dict[str, float]]:
    """The full plan on the phantom's 3 cm tumour (direction searched, lattice, bioheat with cooling)."""
    step = Step(therapy="hifu", device="hifu-jc-like-bowl", placement=Placement(tip_mm=tuple(centre)),
                protocol=dict(PLAN_PROTOCOL))  # fmt: skip
    context, state = _phantom_context(patient, step)
    t0 = time.perf_counter()
    _, result = hifu.apply(state, step, context)
    return time.perf_counter() - t0, result.metrics


# our configurations for the matched-error comparison, cheapest first: (λ/dx, points per plane side)
OURS_CONFIGS = ((2, 96), (2, 128), (3, 128), (4, 128), (4, 192), (4, 256))


def _oneil_axis_errors(z: np.ndarray, p: np.ndarray, window_m: tuple[float, float]) -> dict[str, float]:
    """Relative L2 of |p| against O'Neil over the window, and the peak (parabolic) against 17.135 MPa."""
    from insitu.validation.hifu_cases import KW, KW_PEAK_PA, _parabolic_peak

    ref = ac.oneil_axial_pa(z, KW["R"], KW["D"] / 2, KW["f"], KW["c"], KW["p0"])
    sel = (z >= window_m[0]) & (z <= window_m[1])
    peak, z_peak = _parabolic_peak(z, p)
    return {"l2": float(np.linalg.norm(p[sel] - ref[sel]) / np.linalg.norm(ref[sel])),
            "peak": abs(peak / KW_PEAK_PA - 1.0), "z_peak_mm": z_peak * 1e3}  # fmt: skip


PEER_PYTHON_ENV = "INSITU_PEER_PYTHON"  # the peers' interpreter; default: .venv-peers at the repository root


def _run_peer() -> dict | None:
    """HIFU-1 by k-wave-python, run by ``peer_kwave.py`` in the peers' own venv (k-wave-python pins numpy, scipy and
    matplotlib: it must not share insitu's). None, with the reason printed, when that venv is missing or fails."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    python = Path(os.environ.get(PEER_PYTHON_ENV, root / ".venv-peers" / "bin" / "python"))
    script = Path(__file__).resolve().with_name("peer_kwave.py")
    reason = ""
    if not python.exists():
        reason = f"no peers' interpreter at {python} (`make bench` builds .venv-peers with k-wave-python)"
    else:
        run = subprocess.run([str(python), str(script)], capture_output=True, text=True, check=False)
        lines = run.stdout.strip().splitlines()
        if run.returncode == 0 and lines:
            peer = json.loads(lines[-1])
            return {**peer, "z_m": np.asarray(peer["z_m"]), "p_pa": np.asarray(peer["p_pa"])}
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        reason = f"k-wave-python failed in {python} ({tail})"
    print(f"hifu: kwave_speed_ratio skipped — {reason}; the placeholders for its C++ binaries are written by "
          "peer_kwave.py, nothing is downloaded", file=sys.stderr)  # fmt: skip
    return None


def kwave_peer() -> dict[str, float]:
    """k-wave-python (NumPy backend, offline: see peer_kwave.py) against our Rayleigh → plane → ASM march on HIFU-1,
    both scored against O'Neil on the same stretch of axis; the ratio is peer seconds / our seconds for our cheapest
    configuration whose axial L2 error is at most the peer's. Nothing is returned when the peer is not importable."""
    from insitu.validation.hifu_cases import KW, SOURCE_STANDOFF_M, kw_axis

    peer = _run_peer()
    if peer is None:
        return {}
    wavelength = KW["c"] / KW["f"]
    depth = KW["R"] - math.sqrt(KW["R"] ** 2 - (KW["D"] / 2) ** 2)
    # from 2λ beyond our source plane (its evanescent near field) to the end of the peer's axis
    window = (depth + SOURCE_STANDOFF_M + 2 * wavelength, float(peer["z_m"].max()))
    peer_err = _oneil_axis_errors(peer["z_m"], peer["p_pa"], window)
    peer_s = peer["setup_s"] + peer["run_s"]
    kw_axis(2, 96)  # warm-up: numba compilation
    ours = []
    for frac, n in OURS_CONFIGS:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            z, p = kw_axis(frac, n)
            times.append(time.perf_counter() - t0)
        ours.append((frac, n, float(np.median(times)), _oneil_axis_errors(z, p, window)))
    matched = [o for o in ours if o[3]["l2"] <= peer_err["l2"]]
    frac, n, our_s, our_err = min(matched, key=lambda o: o[2]) if matched else min(ours, key=lambda o: o[3]["l2"])
    ratio = peer_s / our_s
    nx, ny, nz = peer["grid"]
    table = "; ".join(f"λ/{f} {m}²: {e['l2']:.2%} L2, {e['peak']:.2%} peak, {s * 1e3:.0f} ms" for f, m, s, e in ours)
    print(f"hifu: peer k-wave-python {peer['version']} NumPy backend (offline, placeholder C++ binaries), "
          f"HIFU-1 at {peer['ppw']} PPW (dx {peer['dx_m'] * 1e3:.2f} mm), {nx}×{ny}×{nz} with PML, {peer['nt']} steps: "
          f"axial L2 {peer_err['l2']:.2%} over z = {window[0] * 1e3:.1f}–{window[1] * 1e3:.1f} mm, peak "
          f"{peer_err['peak']:.2%} (at {peer_err['z_peak_mm']:.2f} mm), {peer_s:.1f} s ({peer['setup_s']:.1f} s set-up "
          f"+ {peer['run_s']:.1f} s run). Ours (Rayleigh → plane → ASM, dz λ/4): {table}. "
          f"{'Matched' if matched else 'NOT matched (best shown)'}: λ/{frac} {n}², L2 {our_err['l2']:.2%}, peak "
          f"{our_err['peak']:.2%}, {our_s * 1e3:.0f} ms → kwave_speed_ratio {ratio:.0f}× (target ≥ 100×)",
          file=sys.stderr)  # fmt: skip
    return {"kwave_speed_ratio": ratio, "kwave_peer_s": peer_s, "kwave_peer_l2": peer_err["l2"],
            "kwave_peer_peak_err": peer_err["peak"], "kwave_peer_ppw": float(peer["ppw"]), "kwave_ours_s": our_s,
            "kwave_ours_l2": our_err["l2"], "kwave_ours_peak_err": our_err["peak"],
            "kwave_matched": float(bool(matched))}  # fmt: skip


def bench_hifu() -> dict[str, float]:
    patient = make_phantom(PhantomSpec(spacing_mm=1.0))
    tumour = patient.targets[0].mask
    centre = patient.grid.index_to_world(np.argwhere(tumour)[:, ::-1].mean(axis=0))
    direction = np.array([0.6914, 0.7208, -0.0483])  # the window the 2 mm search found (see the plan figures)
    direction /= np.linalg.norm(direction)
    field_256(patient, direction, centre)  # warm-up: numba compilation
    runs = [field_256(patient, direction, centre) for _ in range(3)]
    total = float(np.median([r[0] for r in runs]))
    march = float(np.median([r[1] for r in runs]))
    figures = runs[0][2]
    plan_s, m = plan_3cm(patient, centre)
    print(
        f"hifu: one focus 256²×256 planes ({figures['dx_mm']:.2f} × {figures['dz_mm']:.2f} mm) in {total:.2f} s "
        f"(march {march:.2f} s; target 2 s: {total / 2.0:.2f}×), peak {figures['peak_mpa']:.1f} MPa, "
        f"{figures['absorbed_w']:.0f} W absorbed of 100 W. Plan for the 3 cm tumour: {plan_s:.1f} s (target 120 s: "
        f"{plan_s / 120.0:.2f}×), {m['foci']:.0f} foci, beam {m['beam_direction_x']:.2f}, {m['beam_direction_y']:.2f}, "
        f"{m['beam_direction_z']:.2f}, rib share {m['window_rib_fraction_max']:.0%}, lesion {m['lesion_volume_ml']:.1f}"
        f" mL, coverage {m['target_coverage']:.0%}, focus peaks {m['focus_peak_temperature_c_min']:.0f}–"
        f"{m['focus_peak_temperature_c_max']:.0f} °C, rib {m['rib_peak_temperature_c']:.1f} °C, skin "
        f"{m['skin_peak_temperature_c']:.1f} °C",
        file=sys.stderr,
    )
    out = {"hifu_field_256_s": total, "hifu_field_256_march_s": march, "hifu_plan_3cm_s": plan_s,
           "hifu_plan_3cm_foci": m["foci"], "hifu_plan_3cm_coverage": m["target_coverage"]}  # fmt: skip
    if os.environ.get("HIFU_BENCH_PEER", "1") != "0":
        out.update(kwave_peer())
    return out


if __name__ == "__main__":
    for key, value in bench_hifu().items():
        print(f"{key:32s} {value:10.4g}")
