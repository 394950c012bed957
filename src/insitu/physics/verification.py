"""The row format physics modules use to hand verification results to ``make validate``."""

from __future__ import annotations

from typing import Any


def verification_row(
    case_id: str, quantity: str, simulated: float, reference: float, tolerance_rel: float, source: str
) -> dict[str, Any]:
    """{id, quantity, simulated, reference, tolerance_rel, source}: one compared quantity."""
    return {
        "id": case_id,
        "quantity": quantity,
        "simulated": float(simulated),
        "reference": float(reference),
        "tolerance_rel": float(tolerance_rel),
        "source": source,
    }
