"""Cumulative volume histograms of a structure (the DVH of radiotherapy, for temperature and thermal damage).

For each threshold, the share of the structure's volume whose value reaches it: at least the threshold for heat
(peak temperature, Arrhenius Ω, CEM43 minutes), at most it for cold (the lowest temperature of a freeze). A curve
that stays at 1 up to the lethal threshold means the whole structure got a lethal dose; an organ at risk's curve
should fall to 0 before it. ``value_at_fraction`` reads the curve the other way (the temperature reached by the
hottest 90 % of a tumour, T90, like a radiotherapy D90).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insitu.errors import StructureError

AT_LEAST = "at_least"
AT_MOST = "at_most"


@dataclass(frozen=True)
class HistogramSpec:
    """Which thresholds a quantity is binned at, its unit, and whether it counts upward (heat) or downward (cold)."""

    unit: str
    thresholds: np.ndarray
    direction: str = AT_LEAST


def _log_thresholds(low_exponent: float, high_exponent: float) -> np.ndarray:
    return 10.0 ** np.round(np.arange(low_exponent, high_exponent + 1e-9, 0.1), 1)


# damage and temperature fields a TissueState or a step may hold (physics/damage.py names), by name or prefix
SPECS: dict[str, HistogramSpec] = {
    "max_temperature_c": HistogramSpec("°C", np.arange(37.0, 121.0, 1.0)),
    "min_temperature_c": HistogramSpec("°C", np.arange(36.0, -61.0, -2.0), AT_MOST),
    "arrhenius_omega_": HistogramSpec("Ω", _log_thresholds(-2.0, 3.0)),
    "cem43_min": HistogramSpec("min", _log_thresholds(-1.0, 5.0)),
    "chemical_omega": HistogramSpec("Ω", _log_thresholds(-2.0, 3.0)),
    "three_state_dead": HistogramSpec("fraction", np.round(np.arange(0.0, 1.0 + 1e-9, 0.05), 2)),
}


def spec_for(name: str) -> HistogramSpec | None:
    """The binning of a field named ``name`` (exact name, or a prefix such as ``arrhenius_omega_``); None if unknown."""
    if name in SPECS:
        return SPECS[name]
    for prefix, spec in SPECS.items():
        if prefix.endswith("_") and name.startswith(prefix):
            return spec
    return None


def _values_in(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    mask = np.asarray(mask, dtype=bool)
    if values.shape != mask.shape:
        raise StructureError(f"values have shape {values.shape}, the mask {mask.shape}", "give both on one grid")
    inside = values[mask].astype(np.float64)
    if inside.size == 0:
        raise StructureError("a histogram of an empty structure (0 voxels)", "check the structure's mask")
    return inside


def cumulative_fraction(
    values: np.ndarray, mask: np.ndarray, thresholds: np.ndarray, direction: str = AT_LEAST
) -> np.ndarray:
    """Share (0–1) of ``mask``'s voxels whose value is ≥ each threshold (``at_least``) or ≤ it (``at_most``).
    NaN values (never reached) count as below every threshold for ``at_least`` and above for ``at_most``."""
    if direction not in (AT_LEAST, AT_MOST):
        raise StructureError(f"unknown histogram direction {direction!r}", f"use {AT_LEAST} or {AT_MOST}")
    inside = _values_in(values, mask)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    order = np.argsort(thresholds)
    ascending = thresholds[order]
    finite = inside[~np.isnan(inside)]
    # bin by the sorted thresholds (O(n log m), no sort of the values): counts below, between and above them
    if direction == AT_LEAST:
        below = np.searchsorted(ascending, finite, side="right")  # thresholds ≤ value
        reached = np.cumsum(np.bincount(below, minlength=ascending.size + 1)[::-1])[::-1][1:]
    else:
        above = np.searchsorted(ascending, finite, side="left")  # thresholds < value
        reached = np.cumsum(np.bincount(above, minlength=ascending.size + 1))[:-1]
    fraction = np.empty(ascending.size)
    fraction[order] = reached / inside.size
    return fraction


def value_at_fraction(values: np.ndarray, mask: np.ndarray, fraction: float, direction: str = AT_LEAST) -> float:
    """The value reached by at least ``fraction`` of ``mask``'s volume: for ``at_least`` the largest v with
    share(value ≥ v) ≥ fraction (T90 for fraction 0.9); for ``at_most`` the smallest v with share(value ≤ v) ≥ it."""
    if not 0.0 < fraction <= 1.0:
        raise StructureError(f"volume fraction {fraction} is outside (0, 1]", "give e.g. 0.9 for T90")
    inside = _values_in(values, mask)
    fill = -np.inf if direction == AT_LEAST else np.inf
    inside = np.where(np.isnan(inside), fill, inside)
    n = inside.size
    rank = int(np.ceil(fraction * n - 1e-9))  # this many voxels must reach the value
    position = n - rank if direction == AT_LEAST else rank - 1
    return float(np.partition(inside, position)[position])


@dataclass(frozen=True)
class VolumeHistogram:
    """One structure's cumulative histogram of one quantity."""

    quantity: str
    unit: str
    direction: str
    thresholds: np.ndarray
    fraction: np.ndarray
    volume_ml: float
    at_90_percent: float  # value reached by 90 % of the volume (T90-like)

    def summary(self) -> dict:
        return {
            "unit": self.unit,
            "direction": self.direction,
            "volume_ml": round(self.volume_ml, 4),
            "at_90_percent": _json_number(self.at_90_percent),
            "thresholds": [_json_number(v) for v in self.thresholds],
            "fraction": [round(float(v), 4) for v in self.fraction],
        }


def _json_number(value: float) -> float | None:
    value = float(value)
    return float(f"{value:.6g}") if np.isfinite(value) else None


def volume_histogram(
    quantity: str, values: np.ndarray, mask: np.ndarray, voxel_volume_ml: float, spec: HistogramSpec | None = None
) -> VolumeHistogram:
    """The cumulative histogram of ``values`` over ``mask``, binned by ``spec`` (default: :data:`SPECS`)."""
    spec = spec or spec_for(quantity)
    if spec is None:
        raise StructureError(f"no histogram binning for {quantity!r}", f"use one of {', '.join(SPECS)}")
    fraction = cumulative_fraction(values, mask, spec.thresholds, spec.direction)
    volume = float(np.count_nonzero(mask)) * voxel_volume_ml
    at_90 = value_at_fraction(values, mask, 0.9, spec.direction)
    return VolumeHistogram(quantity, spec.unit, spec.direction, spec.thresholds.copy(), fraction, volume, at_90)
