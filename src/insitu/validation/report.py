"""Rows of the validation report and the markdown table DESIGN.md prescribes."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One compared quantity: ``| id | quantity | simulated | reference | tolerance | PASS or FAIL |``."""

    case_id: str
    quantity: str
    simulated: float
    reference: str
    tolerance: str
    passed: bool
    source: str = ""

    @classmethod
    def within(
        cls,
        case_id: str,
        quantity: str,
        simulated: float,
        reference: float,
        rel: float,
        source: str = "",
    ) -> Row:
        """PASS when |simulated − reference| ≤ rel·|reference|."""
        ok = math.isfinite(simulated) and abs(simulated - reference) <= rel * abs(reference)
        return cls(case_id, quantity, simulated, f"{reference:.6g}", f"±{rel:.3g} rel", ok, source)

    @classmethod
    def in_range(
        cls,
        case_id: str,
        quantity: str,
        simulated: float,
        low: float,
        high: float,
        source: str = "",
    ) -> Row:
        """PASS when low ≤ simulated ≤ high."""
        ok = math.isfinite(simulated) and low <= simulated <= high
        return cls(case_id, quantity, simulated, f"{low:g}–{high:g}", "inside range", ok, source)

    @classmethod
    def below(cls, case_id: str, quantity: str, simulated: float, limit: float, source: str = "") -> Row:
        ok = math.isfinite(simulated) and simulated < limit
        return cls(case_id, quantity, simulated, f"< {limit:g}", "upper bound", ok, source)


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _cell(text: str) -> str:
    """Markdown table cells cannot hold a bare pipe."""
    return str(text).replace("|", "\\|")


def render_report(rows: list[Row], header: str = "") -> str:
    """The markdown report: one table row per quantity, then the sources."""
    lines = [
        "# insitu validation report",
        "",
        header,
        "",
        "| id | quantity | simulated | reference | tolerance | PASS or FAIL |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {_cell(row.case_id)} | {_cell(row.quantity)} | {_fmt(row.simulated)} | {_cell(row.reference)} | "
            f"{_cell(row.tolerance)} | "
            f"{'PASS' if row.passed else 'FAIL'} |"
        )
    passed = sum(r.passed for r in rows)
    lines += ["", f"{passed} passed, {len(rows) - passed} failed", "", "## Sources", ""]
    seen: list[str] = []
    for row in rows:
        if row.source and (row.case_id, row.source) not in seen:
            seen.append((row.case_id, row.source))
            lines.append(f"- {row.case_id}: {row.source}")
    return "\n".join(lines) + "\n"
