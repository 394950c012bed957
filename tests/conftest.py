"""Shared fixtures: a small hand-made patient, and a CLI runner that returns (exit code, out, err)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from insitu.grid import Grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Code, Role, Structure


def make_small_patient(direction: np.ndarray | None = None) -> Patient:
    """A 3-structure patient on an anisotropic grid: liver with a spherical tumour and a vessel."""
    grid = Grid(
        shape=(24, 30, 36),
        spacing_mm=(0.9, 1.1, 2.0),
        origin_mm=(-15.0, 12.5, 40.0),
        direction=np.eye(3) if direction is None else direction,
    )
    xyz = grid.world_coordinates_mm(np.float64) - grid.index_to_world([17.5, 14.5, 11.5])
    r = np.linalg.norm(xyz, axis=-1)
    liver = r <= 14.0
    tumor = np.linalg.norm(xyz - np.array([3.0, 0.0, 0.0]), axis=-1) <= 5.0
    vessel = (np.hypot(xyz[..., 0] + 6.0, xyz[..., 1]) <= 2.0) & liver & ~tumor
    liver &= ~tumor & ~vessel
    image = np.where(liver, 60, -1000).astype(np.int16)
    image[tumor] = 120
    image[vessel] = 200
    structures = {
        "liver": Structure(
            "liver",
            Role.ORGAN,
            liver,
            grid,
            "liver",
            Code("SCT", "10200004", "Liver"),
            1,
            (170, 90, 60),
        ),
        "tumor": Structure("tumor", Role.TARGET, tumor, grid, "hcc", None, 2, (255, 220, 0)),
        "portal_vein": Structure("portal_vein", Role.VESSEL, vessel, grid, "blood", None, 3, (120, 60, 200)),
    }
    return Patient(grid=grid, image=image, structures=structures, metadata={"note": "test"})


@pytest.fixture
def small_patient() -> Patient:
    return make_small_patient()


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``insitu ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from insitu import cli

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["insitu", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
