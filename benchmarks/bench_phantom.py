"""Phantom and demo timings."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bench_phantom(repeats: int = 3) -> dict[str, float]:
    """Median build time of the default phantom (1 mm, ~300×220×200 mm), after a warm-up build."""
    from insitu.patient.phantom import PhantomSpec, make_phantom

    make_phantom(PhantomSpec(spacing_mm=3.0))  # warm-up: numba compilation, imports
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        make_phantom(PhantomSpec(seed=seed))
        times.append(time.perf_counter() - t0)
    return {"phantom_s": statistics.median(times)}


def bench_demo() -> dict[str, float]:
    """Wall time of ``insitu demo`` in a fresh process (imports, JIT cache, phantom, files, figure)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "insitu.cli", "demo", "--out", str(Path(tmp) / "demo")],
            check=True,
            capture_output=True,
        )
        return {"demo_s": time.perf_counter() - t0}
