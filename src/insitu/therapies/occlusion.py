"""Hepatic inflow occlusion during an ablation: balloon occlusion of the hepatic artery or the portal vein, or the
Pringle manoeuvre (both, by clamping the hepatoduodenal ligament).

Occlusion stops the blood the liver receives from the occluded supply for the step's duration: the Pennes perfusion
of hepatic tissue loses that component (the tissue state keeps it: flow returns when the balloon or clamp is
released), and the large vessels that carry it stop being heat sinks (no flow, no convective wall exchange). The
Pringle manoeuvre stops the hepatic veins' outflow too (no inflow). Bigger zones follow from the physics — thermal.md
§4.2: Pringle enlarged RF zones next to the portal vein in pigs (10.8 ± 5.0 vs 4.1 ± 4.1 cm³) [S58].
Hepatic tissues are the liver and the tumours that grow in it (tissue library names); vessels are recognised by
their SNOMED CT code (patient/terminology.yaml), then by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from insitu.patient.structure import Role, Structure
from insitu.patient.terminology import code_for
from insitu.state import TissueState
from insitu.tissue.library import TissueLibrary

Occlusion = Literal["none", "hepatic_artery", "portal_vein", "pringle"]
HEPATIC_TISSUES = ("liver", "hcc", "liver_metastasis")
# which supplies each occlusion stops: (arterial, portal, hepatic venous outflow)
STOPPED: dict[str, tuple[bool, bool, bool]] = {
    "none": (False, False, False),
    "hepatic_artery": (True, False, False),
    "portal_vein": (False, True, False),
    "pringle": (True, True, True),
}
_VESSEL_CONCEPTS = ("hepatic_artery", "portal_vein", "hepatic_vein")
_NAME_KEYS = (("hepatic_artery", "hepatic_artery"), ("portal_vein", "portal"), ("hepatic_vein", "hepatic_vein"))


def occluded_perfusion(
    state: TissueState, library: TissueLibrary, slices: tuple[slice, ...], occlusion: Occlusion
) -> np.ndarray | None:
    """Pennes ω (1/s, float32) on the crop with the occluded supplies of hepatic tissue removed; None for "none"."""
    arterial_stopped, portal_stopped, _ = STOPPED[occlusion]
    if not (arterial_stopped or portal_stopped):
        return None
    index = state.tissue_index[slices]
    hepatic = np.isin(index, [library.index_of(n) for n in HEPATIC_TISSUES if n in library])
    arterial = state.perfusion_arterial_per_s[slices]
    portal = state.perfusion_portal_per_s[slices]
    omega = np.where(hepatic & arterial_stopped, 0.0, arterial) + np.where(hepatic & portal_stopped, 0.0, portal)
    return np.ascontiguousarray(omega, dtype=np.float32)


def vessel_concept(structure: Structure) -> str | None:
    """ "hepatic_artery", "portal_vein" or "hepatic_vein" for a vessel structure (by SNOMED CT code, else by name)."""
    if structure.role != Role.VESSEL:
        return None
    if structure.code is not None:
        for concept in _VESSEL_CONCEPTS:
            if structure.code.value == code_for(concept).value:
                return concept
    name = structure.name.lower()
    for concept, key in (
        ("hepatic_artery", "hepatic_artery"),
        ("portal_vein", "portal"),
        ("hepatic_vein", "hepatic_vein"),
    ):
        if key in name:
            return concept
    return None


def stopped_vessels(structures: Iterable[Structure], occlusion: Occlusion) -> set[str]:
    """Names of the vessel structures that carry no flow under ``occlusion``."""
    arterial, portal, venous = STOPPED[occlusion]
    stopped = {"hepatic_artery": arterial, "portal_vein": portal, "hepatic_vein": venous}
    return {s.name for s in structures if stopped.get(vessel_concept(s) or "", False)}
