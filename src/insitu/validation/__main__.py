"""``python -m insitu.validation --out validation/REPORT.md``: run every case and write the report."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from insitu.io.atomic import atomic_file
from insitu.validation.cases import CASES
from insitu.validation.report import render_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("validation/REPORT.md"))
    parser.add_argument("--only", default="", help="run only cases whose id starts with this")
    args = parser.parse_args(argv)
    rows = []
    for case in CASES:
        if args.only and not case.__name__.upper().replace("_", "-").startswith(args.only.upper()):
            continue
        t0 = time.perf_counter()
        case_rows = case()
        print(
            f"{case.__name__}: {len(case_rows)} rows, {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        for row in case_rows:
            print(f"  {row.case_id:10s} {row.quantity:55s} {row.simulated:.6g}  {'PASS' if row.passed else 'FAIL'}")
        rows.extend(case_rows)
    header = (
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"(Python {platform.python_version()})."
    )
    with atomic_file(args.out) as tmp:
        tmp.write_text(render_report(rows, header), encoding="utf-8")
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed → {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
