"""Published RF ablation zones (thermal.md §8): the same setups as ``make validate`` (validation/rfa_cases.py),
asserted at the published tolerance. 12-minute runs at 1 mm, about half a minute each on 2 cores."""

from __future__ import annotations

import pytest

from insitu.validation import rfa_cases as rc


def _within(value: float, reference: float, rel: float) -> bool:
    return abs(value - reference) <= rel * reference


def test_v7_ex_vivo_cooled_2cm_zone_within_ten_percent():
    """Lee 2009 ex vivo bovine: 30.1 × 26.2 mm, 11.08 mL (CV 10 %). Measured here: 30.2 × 25.3 mm; the ellipsoid of
    the three diameters 10.05 mL (voxel count 10.6 mL)."""
    metrics = rc.run_block(rc.v7_setup(), damage_model=rc.WHITE_ZONE_CRITERION).metrics
    (lad, sad, volume), rel, _ = rc.V7_PUBLISHED
    assert _within(metrics["long_axis_mm"], lad, rel), metrics
    assert _within(metrics["short_axis_mm"], sad, rel), metrics
    assert _within(metrics["ellipsoid_volume_ml"], volume, rel), metrics
    assert metrics["rolloffs"] >= 1  # the impedance controller did roll off and resume
    assert metrics["deposited_energy_j"] == pytest.approx(metrics["electric_box_energy_j"], rel=1e-5)


def test_v6_in_vivo_cooled_2cm_zone_within_fifteen_percent():
    """Lee 2009 in vivo porcine: 26.2 × 20.0 mm, 5.76 mL (CV 15 %). Measured here: 28.5 × 20.4 mm; the ellipsoid of
    the three diameters 6.2 mL (+7.5 %; the voxel count, 6.7 mL, is fuller than the ellipsoid, as a cooled electrode's
    cylinder-like zone is)."""
    metrics = rc.run_block(rc.v6_setup(), damage_model=rc.WHITE_ZONE_CRITERION).metrics
    (lad, sad, volume), rel, _ = rc.V6_PUBLISHED
    assert _within(metrics["long_axis_mm"], lad, rel), metrics
    assert _within(metrics["short_axis_mm"], sad, rel), metrics
    assert _within(metrics["ellipsoid_volume_ml"], volume, rel), metrics
    # perfusion shrinks the zone against the same electrode ex vivo
    assert metrics["zone_volume_ml"] < rc.V7_PUBLISHED[0][2]
