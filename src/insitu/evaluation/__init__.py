"""Outcome metrics a plan is judged by: coverage, margins, tissue lost, organs at risk, volume histograms.

``evaluate(outcome)`` measures a simulated Outcome per step and for the whole treatment; the functions below it
work on plain masks and volumes (numpy in, numpy out) for planners and reports that have no Outcome.
"""

from insitu.evaluation.coverage import coverage_fraction, margin_coverage, margin_region, overlap_ml
from insitu.evaluation.histograms import VolumeHistogram, cumulative_fraction, value_at_fraction, volume_histogram
from insitu.evaluation.margin import margin_map_mm, minimal_margin_mm, minimal_margin_point_mm
from insitu.evaluation.outcome import Evaluation, StepEvaluation, ZoneMetrics, evaluate, zone_metrics
from insitu.evaluation.surface import distance_to_points_mm, surface_points_mm

__all__ = [
    "Evaluation",
    "StepEvaluation",
    "VolumeHistogram",
    "ZoneMetrics",
    "coverage_fraction",
    "cumulative_fraction",
    "distance_to_points_mm",
    "evaluate",
    "margin_coverage",
    "margin_map_mm",
    "margin_region",
    "minimal_margin_mm",
    "minimal_margin_point_mm",
    "overlap_ml",
    "surface_points_mm",
    "value_at_fraction",
    "volume_histogram",
    "zone_metrics",
]
