"""Tissue property library: thermal, perfusion, electrical, dielectric, optical, acoustic, cryo, CT.

``load_library()`` returns the validated packaged table (``tissues.yaml``, every value with its
source and status). A uint8 tissue-index volume stores positions in ``TissueLibrary.names``;
index 0 is ``air``.
"""

from insitu.tissue.dielectric import EPSILON_0, ColeCole
from insitu.tissue.library import (
    OPTIONAL_PROPERTIES,
    REQUIRED_PROPERTIES,
    STATUSES,
    TEMPERATURE_COEFFICIENTS,
    Provenance,
    Quantity,
    Tissue,
    TissueLibrary,
    conductivity_s_m,
    load_library,
    perfusion_ml_min_kg_to_per_s,
    perfusion_per_s_to_ml_min_kg,
    relative_permittivity,
)

__all__ = [
    "EPSILON_0",
    "OPTIONAL_PROPERTIES",
    "REQUIRED_PROPERTIES",
    "STATUSES",
    "TEMPERATURE_COEFFICIENTS",
    "ColeCole",
    "Provenance",
    "Quantity",
    "Tissue",
    "TissueLibrary",
    "conductivity_s_m",
    "load_library",
    "perfusion_ml_min_kg_to_per_s",
    "perfusion_per_s_to_ml_min_kg",
    "relative_permittivity",
]
