"""The device catalog: named applicators, probes and fibres read from data files with sources.

Each ``*.yaml`` file beside this module lists devices. A device is data only (geometry, ratings,
sources); the therapy modules turn it into sources and boundary conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from insitu.errors import RegistryError

_FOLDER = Path(__file__).parent
_REQUIRED = ("name", "therapy", "kind", "summary", "sources")
# catheters serve every transcatheter therapy: a device listed under this family fits any of them
TRANSCATHETER = "transcatheter"
TRANSCATHETER_THERAPIES = ("tae", "tai", "tace", "tace_pvce")


@dataclass(frozen=True)
class Device:
    """One catalog entry: what it is, its numbers (units in the keys) and where they come from."""

    name: str
    therapy: str
    kind: str
    summary: str
    parameters: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


@cache
def load_catalog(folder: Path = _FOLDER) -> tuple[Device, ...]:
    """All devices in the catalog files, checked for required fields and unique names."""
    devices: list[Device] = []
    seen: set[str] = set()
    for path in sorted(folder.glob("*.yaml")):
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in entries.get("devices", []):
            missing = [key for key in _REQUIRED if key not in entry]
            if missing:
                raise RegistryError(
                    f"device entry {entry.get('name', '?')!r} in {path.name} lacks {', '.join(missing)}",
                    "complete the catalog entry",
                )
            if entry["name"] in seen:
                raise RegistryError(f"device {entry['name']!r} is listed twice", "give each device a unique name")
            seen.add(entry["name"])
            devices.append(
                Device(
                    name=entry["name"],
                    therapy=entry["therapy"],
                    kind=entry["kind"],
                    summary=entry["summary"],
                    parameters=dict(entry.get("parameters", {})),
                    sources=tuple(entry["sources"]),
                )
            )
    return tuple(devices)


def device_for(name: str | None, therapy: str, label: str, what: str) -> Device:
    """The catalog device ``name`` of ``therapy``; one-line errors for a missing name, an unknown one (with close
    names) and a device of another therapy. ``label`` ("RF") and ``what`` ("RF electrode") word the messages."""
    import difflib

    devices = {device.name: device for device in load_catalog()}
    accepted = {therapy, TRANSCATHETER} if therapy in TRANSCATHETER_THERAPIES else {therapy}
    names = sorted(n for n, d in devices.items() if d.therapy in accepted)
    from insitu.errors import PlanError

    if name is None:
        raise PlanError(f"a {therapy} step names no device", f"give device: one of {', '.join(names)}")
    if name not in devices:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise RegistryError(f"unknown {label} device {name!r}", f"{hint}known {label} devices: {', '.join(names)}")
    device = devices[name]
    if device.therapy not in accepted:
        article = "an" if what[:1] in "aeiouAEIOU" or what.startswith(("RF", "MW")) else "a"
        raise PlanError(
            f"device {name!r} is a {device.therapy} device, not {article} {what}", f"choose one of {', '.join(names)}"
        )
    return device
