"""The tissue state every plan step reads and returns (DESIGN.md: TissueState).

A step never edits the state it was given: it returns a new one. What one step changes — perfusion
after an embolization, damage after an ablation, ice after a freeze — is what the next step sees,
so combined treatments follow from the physics without special cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from insitu.errors import PhysicsError
from insitu.grid import Grid

if TYPE_CHECKING:
    from insitu.patient.patient import Patient
    from insitu.tissue.library import TissueLibrary


@dataclass
class TissueState:
    """Fields on the patient grid (float32 [k, j, i]) plus the time since the first step.

    Perfusion is split into its arterial and portal parts (Pennes ω, 1/s, blood volume per tissue
    volume per second); ``damage`` holds named accumulated fields (e.g. ``arrhenius_omega_<set>``,
    ``cem43_min``, ``max_temperature_c``) that persist from step to step.
    """

    grid: Grid
    tissue_index: np.ndarray
    temperature_c: np.ndarray
    perfusion_arterial_per_s: np.ndarray
    perfusion_portal_per_s: np.ndarray
    embolized_fraction: np.ndarray
    drug_mg_per_ml: np.ndarray
    frozen: np.ndarray
    damage: dict[str, np.ndarray] = field(default_factory=dict)
    time_s: float = 0.0
    body_temperature_c: float = 37.0

    def __post_init__(self) -> None:
        for name in (
            "tissue_index",
            "temperature_c",
            "perfusion_arterial_per_s",
            "perfusion_portal_per_s",
            "embolized_fraction",
            "drug_mg_per_ml",
            "frozen",
        ):
            self.grid.require_array(getattr(self, name), f"state field {name}")
        for name, values in self.damage.items():
            self.grid.require_array(values, f"damage field {name}")
        if not np.all(np.isfinite(self.temperature_c)):
            raise PhysicsError("the tissue temperature has non-finite values", "report this as a bug in the last step")

    @classmethod
    def from_patient(cls, patient: Patient, library: TissueLibrary, body_temperature_c: float = 37.0) -> TissueState:
        """The untreated state: body temperature, the library's perfusion split into arterial and portal."""
        index = patient.tissue_index_volume(library)
        total = library.volume_from_table(index, library.property_table("perfusion_per_s"))
        fraction_table = np.nan_to_num(library.property_table("perfusion_arterial_fraction"), nan=1.0)
        arterial_fraction = library.volume_from_table(index, fraction_table)
        shape = patient.grid.shape
        return cls(
            grid=patient.grid,
            tissue_index=index,
            temperature_c=np.full(shape, body_temperature_c, dtype=np.float32),
            perfusion_arterial_per_s=(total * arterial_fraction).astype(np.float32),
            perfusion_portal_per_s=(total * (1.0 - arterial_fraction)).astype(np.float32),
            embolized_fraction=np.zeros(shape, dtype=np.float32),
            drug_mg_per_ml=np.zeros(shape, dtype=np.float32),
            frozen=np.zeros(shape, dtype=bool),
            body_temperature_c=body_temperature_c,
        )

    @property
    def perfusion_per_s(self) -> np.ndarray:
        """Total Pennes perfusion ω (1/s): arterial + portal."""
        return self.perfusion_arterial_per_s + self.perfusion_portal_per_s

    def copy(self) -> TissueState:
        """A deep copy (steps return new states; they never alias the input's arrays)."""
        return replace(
            self,
            tissue_index=self.tissue_index.copy(),
            temperature_c=self.temperature_c.copy(),
            perfusion_arterial_per_s=self.perfusion_arterial_per_s.copy(),
            perfusion_portal_per_s=self.perfusion_portal_per_s.copy(),
            embolized_fraction=self.embolized_fraction.copy(),
            drug_mg_per_ml=self.drug_mg_per_ml.copy(),
            frozen=self.frozen.copy(),
            damage={k: v.copy() for k, v in self.damage.items()},
        )
