"""Bioheat benchmarks: kernel throughput against the triad roofline, a 10-min run, and FiPy at matched error.

Figures (medians after a warm-up, all measured in one process so the ratios are meaningful):

- ``bioheat_triad_gb_s``: a numba-parallel triad ``a = b + s·c`` (12 bytes per element, the STREAM
  convention: no write-allocate traffic counted) on 64 MiB arrays.
- ``bioheat_gupdates_s``: voxel-updates per second of the explicit Pennes step at 128³
  (heterogeneous medium, perfusion, a source), DESIGN.md's anchor.
- ``bioheat_gupdates_s_with_peak``: the step as ``advance`` runs it mid-treatment, peak tracking on,
  timed on the state reached after 300 s of the 10-minute run below (so the warming region is real).
- ``bioheat_roofline_fraction``: bytes moved per voxel-update × updates/s ÷ triad bandwidth. Count
  (same convention as the triad): reads T, gi, gj, gk (face conductances), 1/(ρc), w (perfusion) =
  6 × 4 B, writes T' = 4 B, plus Q (4 B) on the rows where the source is nonzero
  (``bioheat_source_row_fraction``; the kernel skips the others). With peak tracking, add the peak
  row read and written (8 B) on the rows where some voxel rises above the row's lowest peak
  (``bioheat_peak_row_fraction``). The six neighbours' T come from cache.
- ``bioheat_10min_128_s``: 600 s of simulated time at 128³, 1 mm, perfused liver with a 20 W
  source, at the automatic stable step (≈ 1.09 s, 549 steps), peak tracking on.
- ``fipy_speed_ratio``: FiPy 4 (Crank–Nicolson, the same cell-centred finite volumes, preconditioned CG
  at 1e-8) on V2 (the transient
  Pennes Green's function, perfused) on the same grid; FiPy's step is the largest of a ladder whose
  max-norm error against the exact solution is no larger than ours; ratio = FiPy time / our time.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from insitu.physics import bioheat_verification as bv
from insitu.physics.bioheat import BioheatSolver, ThermalMedium

BASE_BYTES_PER_UPDATE = 28  # T, gi, gj, gk, 1/(ρc), w read; T' written; see the module docstring
SOURCE_BYTES_PER_UPDATE = 4  # Q, on the rows where it is nonzero
PEAK_BYTES_PER_UPDATE = 8  # peak read + write, on the warming rows only
LIVER_PERFUSION_1_S = 6.4e-3  # thermal.md §2.1 (Tungjitkusolmun 2002) [R]


@numba.njit(parallel=True, cache=True)
def _triad(a, b, c, s):  # pragma: no cover
    for i in numba.prange(a.size):
        a[i] = b[i] + s * c[i]


def _median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def triad_gb_s(n: int = 1 << 24) -> float:
    """Triad bandwidth in GB/s (12 bytes per element)."""
    a = np.zeros(n, np.float32)
    b = np.ones(n, np.float32)
    c = np.ones(n, np.float32)
    s = np.float32(0.5)
    t = _median_time(lambda: _triad(a, b, c, s), repeats=20, warmup=2)
    return 12.0 * n / t / 1e9


def liver_128(n: int = 128, spacing_m: float = 1e-3) -> tuple[ThermalMedium, np.ndarray]:
    """Perfused liver (thermal.md §2.1) with a 30 mm hypervascular tumour (k 0.55, ω × 2) and a 20 W source.

    The kernel streams per-voxel arrays whatever their values, so this costs what a patient does.
    """
    shape = (n, n, n)
    idx = (np.arange(n) - n / 2 + 0.5) * spacing_m
    z, y, x = np.meshgrid(idx, idx, idx, indexing="ij")
    tumour = (x - 5e-3) ** 2 + y * y + z * z < (15e-3) ** 2
    k = np.where(tumour, 0.55, 0.52).astype(np.float32)
    perfusion = np.where(tumour, 2 * LIVER_PERFUSION_1_S, LIVER_PERFUSION_1_S).astype(np.float32)
    full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
    medium = ThermalMedium(k, full(1079.0), full(3540.0), perfusion, (spacing_m,) * 3)
    q = np.exp(-(x * x + y * y) / (3e-3) ** 2 - z * z / (8e-3) ** 2)
    q *= 20.0 / (q.sum() * spacing_m**3)
    return medium, q.astype(np.float32)


def _fipy_v2(h_m: float, half_m: float, t0: float, t1: float, w: float, dt: float) -> tuple[float, float]:
    """FiPy run of V2; returns (wall seconds, max-norm error relative to the exact peak)."""
    import fipy as fp

    k, rc = bv.LIVER_K, bv.LIVER_RHO * bv.LIVER_C
    n = 2 * round(half_m / h_m) + 1
    mesh = fp.Grid3D(dx=h_m, dy=h_m, dz=h_m, nx=n, ny=n, nz=n) + ((-half_m - h_m / 2,),) * 3
    x, y, z = (np.asarray(v) for v in mesh.cellCenters)
    r = np.sqrt(x * x + y * y + z * z)
    theta = fp.CellVariable(mesh=mesh, value=bv.green_exact(r, t0, bv.GREEN_ENERGY_J, k, rc, w))
    # Crank–Nicolson (FiPy's TransientTerm alone is implicit Euler, whose first-order error needs ~10×
    # more steps to reach our error here): half implicit, half explicit diffusion and perfusion
    eq = fp.TransientTerm(coeff=rc) == (
        0.5 * fp.DiffusionTerm(coeff=k)
        + 0.5 * fp.ExplicitDiffusionTerm(coeff=k)
        - fp.ImplicitSourceTerm(coeff=0.5 * w)
        - 0.5 * w * theta
    )
    # FiPy's default here is a sparse LU (≈ 15× slower at this size); preconditioned CG is its best choice
    solver = fp.LinearPCGSolver(tolerance=1e-8, iterations=2000)
    steps = max(1, round((t1 - t0) / dt))
    start = time.perf_counter()
    for _ in range(steps):
        eq.solve(var=theta, dt=(t1 - t0) / steps, solver=solver)
    wall = time.perf_counter() - start
    exact = bv.green_exact(r, t1, bv.GREEN_ENERGY_J, k, rc, w)
    return wall, float(np.max(np.abs(np.asarray(theta.value) - exact)) / exact.max())


def _ours_v2(h_m: float, half_m: float, t0: float, t1: float, w: float) -> tuple[float, float]:
    k, rc = bv.LIVER_K, bv.LIVER_RHO * bv.LIVER_C
    axis = (np.arange(-round(half_m / h_m), round(half_m / h_m) + 1)) * h_m
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    medium = ThermalMedium.uniform(r.shape, h_m, k, bv.LIVER_RHO, bv.LIVER_C, w / bv.BLOOD_RHO_C)
    solver = BioheatSolver(medium)
    start_field = (37.0 + bv.green_exact(r, t0, bv.GREEN_ENERGY_J, k, rc, w)).astype(np.float32)
    T = start_field.copy()

    def run() -> None:
        T[...] = start_field
        solver.advance(T, t1 - t0)

    wall = _median_time(run, repeats=5)
    exact = bv.green_exact(r, t1, bv.GREEN_ENERGY_J, k, rc, w)
    return wall, float(np.max(np.abs(T.astype(np.float64) - 37.0 - exact)) / exact.max())


def fipy_speed_ratio(h_m: float = 0.5e-3, half_m: float = 16e-3, t0: float = 10.0, t1: float = 40.0) -> dict:
    """FiPy time / our time on V2 (perfused) at matched max-norm error; {} with a reason when FiPy is absent."""
    try:
        import fipy  # noqa: F401
    except Exception as exc:  # FiPy is an optional peer (dev extra)
        print(f"fipy_speed_ratio: FiPy not importable ({exc}); figure left out", file=sys.stderr)
        return {}
    w = bv.V1_W
    ours_s, ours_err = _ours_v2(h_m, half_m, t0, t1, w)
    fipy_s, fipy_err, fipy_dt = math.nan, math.nan, math.nan
    for dt in (15.0, 10.0, 7.5, 6.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.75):
        wall, err = _fipy_v2(h_m, half_m, t0, t1, w, dt)
        print(f"  fipy dt {dt:5.2f} s: {wall:7.2f} s, error {err:.3e} (ours {ours_err:.3e})", file=sys.stderr)
        if err <= ours_err:
            fipy_s, fipy_err, fipy_dt = wall, err, dt
            break
    if not math.isfinite(fipy_s):
        return {"fipy_error_unmatched": 1.0}
    return {
        "fipy_speed_ratio": fipy_s / ours_s,
        "fipy_v2_s": fipy_s,
        "fipy_v2_dt_s": fipy_dt,
        "fipy_v2_error": fipy_err,
        "bioheat_v2_s": ours_s,
        "bioheat_v2_error": ours_err,
    }


def bench_bioheat(with_fipy: bool = True) -> dict[str, float]:
    """All bioheat figures (see the module docstring); prints ratios to the roofline and targets."""
    triad = triad_gb_s()
    medium, q = liver_128()
    solver = BioheatSolver(medium)
    T = np.full(medium.shape, 37.0, np.float32)
    peak = T.copy()
    dt = solver.stable_time_step_s()
    out_buf = np.empty_like(T)

    def one_step() -> None:
        solver._kernel(T, out_buf, dt, q, peak)  # the step advance() runs, without the buffer swap

    def one_step_no_peak() -> None:
        solver._kernel(T, out_buf, dt, q, None)

    source_rows = float(np.mean(np.any(q != 0, axis=2)))
    solver._prepare_source(q)
    bare_s = _median_time(one_step_no_peak, repeats=100, warmup=5)
    updates = T.size / bare_s
    bytes_per_update = BASE_BYTES_PER_UPDATE + SOURCE_BYTES_PER_UPDATE * source_rows
    fraction = bytes_per_update * updates / (triad * 1e9)

    # the step as it runs mid-treatment: after 300 s of heating (peak tracked from the start)
    T[...] = 37.0
    run = solver.advance(T, 300.0, source_w_m3=q)
    peak[...] = run.peak_temperature_c
    solver._track_peak(peak)
    solver._prepare_source(q)
    out_buf[...] = T
    solver._kernel(T, out_buf, dt, q, peak)
    warming_rows = float(np.mean(out_buf.max(axis=2) > peak.min(axis=2)))  # rows the kernel updates the peak of
    peak_s = _median_time(one_step, repeats=100, warmup=5)
    peak_updates = T.size / peak_s
    peak_bytes = bytes_per_update + PEAK_BYTES_PER_UPDATE * warming_rows
    peak_fraction = peak_bytes * peak_updates / (triad * 1e9)

    def ten_minutes() -> None:
        T[...] = 37.0
        solver.advance(T, 600.0, source_w_m3=q)

    ten_min_s = _median_time(ten_minutes, repeats=3, warmup=1)
    steps = math.ceil(600.0 / dt - 1e-9)
    figures = {
        "bioheat_triad_gb_s": triad,
        "bioheat_gupdates_s": updates / 1e9,
        "bioheat_roofline_fraction": fraction,
        "bioheat_bytes_per_update": bytes_per_update,
        "bioheat_source_row_fraction": source_rows,
        "bioheat_gupdates_s_with_peak": peak_updates / 1e9,
        "bioheat_roofline_fraction_with_peak": peak_fraction,
        "bioheat_peak_row_fraction": warming_rows,
        "bioheat_10min_128_s": ten_min_s,
        "bioheat_10min_128_steps": float(steps),
    }
    print(
        f"bioheat: triad {triad:.1f} GB/s; Pennes step {bare_s * 1e3:.3f} ms at 128³ = {updates / 1e9:.2f} G updates/s "
        f"(target 1.6: {updates / 1.6e9:.2f}×); {bytes_per_update:.1f} B/update "
        f"({source_rows:.0%} of rows with source) "
        f"→ {fraction:.2f} of the triad roofline; with peak tracking mid-run {peak_updates / 1e9:.2f} G updates/s, "
        f"{peak_bytes:.1f} B/update ({warming_rows:.0%} of rows warming) → {peak_fraction:.2f} of the roofline; "
        f"10 min at 128³ in {ten_min_s:.3f} s ({steps} steps of {dt:.3f} s; target 1.0 s: {ten_min_s:.2f}×)",
        file=sys.stderr,
    )
    if with_fipy:
        fig = fipy_speed_ratio()
        figures.update(fig)
        if "fipy_speed_ratio" in fig:
            print(
                f"bioheat: FiPy {fig['fipy_v2_s']:.2f} s vs ours {fig['bioheat_v2_s']:.3f} s at matched error "
                f"({fig['fipy_v2_error']:.2e} ≤ {fig['bioheat_v2_error']:.2e}): ratio {fig['fipy_speed_ratio']:.0f} "
                f"(target ≥ 50: {fig['fipy_speed_ratio'] / 50:.2f}×)",
                file=sys.stderr,
            )
    return figures


if __name__ == "__main__":
    for key, value in bench_bioheat(with_fipy="--no-fipy" not in sys.argv).items():
        print(f"{key:28s} {value:10.4g}")
