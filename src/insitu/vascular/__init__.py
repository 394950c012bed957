"""Vessel trees: graphs with radii, extraction from masks, CCO generation, flow, territories, embolization,
pharmacokinetics and the future liver remnant. Heavy modules are imported where they are used."""

from insitu.vascular.balance import balance_radii
from insitu.vascular.flow import FlowSolution, solve_flow
from insitu.vascular.generate import TreeSpec, generate_trees, load_anatomy
from insitu.vascular.territories import Territories, assign_territories, perfusion_map_per_s
from insitu.vascular.tree import VesselKind, VesselTree

__all__ = [
    "FlowSolution",
    "Territories",
    "TreeSpec",
    "VesselKind",
    "VesselTree",
    "assign_territories",
    "balance_radii",
    "generate_trees",
    "load_anatomy",
    "perfusion_map_per_s",
    "solve_flow",
]
