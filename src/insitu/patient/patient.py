"""A patient: an image and labelled structures on one grid, vessel trees, and metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu.errors import StructureError
from insitu.grid import Grid
from insitu.patient.structure import Role, Structure

if TYPE_CHECKING:
    from insitu.tissue.library import TissueLibrary
    from insitu.vascular.tree import VesselTree

# When masks overlap, the later role wins the voxel's tissue type (a tumour inside the liver).
ROLE_PAINT_ORDER: tuple[Role, ...] = (Role.ORGAN, Role.OBSTACLE, Role.OAR, Role.VESSEL, Role.TARGET)


@dataclass(eq=False)
class Patient:
    """An image (CT in HU, or MR) and its structures, all on ``grid``.

    ``label_maps`` holds extra label volumes that are not structures (e.g. Couinaud segments):
    name → (uint8/uint16 array, {label value: label name}). ``trees`` holds vessel graphs.
    """

    grid: Grid
    image: np.ndarray
    structures: dict[str, Structure] = field(default_factory=dict)
    trees: dict[str, VesselTree] = field(default_factory=dict)
    label_maps: dict[str, tuple[np.ndarray, dict[int, str]]] = field(default_factory=dict)
    modality: str = "CT"
    background_tissue: str = "muscle"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.grid.require_array(self.image, "image")
        for name, structure in self.structures.items():
            if structure.name != name:
                raise StructureError(
                    f"structure key {name!r} differs from its name {structure.name!r}",
                    "use the name as key",
                )
            self.grid.require_match(structure.grid, f"structure {name!r}")
        for name, (labels, _) in self.label_maps.items():
            self.grid.require_array(labels, f"label map {name!r}")

    # ------------------------------------------------------------------ access
    def add(self, structure: Structure) -> Structure:
        if structure.name in self.structures:
            raise StructureError(f"structure {structure.name!r} exists twice", "give each structure a unique name")
        self.grid.require_match(structure.grid, f"structure {structure.name!r}")
        self.structures[structure.name] = structure
        return structure

    def structure(self, name: str) -> Structure:
        try:
            return self.structures[name]
        except KeyError:
            raise StructureError(
                f"no structure named {name!r}", f"known: {', '.join(self.structures) or 'none'}"
            ) from None

    def with_role(self, role: Role | str) -> list[Structure]:
        role = Role.parse(role) if not isinstance(role, Role) else role
        return [s for s in self.structures.values() if s.role is role]

    @property
    def targets(self) -> list[Structure]:
        return self.with_role(Role.TARGET)

    def require_targets(self) -> list[Structure]:
        """The targets; raises when there are none or any is empty."""
        targets = self.targets
        if not targets:
            raise StructureError("the patient has no target structure", "mark a tumour with role: target")
        for target in targets:
            if target.is_empty:
                raise StructureError(
                    f"target {target.name!r} is empty (0 voxels)",
                    "check its mask or label value in structures.yaml",
                )
        return targets

    # ------------------------------------------------------------------ derived volumes
    def overlapping_pairs(self) -> list[tuple[str, str]]:
        """Pairs of structures sharing voxels (a label image cannot hold these)."""
        names = list(self.structures)
        owner = np.zeros(self.grid.shape, dtype=np.int32)
        pairs: set[tuple[str, str]] = set()
        for index, name in enumerate(names, start=1):
            mask = self.structures[name].mask
            clash = np.unique(owner[mask & (owner > 0)])
            pairs.update((names[c - 1], name) for c in clash)
            owner[mask] = index
        return sorted(pairs)

    def label_image(self) -> tuple[np.ndarray, dict[int, str]]:
        """One label volume holding every structure (uint8 or uint16) and label → name."""
        pairs = self.overlapping_pairs()
        if pairs:
            raise StructureError(
                f"structures overlap ({', '.join(f'{a}/{b}' for a, b in pairs[:3])}), a label image cannot hold them",
                "save one mask file per structure instead",
            )
        labels = self._assign_labels()
        dtype = np.uint8 if max(labels.values(), default=0) < 256 else np.uint16
        image = np.zeros(self.grid.shape, dtype=dtype)
        for name, value in labels.items():
            image[self.structures[name].mask] = value
        return image, {v: n for n, v in labels.items()}

    def _assign_labels(self) -> dict[str, int]:
        used = {s.label for s in self.structures.values() if s.label}
        labels: dict[str, int] = {}
        next_free = 1
        for name, structure in self.structures.items():
            if structure.label:
                labels[name] = int(structure.label)
                continue
            while next_free in used:
                next_free += 1
            labels[name] = next_free
            used.add(next_free)
        return labels

    def tissue_index_volume(self, library: TissueLibrary) -> np.ndarray:
        """uint8 tissue index per voxel (positions in ``library.names``).

        Voxels outside every structure get ``background_tissue``, or ``air`` where a CT reads
        below −400 HU; overlapping structures are painted in ``ROLE_PAINT_ORDER``.
        """
        volume = np.full(self.grid.shape, library.index_of(self.background_tissue), dtype=np.uint8)
        if self.modality.upper() == "CT":
            volume[self.image < -400] = library.index_of("air")
        for role in ROLE_PAINT_ORDER:
            for structure in self.with_role(role):
                volume[structure.mask] = library.index_of(structure.tissue)
        return volume

    def validate_tissues(self, library: TissueLibrary) -> None:
        """Raise a TissueError for the first structure whose tissue type the library lacks."""
        library.index_of(self.background_tissue)
        for structure in self.structures.values():
            library.index_of(structure.tissue)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        """Facts for ``insitu info --json``."""
        return {
            "grid": self.grid.to_dict(),
            "modality": self.modality,
            "image_range": [float(np.min(self.image)), float(np.max(self.image))],
            "structures": [s.summary() for s in self.structures.values()],
            "trees": {name: tree.statistics() for name, tree in self.trees.items()},
            "label_maps": {name: {int(k): v for k, v in names.items()} for name, (_, names) in self.label_maps.items()},
            "metadata": self.metadata,
        }


def structures_by_name(structures: Iterable[Structure]) -> dict[str, Structure]:
    """Order-preserving name → structure, rejecting duplicates."""
    result: dict[str, Structure] = {}
    for structure in structures:
        if structure.name in result:
            raise StructureError(f"structure {structure.name!r} appears twice", "give each structure a unique name")
        result[structure.name] = structure
    return result
