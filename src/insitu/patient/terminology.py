"""Standard terminology codes for structures (SNOMED CT), read from ``terminology.yaml``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from insitu.patient.structure import Code

_PATH = Path(__file__).with_name("terminology.yaml")


@cache
def _codes() -> dict[str, dict]:
    with _PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)["codes"]


def code_for(concept: str) -> Code:
    """The SCT code of a named concept (``liver``, ``portal_vein``, …); KeyError when unknown."""
    entry = _codes()[concept]
    return Code(scheme="SCT", value=str(entry["value"]), meaning=str(entry["meaning"]))


def known_concepts() -> list[str]:
    return sorted(_codes())
