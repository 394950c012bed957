"""Explicit, typed registries of therapies, devices, solvers and objectives.

Registries are filled by plain functions that list their entries; importing this module imports no
therapy, solver or device code (entries name their implementation as ``"module:attribute"`` and load
it on first use). The CLI lists them with ``insitu therapies`` and ``insitu devices``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, Generic, TypeVar

from insitu.errors import RegistryError

T = TypeVar("T")


class Availability(StrEnum):
    AVAILABLE = "available"
    PLANNED = "planned"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered item: a name, a one-line summary and where its implementation lives."""

    name: str
    summary: str
    target: str | None = None  # "package.module:attribute", loaded lazily
    value: T | None = None  # for data entries (devices): the item itself
    availability: Availability = Availability.AVAILABLE
    family: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        """Import and return the implementation (raises when the entry is only planned)."""
        if self.value is not None:
            return self.value
        if self.availability is not Availability.AVAILABLE or self.target is None:
            planned = self.details.get("planned_in", "a later version")
            raise RegistryError(
                f"{self.name!r} is registered but not implemented yet (planned in {planned})",
                "choose an available entry from `insitu therapies` / `insitu devices`",
            )
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module  # type: ignore[return-value]


class Registry(Generic[T]):
    """Name → entry, with helpful errors for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise RegistryError(f"{self.kind} {entry.name!r} is registered twice", "give each entry a unique name")
        self._entries[entry.name] = entry

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}",
                f"{hint} known: {', '.join(sorted(self._entries))}".strip(),
            ) from None

    def get(self, name: str) -> T:
        """The loaded implementation for ``name``."""
        return self.entry(name).load()

    def names(self, available_only: bool = False) -> list[str]:
        return [n for n, e in self._entries.items() if not available_only or e.availability is Availability.AVAILABLE]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


# ---------------------------------------------------------------------- therapies
_THERAPIES: list[tuple[str, str, str, str]] = [
    # name, family, summary, planned in
    ("tae", "transcatheter", "transcatheter arterial embolization (bland particles)", "issue 8"),
    ("tai", "transcatheter", "transcatheter arterial infusion chemotherapy (HAIC)", "issue 8"),
    (
        "tace",
        "transcatheter",
        "transcatheter arterial chemoembolization (cTACE / DEB-TACE)",
        "issue 8",
    ),
    (
        "tace_pvce",
        "transcatheter",
        "dual hepatic-artery + portal-vein chemoembolization",
        "issue 8",
    ),
    (
        "rfa",
        "percutaneous thermal",
        "radiofrequency ablation (cooled, cluster, multi-tine, bipolar)",
        "issue 4",
    ),
    (
        "mwa",
        "percutaneous thermal",
        "microwave ablation (915 MHz and 2.45 GHz antennas)",
        "issue 5",
    ),
    (
        "laser",
        "percutaneous thermal",
        "interstitial laser photocoagulation (ILP / LITT)",
        "issue 6",
    ),
    ("hifu", "non-invasive thermal", "high-intensity focused ultrasound", "issue 7"),
    ("cryo", "percutaneous thermal", "argon–helium cryoablation", "issue 6"),
    (
        "injection",
        "percutaneous chemical",
        "ethanol / acetic acid or gene-vector injection",
        "issue 6",
    ),
    ("prescribed_source", "research", "prescribed heat source (sphere or Gaussian), power and duration", "issue 3"),
]

# Therapies that exist in this version: name → "module:attribute" of their apply function.
_AVAILABLE_THERAPIES: dict[str, str] = {
    "prescribed_source": "insitu.therapies.prescribed_source",
    "rfa": "insitu.therapies.rfa",
    "mwa": "insitu.therapies.mwa",
    "laser": "insitu.therapies.laser",
    "injection": "insitu.therapies.injection",
    "cryo": "insitu.therapies.cryo",
    "hifu": "insitu.therapies.hifu",
    "tae": "insitu.therapies.tae",
    "tai": "insitu.therapies.tai",
    "tace": "insitu.therapies.tace",
    "tace_pvce": "insitu.therapies.tace_pvce",
}


@cache
def therapies() -> Registry[Any]:
    """The therapy registry: every therapy insitu knows, with whether it is available yet."""
    registry: Registry[Any] = Registry("therapy")
    for name, family, summary, planned in _THERAPIES:
        target = _AVAILABLE_THERAPIES.get(name)
        registry.add(
            Entry(
                name=name,
                summary=summary,
                target=target,
                availability=Availability.AVAILABLE if target else Availability.PLANNED,
                family=family,
                details={"planned_in": planned},
            )
        )
    return registry


# ---------------------------------------------------------------------- solvers
@cache
def solvers() -> Registry[Any]:
    """Numerical engines, listed so the CLI and reports can name what produced a result."""
    registry: Registry[Any] = Registry("solver")
    registry.add(
        Entry(
            name="cco",
            summary="constrained constructive optimization: space-filling vessel trees (Murray's law)",
            target="insitu.vascular.generate:generate_trees",
            family="vascular",
        )
    )
    registry.add(
        Entry(
            name="phantom",
            summary="procedural upper-abdomen phantom with liver, vessels and tumours",
            target="insitu.patient.phantom:make_phantom",
            family="patient",
        )
    )
    return registry


# ---------------------------------------------------------------------- devices
@cache
def devices() -> Registry[Any]:
    """The device catalog (applicators, generators, transducers, catheters), read from data files."""
    from insitu.devices.catalog import load_catalog  # data only: reads YAML, imports no physics

    registry: Registry[Any] = Registry("device")
    for device in load_catalog():
        registry.add(
            Entry(
                name=device.name,
                summary=device.summary,
                value=device,
                family=device.therapy,
            )
        )
    return registry
