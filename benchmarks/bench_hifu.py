"""HIFU benchmarks (issue 7): ``hifu_field_256_s`` — one focus of the JC-like bowl at 1.2 MHz through the phantom,
256 × 256 points per plane × 256 planes (target ≤ 2 s on 2 cores), source plane included; ``hifu_plan_3cm_s`` — a
full sonication plan (window search, focus lattice, every field, bioheat with cooling) for the phantom's 3 cm tumour
at 1 mm (target ≤ 120 s); and the peer ``kwave_speed_ratio`` on the O'Neil case when k-wave-python is importable
offline (it downloads C++ binaries on import, so it usually is not: the reason is printed and the figure skipped)."""

from __future__ import annotations

import math
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


def kwave_peer() -> dict[str, float]:
    """The peer, only if k-wave-python imports offline; otherwise the reason is printed and nothing is returned."""
    try:
        import kwave  # noqa: F401
    except Exception as exc:  # ImportError, or URLError while it fetches its binaries on import
        print(f"hifu: kwave_speed_ratio skipped — k-wave-python is not importable offline here ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}); install the bench extra and provide its binaries "
              "(hifu.md §5) to measure it", file=sys.stderr)  # fmt: skip
        return {}
    print("hifu: k-wave-python imports, but the O'Neil peer run is not implemented yet — skipped", file=sys.stderr)
    return {}


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
    out.update(kwave_peer())
    return out


if __name__ == "__main__":
    for key, value in bench_hifu().items():
        print(f"{key:32s} {value:10.4g}")
