"""A labelled structure on the patient grid: name, role, mask, tissue type and terminology code."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

import numpy as np

from insitu.errors import StructureError
from insitu.geometry import signed_distance_mm
from insitu.grid import Grid


class Role(StrEnum):
    """What a structure is for the planner (DESIGN.md: Patient)."""

    TARGET = "target"  # tumour, lymph node to treat
    ORGAN = "organ"  # the organ hosting the target, or surrounding tissue
    OAR = "oar"  # organ at risk: gallbladder, bowel, stomach, heart, diaphragm, kidney, skin
    VESSEL = "vessel"  # hepatic artery, portal vein, hepatic veins, IVC, aorta
    OBSTACLE = "obstacle"  # bone, lung, air: never crossed by a trajectory

    @classmethod
    def parse(cls, value: str, where: str = "") -> Role:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise StructureError(
                f"unknown role {value!r}{' for ' + where if where else ''}",
                f"use one of {', '.join(r.value for r in cls)}",
            ) from None


@dataclass(frozen=True)
class Code:
    """A coded concept (e.g. SNOMED CT, scheme ``SCT``) as DICOM SEG and Slicer terminology use it."""

    scheme: str
    value: str
    meaning: str

    def to_dict(self) -> dict[str, str]:
        return {"scheme": self.scheme, "value": self.value, "meaning": self.meaning}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Code:
        return cls(scheme=str(data["scheme"]), value=str(data["value"]), meaning=str(data["meaning"]))


@dataclass(eq=False)
class Structure:
    """One structure: a boolean mask on ``grid`` with a role and the tissue type it is made of."""

    name: str
    role: Role
    mask: np.ndarray
    grid: Grid
    tissue: str
    code: Code | None = None
    label: int | None = None
    color_rgb: tuple[int, int, int] = (200, 200, 200)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not str(self.name).strip():
            raise StructureError("a structure has an empty name", "give every structure a name")
        self.role = Role.parse(self.role, self.name) if not isinstance(self.role, Role) else self.role
        mask = np.asarray(self.mask)
        if mask.shape != self.grid.shape:
            raise StructureError(
                f"structure {self.name!r} has a mask of shape {mask.shape}, the grid is {self.grid.shape}",
                "give masks on the patient's grid",
            )
        self.mask = mask.astype(bool, copy=False)

    # ------------------------------------------------------------------ measures
    @cached_property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def is_empty(self) -> bool:
        return self.voxel_count == 0

    @property
    def volume_ml(self) -> float:
        """Volume in millilitres (voxel count × voxel volume)."""
        return self.voxel_count * self.grid.voxel_volume_ml

    def _require_voxels(self, what: str) -> np.ndarray:
        idx = np.argwhere(self.mask)
        if idx.size == 0:
            raise StructureError(
                f"structure {self.name!r} is empty, so it has no {what}",
                "check the segmentation or its label value",
            )
        return idx

    @cached_property
    def centroid_mm(self) -> np.ndarray:
        """Centre of mass in LPS millimetres."""
        idx = self._require_voxels("centroid").astype(np.float64)
        mean_kji = idx.mean(axis=0)
        return self.grid.index_to_world(mean_kji[::-1])

    @cached_property
    def bounding_box_kji(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive lower and exclusive upper array index (k, j, i) of the mask."""
        idx = self._require_voxels("bounding box")
        return idx.min(axis=0), idx.max(axis=0) + 1

    def bounding_box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS box enclosing the mask's voxels (their outer edges)."""
        lo, hi = self.bounding_box_kji
        corners_kji = np.array(
            [
                [k, j, i]
                for k in (lo[0] - 0.5, hi[0] - 0.5)
                for j in (lo[1] - 0.5, hi[1] - 0.5)
                for i in (lo[2] - 0.5, hi[2] - 0.5)
            ]
        )
        world = self.grid.index_to_world(corners_kji[:, ::-1])
        return world.min(axis=0), world.max(axis=0)

    def extent_mm(self) -> np.ndarray:
        lo, hi = self.bounding_box_mm()
        return hi - lo

    def equivalent_diameter_mm(self) -> float:
        """Diameter of the sphere with the same volume."""
        return float((6.0 * self.volume_ml * 1000.0 / np.pi) ** (1.0 / 3.0))

    def signed_distance_mm(self) -> np.ndarray:
        """Signed distance to the surface (mm, float32): negative inside, positive outside."""
        self._require_voxels("signed distance")
        return signed_distance_mm(self.mask, self.grid)

    def summary(self) -> dict:
        """Facts for ``insitu info`` and reports (JSON-friendly)."""
        info: dict = {
            "name": self.name,
            "role": self.role.value,
            "tissue": self.tissue,
            "label": self.label,
            "voxels": self.voxel_count,
            "volume_ml": round(self.volume_ml, 3),
        }
        if self.code is not None:
            info["code"] = self.code.to_dict()
        if not self.is_empty:
            info["centroid_mm"] = [round(float(v), 2) for v in self.centroid_mm]
            info["extent_mm"] = [round(float(v), 1) for v in self.extent_mm()]
        return info
