"""Vessel trees: graphs with radii, rasterisation, and constrained constructive optimization."""

from insitu.vascular.generate import TreeSpec, generate_trees, load_anatomy
from insitu.vascular.tree import VesselKind, VesselTree

__all__ = ["TreeSpec", "VesselKind", "VesselTree", "generate_trees", "load_anatomy"]
