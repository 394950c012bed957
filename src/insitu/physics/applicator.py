"""Applicator metal as straight pieces in the physics frame: what an electrode, antenna or probe occupies.

The physics frame is a cropped grid's axis-aligned index frame in metres: voxel (k, j, i) has its
centre at (k·dz, j·dy, i·dx). Therapies convert a device and its placement (tip point and direction
in patient millimetres) into segments here; the electric, thermal and optical solvers rasterise them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insitu.errors import PhysicsError


@dataclass(frozen=True)
class MetalSegment:
    """A solid cylinder with hemispherical ends (a capsule) from ``start_m`` to ``end_m`` (z, y, x metres).

    ``conducting``: exposed metal that carries current (True) or an insulated, electrically inert part
    (False: an insulated shaft, a plastic catheter). ``electrode``: which electrical terminal the
    conducting metal belongs to (0, 1, …); the generator drives terminals, not segments.
    ``cooled``: the metal is held at the coolant temperature (internally cooled electrodes and shafts).
    """

    start_m: tuple[float, float, float]
    end_m: tuple[float, float, float]
    radius_m: float
    conducting: bool = True
    electrode: int = 0
    cooled: bool = False

    def __post_init__(self) -> None:
        a = np.asarray(self.start_m, dtype=float)
        b = np.asarray(self.end_m, dtype=float)
        if a.shape != (3,) or b.shape != (3,) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise PhysicsError("a metal segment's end points are not finite (z, y, x) points", "give metres")
        if not (np.isfinite(self.radius_m) and self.radius_m > 0):
            raise PhysicsError(f"a metal segment has radius {self.radius_m} m", "give a positive radius")
        if self.electrode < 0:
            raise PhysicsError(f"a metal segment names electrode {self.electrode}", "number electrodes from 0")

    @property
    def length_m(self) -> float:
        """Distance between the two end points (the hemispherical caps not included)."""
        return float(np.linalg.norm(np.subtract(self.end_m, self.start_m)))
