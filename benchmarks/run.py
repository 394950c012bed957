"""``make bench``: run every benchmark, print each figure with its ratio, write results.json.

Figures are medians after a warm-up; each is printed with the ratio DESIGN.md asks for (to the
memory-bandwidth roofline, to a peer run in the same process, or to its target budget), because
single timings on these shared machines drift.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bioheat import bench_bioheat
from bench_cryo import bench_cryo
from bench_hifu import bench_hifu
from bench_multigrid import bench_multigrid
from bench_mwa import bench_mwa
from bench_phantom import bench_demo, bench_phantom
from bench_rfa import bench_rfa
from bench_vascular import bench_cco_4000, bench_flow_1e5

# name → (function, target, "lower is better" description); targets come from the issues.
BENCHMARKS = [
    (
        "phantom_s",
        bench_phantom,
        30.0,
        "phantom at default settings, target ≤ 30 s on 2 cores (issue 2)",
    ),
    ("cco_4000_s", bench_cco_4000, 60.0, "one CCO tree with 4000 terminals in a liver; target ≤ 60 s (issue 8)"),
    (
        "flow_1e5_s",
        bench_flow_1e5,
        0.5,
        "Poiseuille + Fåhræus–Lindqvist solve on 1e5 segments; target ≤ 0.5 s (issue 8); ratio: generic spsolve",
    ),
    ("demo_s", bench_demo, None, "insitu demo end to end"),
    ("multigrid_128_s", bench_multigrid, 0.25, "variable-coefficient elliptic solve at 128³ to 1e-6; target ≤ 0.25 s"),
    ("bioheat_10min_128_s", bench_bioheat, 1.0, "Pennes 10 min at 128³, 1 mm; target ≤ 1 s (issue 3)"),
    ("rfa_12min_128_s", bench_rfa, 15.0, "12-min impedance-controlled RFA at 128³, 1 mm; target ≤ 15 s (issue 4)"),
    ("mwa_10min_128_s", bench_mwa, 20.0, "10-min 100 W cooled 2.45 GHz MWA at 128³, 1 mm; target ≤ 20 s (issue 5)"),
    ("cryo_4probe_128_s", bench_cryo, 30.0, "4-probe cryo 10-5-10 min at 128³, 1 mm; target ≤ 30 s (issue 6)"),
    (
        "hifu_field_256_s",
        bench_hifu,
        2.0,
        "one HIFU focus, 256² × 256 planes through the phantom incl. source plane; target ≤ 2 s (issue 7)",
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--only", default="", help="comma-separated figure names")
    args = parser.parse_args(argv)
    wanted = {n for n in args.only.split(",") if n}
    results: dict[str, float] = {}
    if args.out.exists():
        results.update(json.loads(args.out.read_text()))
    for name, function, target, what in BENCHMARKS:
        if wanted and name not in wanted:
            continue
        t0 = time.perf_counter()
        figures = function()
        for key, value in figures.items():
            results[key] = value
            ratio = f"  ({value / target:.2f} × target {target:g})" if key == name and target else ""
            print(f"{key:28s} {value:10.4g}{ratio}   [{what}]")
        print(f"  ran in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
